"""Fast tests of the real-QEMU harness that need no QEMU: QMP client, parsers, comparisons."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from sweep import grid
from sweep.api import prepare, simulate
from sweep.qemu import driver
from sweep.qemu.calibrate import model_inputs
from sweep.qemu.probe import fit_writes, sample_pages_per_gib, scenario_from_replies
from sweep.qemu.qmp import (
    QMPClient,
    QMPError,
    QMPTimeoutError,
    event_time,
    flatten,
    split_messages,
)
from sweep.validation import (
    METRICS,
    calibration,
    compare_runs,
    fidelity_table,
    load_config,
    model_for_runs,
    plot_metrics,
    real_outcome,
    real_sync_curve,
    run_specs,
    scenario_for_run,
    table_html,
)
from sweep.workloads import sequential, uniform

ROOT = Path(__file__).resolve().parents[1]


# --- message framing ---------------------------------------------------------------------------


def test_split_messages_keeps_the_unfinished_tail():
    data = b'{"return": {}, "id": 1}\r\n{"event": "STOP", "timestamp": {"seco'
    messages, rest = split_messages(data)
    assert messages == [{"return": {}, "id": 1}]
    assert rest == b'{"event": "STOP", "timestamp": {"seco'
    more, rest = split_messages(rest + b'nds": 1, "microseconds": 5}}\n')
    assert more[0]["event"] == "STOP" and rest == b""


def test_flatten_names_nested_fields_like_the_samples_table():
    reply = {"status": "active", "total-time": 5, "ram": {"dirty-sync-count": 3, "mbps": 1.5}}
    assert flatten(reply) == {
        "status": "active",
        "total_time": 5,
        "ram_dirty_sync_count": 3,
        "ram_mbps": 1.5,
    }


def test_event_time_combines_seconds_and_microseconds():
    assert event_time({"timestamp": {"seconds": 10, "microseconds": 250000}}) == 10.25


# --- the client against a scripted fake QEMU ----------------------------------------------------


class FakeQemu:
    """A unix-socket QMP peer that answers from a script: {command: (events, reply)}."""

    def __init__(self, path: Path, script: dict[str, tuple[list[dict], dict | None]]) -> None:
        self.path, self.script = path, script
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.received: list[dict] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.sendall(b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\r\n')
            buf = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    self.received.append(msg)
                    events, reply = self.script.get(msg["execute"], ([], {"return": {}}))
                    out = b"".join(json.dumps(e).encode() + b"\r\n" for e in events)
                    if reply is not None:
                        out += json.dumps({**reply, "id": msg["id"]}).encode() + b"\r\n"
                    conn.sendall(out)


def _event(name: str, data: dict, at: float = 1.000002) -> dict:
    stamp = {"seconds": int(at), "microseconds": round((at - int(at)) * 1e6)}
    return {"event": name, "data": data, "timestamp": stamp}


@pytest.fixture
def sock_path(tmp_path):
    return tmp_path / "q.sock"


def test_client_negotiates_and_keeps_events_seen_before_a_reply(sock_path):
    reply = {"return": {"status": "active", "ram": {"dirty-sync-count": 2}}}
    events = [_event("MIGRATION_PASS", {"pass": 2}), _event("MIGRATION", {"status": "active"})]
    fake = FakeQemu(sock_path, {"query-migrate": (events, reply)})
    with QMPClient(sock_path, timeout=5) as client:
        client.connect()
        assert client.execute("query-migrate")["ram"]["dirty-sync-count"] == 2
        drained = client.poll_events()
    assert [e["event"] for e in drained] == ["MIGRATION_PASS", "MIGRATION"]
    assert drained[0]["data"]["pass"] == 2
    assert fake.received[0]["execute"] == "qmp_capabilities"


def test_client_raises_qemu_errors_with_class_and_text(sock_path):
    error = {"error": {"class": "GenericError", "desc": "no migration"}}
    FakeQemu(sock_path, {"migrate_cancel": ([], error)})
    with QMPClient(sock_path, timeout=5) as client:
        client.connect()
        with pytest.raises(QMPError, match="GenericError: no migration"):
            client.execute("migrate_cancel")


def test_client_times_out_instead_of_hanging(sock_path):
    FakeQemu(sock_path, {"query-migrate": ([], None)})  # never answers
    with QMPClient(sock_path, timeout=5) as client:
        client.connect()
        with pytest.raises(QMPTimeoutError):
            client.execute("query-migrate", timeout=0.2)


def test_connect_gives_up_when_no_socket_appears(tmp_path):
    with pytest.raises(QMPTimeoutError, match="cannot connect"):
        QMPClient(tmp_path / "absent.sock").connect(timeout=0.2)


# --- guest and trace lines ---------------------------------------------------------------------


def test_parse_guest_report_and_boot_lines():
    r = driver.parse_guest_line("R t_us=100353 writes=2007 pos=2007 skipped=0 ")
    assert r == {"kind": "R", "t_us": 100353, "writes": 2007, "pos": 2007, "skipped": 0}
    boot = driver.parse_guest_line("BOOT tsc_khz=2596227 ws_pages=16384 rate=0 max=0")
    assert boot["kind"] == "BOOT" and boot["ws_pages"] == 16384
    assert driver.parse_guest_line("R t_us=5 wri") is None  # torn line
    assert driver.parse_guest_line("SeaBIOS (version 1.16)") is None


def test_parse_trace_line_of_the_log_backend():
    line = "4242@1795638116.123456:migration_bitmap_sync_end dirty_pages 2"
    t = driver.parse_trace_line(line)
    assert t["pid"] == 4242 and t["event"] == "migration_bitmap_sync_end"
    assert t["wall_s"] == pytest.approx(1795638116.123456) and t["args"] == "dirty_pages 2"
    assert driver.parse_trace_line("qemu-system-x86_64: warning") is None


def test_ring_position_is_interpolated_between_reports():
    reports = pd.DataFrame(
        {"t_us": [0, 100_000, 200_000], "writes": [0, 2000, 4000], "pos": [0, 2000, 4000],
         "seen_wall_s": [10.0015, 10.1011, 10.2030]}
    )  # fmt: skip
    assert driver.guest_clock_offset(reports) == pytest.approx(10.0011)
    writes, pos = driver.writes_at(reports, 150_000)
    assert writes == pytest.approx(3000) and pos == pytest.approx(3000)


def test_missing_qemu_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(driver.QemuNotFoundError, match="apt-get install -y --no-install"):
        driver.find_qemu()


def test_guest_command_line_carries_the_run_settings():
    spec = driver.RunSpec(name="x", working_set_mib=16, fill_mib=100, rate="max", pattern="rand")
    words = spec.append().split()
    assert words[:4] == [f"ws={16 * 2**20}", f"fill={100 * 2**20}", "rate=max", "pattern=rand"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_guest_builds_once_per_source_hash(tmp_path):
    from sweep.qemu.build import build_guest

    first = build_guest(tmp_path)
    assert first.is_file() and first.read_bytes()[:4] == b"\x7fELF"
    assert first.read_bytes()[4] == 1  # ELFCLASS32: QEMU's multiboot loader wants 32-bit
    mtime = first.stat().st_mtime_ns
    assert build_guest(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert tmp_path in first.parents


# --- the comparison ----------------------------------------------------------------------------


def _samples_and_events():
    """Two passes at 13.4 MB per 100 ms; sync 2 at t = 250 ms adds 5000 pages."""
    per_ms = 134_242.0
    rows = []
    for t in (100.0, 200.0, 300.0, 400.0):
        x = per_ms * t
        if t < 250:
            remaining = 500e6 - x * 4096 / 4104
            count = 1
        else:
            remaining = (500e6 - per_ms * 250 * 4096 / 4104 + 5000 * 4096) - per_ms * (
                t - 250
            ) * 4096 / 4104
            count = 2
        rows.append({"t_ms": t, "poll_ms": 0.0, "status": "active", "ram_transferred": x,
                     "ram_remaining": remaining, "ram_dirty_sync_count": count})  # fmt: skip
    events = pd.DataFrame(
        {"event": ["MIGRATION_PASS", "MIGRATION_PASS"], "t_ms": [2.0, 250.0], "pass": [1, 2]}
    )
    return pd.DataFrame(rows), events


def test_real_sync_curve_recovers_remaining_and_new_pages():
    samples, events = _samples_and_events()
    curve = real_sync_curve(samples, events)
    assert list(curve["dirty_sync_count"]) == [2]
    before = 500e6 - 134_242.0 * 250 * 4096 / 4104
    assert curve["remaining_before_bytes"].iloc[0] == pytest.approx(before)
    assert curve["remaining_bytes"].iloc[0] == pytest.approx(before + 5000 * 4096)
    assert curve["new_dirty_pages"].iloc[0] == pytest.approx(5000)


def test_real_sync_curve_keeps_the_syncs_after_the_managers_stop():
    """QEMU's STOP ends pre-copy; a manager's STOP (QMP stop) does not: pre-copy goes on, and
    only completion's sync, the last, is left out."""
    samples, events = _samples_and_events()
    events = pd.concat([
        events,
        pd.DataFrame({"event": ["STOP", "MIGRATION_PASS"], "t_ms": [240.0, 400.0],
                      "pass": [np.nan, 3]}),
    ], ignore_index=True)  # fmt: skip
    assert real_sync_curve(samples, events).empty
    curve = real_sync_curve(samples, events, stopped_by_manager=True)
    assert list(curve["dirty_sync_count"]) == [2]
    assert curve["new_dirty_pages"].iloc[0] == pytest.approx(5000)


def _run_row(**over):
    row = {
        "spec_name": "r", "spec_fill_mib": 509.0, "spec_working_set_mib": 64.0, "spec_rate": "0",
        "spec_pattern": "seq", "spec_max_bandwidth": 128 * 2**20, "spec_downtime_limit_ms": 300,
        "spec_auto_converge": False, "spec_cpu_throttle_initial": 20,
        "spec_cpu_throttle_increment": 10, "spec_max_cpu_throttle": 99,
        "spec_throttle_trigger_threshold": 50, "spec_time_cap_s": 30.0,
        "final_ram_total": 537403392, "final_status": "completed", "final_total_time": 3780,
        "final_ram_dirty_sync_count": 3, "final_ram_transferred": 535156938,
        "final_downtime": 99,
    }  # fmt: skip
    row.update(over)
    return row


CAL = {"setup_time_ms": 2.0, "sync_time_ms": 0.12, "stop_time_ms": 0.04,
       "device_state_bytes": 112635, "link_bandwidth_bytes_per_s": 1.08e9,
       "nonzero_extra_bytes": 380928}  # fmt: skip


def test_scenario_maps_the_run_and_the_calibration():
    sc = scenario_for_run(_run_row(spec_rate="20000", spec_pattern="rand"), CAL)
    assert sc["qemu_version"] == "7.2" and sc["write_pattern"] == "uniform"
    assert sc["working_set_layout"] == "start"  # our guest's working set is low in RAM
    assert sc["ring_position"] == 0  # a uniform writer has none
    ring = _run_row(spec_rate="20000", spec_pattern="seq", ring_pos_at_migrate=3736.99,
                    ws_pages=16384)  # fmt: skip
    ring = scenario_for_run(ring, CAL)
    assert ring["write_pattern"] == "sequential" and ring["working_set_layout"] == "start"
    assert ring["ring_position"] == 3736  # the writer's page at migrate (ring.py)
    lost = scenario_for_run(_run_row(spec_pattern="seq", ring_pos_at_migrate=None), CAL)
    assert lost["ring_position"] == 0  # records before the driver measured it
    assert sc["ram_size"] == 537403392 and sc["dirty_rate"] == 20000.0
    assert sc["nonzero_size"] == 509 * 2**20 + 380928
    assert sc["max_iterations"] == 0 and sc["max_time"] == 30.0
    assert sc["pause_delay"] == 0.0  # no stop
    with pytest.raises(ValueError, match="rate=max"):
        scenario_for_run(_run_row(spec_rate="max"), CAL)
    paused = _run_row(spec_pause_after_iterations=3, pause_lag_ms=9.6)
    assert scenario_for_run(paused, CAL)["pause_delay"] == 9.6
    assert scenario_for_run({**paused, "pause_lag_ms": np.nan}, CAL)["pause_delay"] == 0.0


def test_a_stop_on_a_pass_edge_is_held_to_qemu_within_one_guest_tick():
    """pause3-rand-100k's queue at sync 4 sits so near the threshold that a millisecond of
    the guest's writes decides a pass: QEMU ran 5 syncs with a 7.75 ms lag, the model 6.  The
    writes come on a 1 ms tick, so the model is held to QEMU's count for a delay within a
    tick of the lag, and the run is marked; away from an edge the lag is kept as it is."""
    spec = dict(spec_rate="100000", spec_pattern="rand", spec_pause_after_iterations=3)
    base = scenario_for_run(_run_row(**spec), CAL)
    delays = np.arange(0.0, 20.0, 0.05)
    counts = (
        simulate(
            pd.DataFrame(
                [{**base, "pause_delay": d, "scenario_id": i} for i, d in enumerate(delays)]
            )
        )
        .summary["dirty_sync_count"]
        .to_numpy()
    )
    edge = delays[np.flatnonzero(np.diff(counts))[0] + 1]  # the first delay with one pass more
    fewer, more = counts[0], counts[0] + 1

    def model(lag: float, real: int) -> pd.Series:
        runs = pd.DataFrame([_run_row(**spec, pause_lag_ms=lag, final_ram_dirty_sync_count=real)])
        return compare_runs(runs, model_for_runs(runs, CAL)).iloc[0]

    on_edge = model(edge + 0.3, fewer)  # one pass more at the lag, QEMU's count a tick earlier
    assert on_edge["model_dirty_sync_count"] == fewer and on_edge["pause_on_edge"]
    assert on_edge["model_pause_delay_ms"] == pytest.approx(edge + 0.3 - 1.0)
    agrees = model(edge + 0.3, more)
    assert agrees["model_dirty_sync_count"] == more and not agrees["pause_on_edge"]
    assert agrees["model_pause_delay_ms"] == pytest.approx(edge + 0.3)
    away = model(edge - 3.0, more)  # QEMU's count is not within a tick: a miss stays a miss
    assert away["model_dirty_sync_count"] == fewer and not away["pause_on_edge"]


def test_the_pause_lag_is_the_stop_after_that_syncs_event():
    """The model's pause_delay: the guest's STOP event after the event of the sync the manager
    waited for; none when a stop at a set time came first or the sync never came."""
    events = [_event("MIGRATION_PASS", {"pass": 2}, 1000.0),
              _event("MIGRATION_PASS", {"pass": 3}, 1004.2), _event("STOP", {}, 1004.2096),
              _event("MIGRATION_PASS", {"pass": 4}, 1004.4)]  # fmt: skip
    assert driver._pause_lag_ms(events, 3) == pytest.approx(9.6, abs=1e-3)
    assert driver._pause_lag_ms(events, 5) is None  # never synced that often
    assert driver._pause_lag_ms(events, 0) is None  # no stop at a sync count
    timed = [_event("STOP", {}, 1003.0), *events]  # the set time came first
    assert driver._pause_lag_ms(timed, 3) is None


def _comparison() -> pd.DataFrame:
    """Four runs against a made-up model: one matches, one is cancelled where the model
    converges, one switched to postcopy and one had its guest stopped, as the model did."""
    runs = pd.DataFrame([
        _run_row(), _run_row(spec_name="s", final_status="cancelled"),
        _run_row(spec_name="p", postcopy_started_ms=3700.0, final_ram_postcopy_bytes=5e7),
        _run_row(spec_name="z", paused_ms=3275.0, final_downtime=5),  # stood 500 ms
    ])  # fmt: skip

    class FakeModel:
        summary = pd.DataFrame(
            {"scenario_id": [0, 1, 2, 3], "converged": [True, True, False, False],
             "status": ["completed", "completed", "completed-postcopy", "completed-paused"],
             "total_time_ms": [3780 * 1.02, 3780.0, 3780.0, 3780.0],
             "dirty_sync_count": [4, 3, 3, 3],
             "transferred_bytes": [535156938.0, 535156938 * 0.99, 535156938.0, 535156938.0],
             "downtime_ms": [99.0, 50.0, 1.0, 5.0], "postcopy_bytes": [0.0, 0.0, 5.1e7, 0.0],
             "downtime_bytes": [4e6, 0.0, 0.0, 1e6],
             "paused_time_ms": [np.nan, np.nan, np.nan, 510.0], "throttle_pct": [0, 0, 0, 0]}
        )  # fmt: skip

    return compare_runs(runs, FakeModel())


def test_compare_and_fidelity_table_report_signed_and_absolute_errors():
    cmp = _comparison()
    assert cmp["total_time_error"].iloc[0] == pytest.approx(0.02)
    assert cmp["dirty_sync_count_error"].iloc[0] == 1
    assert list(cmp["real_verdict"]) == ["converged", "cancelled", "postcopy", "paused"]
    assert list(cmp["verdict_match"]) == [True, False, True, True]
    assert cmp["postcopy_bytes_error"].iloc[2] == pytest.approx(0.02)
    assert cmp["postcopy_bytes_error"].iloc[:2].isna().all()  # no postcopy: no error
    assert cmp["real_paused_time_ms"].iloc[3] == 500.0  # total - downtime - the stop
    assert cmp["paused_time_error"].iloc[3] == pytest.approx(0.02)
    assert cmp["paused_time_error"].iloc[:3].isna().all()
    assert cmp["model_downtime_bytes"].iloc[2] == 0.0 and cmp["real_downtime_bytes"].isna().all()
    table = fidelity_table(cmp).set_index("metric")
    assert table.loc["total_time", "max_abs_error"] == pytest.approx(2.0)
    assert table.loc["transferred", "max_abs_error"] == pytest.approx(1.0)
    assert table.loc["verdict", "max_abs_error"] == 1 and table.loc["verdict", "worst_run"] == "s"
    assert np.isnan(cmp["real_downtime_ms"].iloc[1])  # a cancelled run has no downtime


def test_a_stop_after_qemus_own_does_not_make_a_run_paused():
    """The manager's timed stop can land while QEMU is already in its stop-and-copy: the
    guest stood no longer than QEMU's downtime, and the run converged, as the model has it."""
    late = real_outcome(_run_row(paused_ms=3700.0))  # total 3780 ms, downtime 99 ms
    assert late["real_verdict"] == "converged" and np.isnan(late["real_paused_time_ms"])
    early = real_outcome(_run_row(paused_ms=3600.0))
    assert early["real_verdict"] == "paused" and early["real_paused_time_ms"] == 81.0


def test_fidelity_figures_show_every_metric(tmp_path):
    cmp = _comparison()
    table = fidelity_table(cmp)
    plot_metrics(cmp, tmp_path / "metrics.png")
    table_html(table, cmp, tmp_path / "table.html")
    with Image.open(tmp_path / "metrics.png") as png:
        assert png.width >= 350 * len(METRICS)  # a panel per metric
    html = (tmp_path / "table.html").read_text()
    assert all(f">{metric}<" in html for metric in METRICS)
    assert ">postcopy<" in html and "real_postcopy_time_ms" in html
    assert ">paused<" in html and "real_paused_time_ms" in html
    assert "real_downtime_bytes" in html and "model_downtime_bytes" in html


def test_calibration_gives_the_model_inputs_under_the_config_keys():
    """calibrate's numbers -> the `calibration:` block: medians of repeated readings, the
    missing ones (no trace; no postcopy without userfaultfd) left to the config."""
    measured = {
        "setup_time_traced_ms": [1.7, None, 1.5, 1.9], "sync_time_ms": 0.146,
        "stop_time_ms_median": 0.045, "device_state_bytes": 112635, "sync_time_ms_each": [],
        "final_copy_rate_bytes_per_s": 1.24e9, "first_touch_copy_rate_bytes_per_s": 0.42e9,
        "first_pass_rate_bytes_per_s": 1.66e9, "postcopy_rate_bytes_per_s": None,
        "nonzero_extra_bytes": 380928, "unlimited_rate_bytes_per_s": 1.67e9,
    }  # fmt: skip
    inputs = model_inputs(measured)
    assert inputs == {
        "setup_time_ms": 1.7, "sync_time_ms": 0.146, "stop_time_ms": 0.045,
        "device_state_bytes": 112635.0, "link_bandwidth_bytes_per_s": 1.24e9,
        "first_copy_bandwidth_bytes_per_s": 0.42e9, "first_pass_bandwidth_bytes_per_s": 1.66e9,
        "nonzero_extra_bytes": 380928.0,
    }  # fmt: skip
    config = load_config(ROOT / "config" / "validation.yaml")
    assert set(inputs) - set(config["calibration"]) == {"first_pass_bandwidth_bytes_per_s"}
    merged = calibration(config, inputs)
    assert merged["link_bandwidth_bytes_per_s"] == 1.24e9  # measured here
    assert merged["postcopy_bandwidth_bytes_per_s"] == 1.1e9  # not measured: the config's
    assert calibration(config, None) == config["calibration"]
    # no trace (a QEMU built without it): no sync or stop time, as None or NaN
    untraced = {**measured, "sync_time_ms": None, "stop_time_ms_median": float("nan"),
                "setup_time_traced_ms": [None, None]}  # fmt: skip
    assert set(inputs) - set(model_inputs(untraced)) == {
        "sync_time_ms", "stop_time_ms", "setup_time_ms"
    }  # fmt: skip


def test_a_bad_calibration_source_is_named(tmp_path):
    text = (ROOT / "config" / "validation.yaml").read_text()
    bad = tmp_path / "validation.yaml"
    bad.write_text(re.sub(r"(?m)^calibration_source: \w+", "calibration_source: host", text))
    with pytest.raises(ValueError, match="calibration_source: 'host' is not allowed; expected "
                                         "one of config, measure"):  # fmt: skip
        load_config(bad)
    # calibration values are numbers, however YAML wrote them (1.1e9 reads as a string)
    bad.write_text(text.replace("sync_time_ms: 0.11", "sync_time_ms: fast"))
    with pytest.raises(ValueError, match=r"calibration\.sync_time_ms: 'fast' is not allowed"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(text.replace("1.1e+9", "1.1e9"))
    assert load_config(good)["calibration"]["postcopy_bandwidth_bytes_per_s"] == 1.1e9


def test_validation_grid_config_is_complete():
    config = load_config(ROOT / "config" / "validation.yaml")
    specs = run_specs(config)
    assert len(specs) >= 20
    assert {s.pattern for s in specs} == {"seq", "rand"}
    assert any(s.auto_converge for s in specs) and any(not s.auto_converge for s in specs)
    assert len({s.max_bandwidth for s in specs}) >= 3
    assert len({s.downtime_limit_ms for s in specs}) >= 3
    assert len({s.working_set_mib for s in specs}) >= 3


def test_precopy_rate_ratio_spots_a_starved_window():
    budget = 134_217_728
    full = [{"status": "active", "total_time": 100 * k, "ram_transferred": 13_424_192 * k}
            for k in range(1, 6)]  # fmt: skip
    clean = driver._precopy_rate(full, budget)
    assert clean["precopy_rate_ratio"] == pytest.approx(1.0002, abs=1e-4)
    starved = [dict(r) for r in full]
    for r in starved[2:]:
        r["ram_transferred"] -= 13_424_192 // 2  # one window carried half
    low = driver._precopy_rate(starved, budget)
    assert low["precopy_rate_ratio"] < 0.995 and low["min_window_rate_ratio"] < 0.51
    assert driver._precopy_rate(full, 0)["precopy_rate_ratio"] is None  # no limit, no ratio


def test_precopy_rate_leaves_out_the_poll_that_saw_the_final_copy():
    """The status stays "active" during the stop-and-copy: the last active poll before
    "completed" may count final-copy bytes sent at link speed, and must not count."""
    budget = 134_217_728
    full = [{"status": "active", "total_time": 100 * k, "ram_transferred": 13_424_192 * k}
            for k in range(1, 6)]  # fmt: skip
    late = {"status": "active", "total_time": 520, "ram_transferred": 13_424_192 * 5 + 60 * 2**20}
    done = {
        "status": "completed",
        "total_time": 530,
        "ram_transferred": 13_424_192 * 5 + 64 * 2**20,
    }
    assert driver._precopy_rate([*full, late, done], budget)["precopy_rate_ratio"] == (
        pytest.approx(1.0002, abs=1e-4)
    )
    # a run that did not complete had no stop-and-copy: every active poll counts
    cancelled = {"status": "cancelled", "total_time": 530}
    assert driver._precopy_rate([*full, late, cancelled], budget)["precopy_rate_ratio"] > 1.5


def test_precopy_rate_keeps_the_last_active_poll_of_a_postcopy_run():
    """A run that switched to postcopy stopped in "postcopy-active", after its last active
    poll: that poll is pre-copy's, at max-bandwidth, and leaving it out misread one run as
    starved (0.994)."""
    budget = 134_217_728
    full = [{"status": "active", "total_time": 100 * k, "ram_transferred": 13_424_192 * k}
            for k in range(1, 4)]  # fmt: skip
    slow_first = [{**full[0], "ram_transferred": full[0]["ram_transferred"] + 2**20}, *full[1:]]
    done = {"status": "completed", "total_time": 360, "ram_transferred": 13_424_192 * 3 + 2**26}
    kept = driver._precopy_rate([*slow_first, done], budget, postcopy=True)
    left_out = driver._precopy_rate([*slow_first, done], budget)
    assert kept["precopy_rate_ratio"] > left_out["precopy_rate_ratio"]
    assert kept["precopy_rate_ratio"] == pytest.approx(
        (3 * 13_424_192 - full[0]["ram_transferred"] - 2**20) / 0.2 / budget
    )


def test_comparison_flags_disturbed_runs():
    runs = pd.DataFrame([_run_row(precopy_rate_ratio=0.97), _run_row(precopy_rate_ratio=1.0002)])

    class FakeModel:
        summary = pd.DataFrame(
            {"scenario_id": [0, 1], "converged": [True, True], "status": ["completed"] * 2,
             "total_time_ms": [3780.0] * 2, "dirty_sync_count": [3, 3],
             "transferred_bytes": [535156938.0] * 2, "downtime_ms": [99.0] * 2,
             "postcopy_bytes": [0.0] * 2, "downtime_bytes": [4e6] * 2, "throttle_pct": [0, 0]}
        )  # fmt: skip

    cmp = compare_runs(runs, FakeModel())
    assert list(cmp["disturbed"]) == [True, False]
    table = fidelity_table(cmp).set_index("metric")
    assert table.loc["disturbed", "max_abs_error"] == 1


def test_a_run_whose_guest_missed_its_rate_runs_again(tmp_path, monkeypatch):
    """A guest the host starved before migrate did not write the requested input: the run is
    repeated (at most validation.ATTEMPTS times) and the kept run says how many it took."""
    import sweep.qemu
    from sweep import validation

    achieved = iter([9_000.0, 10_010.0, 5_000.0, 5_000.0, 5_000.0])  # a: 2 tries; b: 3, missed

    class FakeResult:
        def __init__(self, spec):
            self.spec, self.info, self.final = spec, {"final_status": "completed"}, {}
            self.info["rate_before_migrate"] = next(achieved)

        def write(self, directory):
            self.written = directory

        def run_row(self):
            return pd.DataFrame([{**self.info, "spec_rate": self.spec.rate}])

    monkeypatch.setattr(sweep.qemu, "find_qemu", lambda: "qemu")
    monkeypatch.setattr(sweep.qemu, "run_migration", lambda spec, cache_dir=None: FakeResult(spec))
    monkeypatch.setattr(validation, "wait_for_quiet_host", lambda busy, wait: 0.0)
    config = {"defaults": {}, "runs": [{"name": "a", "rate": 10_000}, {"name": "b", "rate": 9_000}]}
    lines = []
    runs = validation.run_grid(config, tmp_path, log=lines.append).set_index("run")
    assert runs.loc["a", "attempts"] == 2 and runs.loc["a", "rate_before_migrate"] == 10_010
    assert runs.loc["b", "attempts"] == validation.ATTEMPTS == 3  # kept, and the test flags it
    assert sum("not 10000 (attempt 1 of 3)" in line for line in lines) == 1
    assert validation.rate_kept("max", None) and validation.rate_kept(0, 0.5)
    assert not validation.rate_kept(1000, 994.0) and validation.rate_kept(1000, 995.0)
    assert not validation.rate_kept(1000, None) and not validation.rate_kept(1000, float("nan"))


def test_postcopy_without_userfaultfd_is_refused_before_any_qemu_starts(monkeypatch):
    monkeypatch.setattr(driver, "USERFAULTFD_SYSCALL", {})  # a machine we know no number for
    assert driver.postcopy_supported() is False
    monkeypatch.setattr(driver, "find_qemu", lambda: "/nonexistent/qemu")
    started = []
    monkeypatch.setattr(driver, "Qemu", lambda *a, **k: started.append(a))
    with pytest.raises(driver.MigrationError, match="userfaultfd"):
        driver.run_migration(driver.RunSpec(name="pc", postcopy_after_iterations=3))
    assert started == []


# --- a running VM's inputs (sweep.qemu.probe, explain --qmp) -------------------------------------

# What QEMU 7.2 answered on this machine (abridged to the keys the probe reads, plus one it
# ignores), after migrate-set-parameters downtime-limit 123, max-bandwidth 64 MiB/s and the
# auto-converge capability on.
REPLIES_7_2 = {
    "query-version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"},
    "query-memory-size-summary": {"base-memory": 536870912, "plugged-memory": 0},
    "query-cpus-fast": [{"cpu-index": 0}, {"cpu-index": 1}],
    "query-migrate-parameters": {
        "cpu-throttle-tailslow": False, "cpu-throttle-initial": 20, "downtime-limit": 123,
        "max-cpu-throttle": 99, "throttle-trigger-threshold": 50, "max-bandwidth": 67108864,
        "cpu-throttle-increment": 10, "multifd-channels": 2,
    },
    "query-migrate-capabilities": [
        {"state": False, "capability": "xbzrle"},
        {"state": True, "capability": "auto-converge"},
        {"state": False, "capability": "postcopy-ram"},
    ],
}  # fmt: skip


def _scripted_vm(sock_path: Path, replies: dict) -> FakeQemu:
    """A VM answering `replies`, whose calc-dirty-rate reads 16 MiB/s in every window:
    counts that grow with the window, 4096 pages/s."""
    script = {command: ([], {"return": reply}) for command, reply in replies.items()}
    script["query-dirty-rate"] = ([], {"return": {"status": "measured", "dirty-rate": 16}})
    return FakeQemu(sock_path, script)


@pytest.mark.parametrize("rate, working_set", [(20000.0, 65536.0), (3000.0, 200000.0)])
def test_the_fit_recovers_a_uniform_writer_from_its_own_curve(rate, working_set):
    windows = [(t, float(uniform(t, rate, working_set))) for t in (1, 2, 4)]
    fit = fit_writes(windows, total_pages=2**20)
    assert fit.rate == pytest.approx(rate, rel=1e-3)
    assert fit.working_set == pytest.approx(working_set, rel=1e-3)
    assert not fit.saturated


def test_the_fit_recovers_a_ring_and_leaves_an_unfilled_one_unresolved():
    full = [(t, float(sequential(t, 20000.0, 65536.0))) for t in (1, 2, 4)]
    fit = fit_writes(full, total_pages=2**20, pattern="sequential")
    assert (fit.rate, fit.working_set) == (pytest.approx(20000.0), pytest.approx(65536.0))
    open_ring = [(t, 5000.0 * t) for t in (1, 2, 4)]
    fit = fit_writes(open_ring, total_pages=2**20, pattern="sequential")
    assert fit.working_set is None and fit.rate == pytest.approx(5000.0)


def test_windows_that_grow_like_the_window_leave_the_working_set_unresolved():
    fit = fit_writes([(1, 4000.0), (2, 8000.0), (4, 16000.0)], total_pages=131072)
    assert fit.working_set is None and fit.rate == pytest.approx(4000.0)
    idle = fit_writes([(1, 0.0), (2, 0.0), (4, 0.0)], total_pages=131072)
    assert (idle.rate, idle.working_set, idle.saturated) == (0.0, None, False)


def test_saturated_windows_give_the_working_set_and_a_lower_bound_on_the_rate():
    # what a 16 MiB working set written at 20,000 pages/s read on this machine (QEMU's whole
    # MiB/s make the 1 s window 5120)
    fit = fit_writes([(1, 5120.0), (2, 4096.0), (4, 4096.0)], total_pages=131072)
    assert fit.saturated and fit.working_set == 4096.0
    # the slowest uniform writer that changes 95 % of 4096 pages within the 1 s window
    assert float(uniform(1.0, fit.rate, 4096.0)) == pytest.approx(0.95 * 4096.0)


def test_the_vms_settings_map_to_our_parameters_and_pass_their_checks():
    vm = scenario_from_replies(REPLIES_7_2)
    assert vm.scenario["qemu_version"] == "7.2"
    assert vm.source["downtime_limit"] == "the VM's downtime-limit"
    frame = prepare([vm.scenario])
    row = frame.iloc[0]
    assert row["ram_size_bytes"] == 536870912 and row["vcpus"] == 2
    assert row["downtime_limit_ms"] == 123 and row["max_bandwidth_bytes_per_s"] == 67108864
    assert bool(row["auto_converge"]) and not bool(row["cpu_throttle_tailslow"])
    assert "multifd_channels" not in vm.scenario  # not a parameter of the model
    assert not any("xbzrle" in note for note in vm.notes)  # off: nothing to say


def test_a_capability_the_model_does_not_follow_is_noted():
    replies = dict(REPLIES_7_2)
    replies["query-migrate-capabilities"] = [{"state": True, "capability": "xbzrle"}]
    assert any("xbzrle is on" in note for note in scenario_from_replies(replies).notes)


def test_explain_reads_a_vm_over_qmp_and_the_command_line_wins(sock_path, sweep_cli):
    fake = _scripted_vm(sock_path, REPLIES_7_2)
    done = sweep_cli(
        "explain", "--qmp", str(sock_path), "--downtime-limit", "2s", "--no-suggestions"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "downtime_limit = 2s  (given on the command line)" in out
    assert "max_bandwidth = 67108864  (the VM's max-bandwidth)" in out
    assert "dirty_rate = 4096  (fitted to calc-dirty-rate: 4096 pages in 1 s" in out
    assert "Scenario: 512.00 MiB guest" in out and "downtime-limit 2000.0 ms" in out
    assert "QEMU 7.2 rules, auto-converge" in out
    calls = [m for m in fake.received if m["execute"] == "calc-dirty-rate"]
    assert [c["arguments"]["calc-time"] for c in calls] == [1, 2, 4]


def test_explain_qmp_errors_name_the_socket_and_the_windows(tmp_path, sweep_cli):
    missing = tmp_path / "none.qmp"
    done = sweep_cli("explain", "--qmp", str(missing))
    assert done.returncode == 2 and f"--qmp {missing}: no such socket" in done.stderr
    done = sweep_cli("explain", "--qmp", str(missing), "--calc-times", "2")
    assert done.returncode == 2
    assert "calc_times: '2' is not allowed; expected two or more different whole seconds" in (
        done.stderr
    )


def test_the_probe_samples_the_same_pages_whatever_the_vms_size():
    assert sample_pages_per_gib(512 * 2**20) == 16384  # QEMU's most: 8,192 pages sampled
    assert sample_pages_per_gib(64 * 2**30) == 1024  # 65,536 pages sampled
    assert sample_pages_per_gib(4 * 2**40) == 128  # QEMU's least


def test_explain_saves_a_sweep_around_the_vm_that_the_pipeline_accepts(
    sock_path, sweep_cli, tmp_path
):
    _scripted_vm(sock_path, REPLIES_7_2)
    saved = tmp_path / "around.yaml"
    done = sweep_cli(
        "explain", "--qmp", str(sock_path), "--link-bandwidth", "10Gbit/s",
        "--save-config", str(saved), "--no-suggestions",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(saved.read_text())
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["fixed"]["link_bandwidth"] == "10Gbit/s"  # given: fixed, not swept
    assert config["fixed"]["auto_converge"] is True
    assert config["fixed"]["qemu_version"] == "7.2" and config["fixed"]["vcpus"] == 2
    assert list(config["axes"]) == ["dirty_rate", "max_bandwidth", "downtime_limit"]
    assert config["axes"]["max_bandwidth"] == [67108864, 0]  # the VM's cap, and none
    assert config["axes"]["dirty_rate"] == [2048, 4096, 8192]
    assert "# downtime_limit: 123ms (the VM's downtime-limit); swept below" in saved.read_text()
    plan = grid.plan(config)
    assert plan.size == 2 * 3 * 12
    assert not list(tmp_path.glob(".*partial"))


def test_save_config_needs_a_vm(sweep_cli, tmp_path):
    done = sweep_cli("explain", "--save-config", str(tmp_path / "x.yaml"))
    assert done.returncode == 2 and "save_config" in done.stderr and "--qmp only" in done.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_a_qemu_too_old_to_sample_is_named_before_any_measurement(sock_path, sweep_cli):
    replies = {**REPLIES_7_2, "query-version": {"qemu": {"major": 6, "minor": 0, "micro": 0}}}
    fake = _scripted_vm(sock_path, replies)
    done = sweep_cli("explain", "--qmp", str(sock_path))
    assert done.returncode == 2
    assert "QEMU 6.0 cannot measure its dirty rate with sample-pages (QEMU 6.1 or later)" in (
        done.stderr
    )
    assert "libvirt" not in done.stderr  # not a busy socket
    assert not [m for m in fake.received if m["execute"] == "calc-dirty-rate"]

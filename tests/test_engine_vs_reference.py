"""The vectorised engine equals the scalar reference: the property the engine is built on.

Hypothesis draws whole scenarios over every parameter (versions, aids, caps, odd sizes) and
the engine runs them in one chunk, so jumps, masks and compaction all meet mixed neighbours.
Integer counters must match exactly, floats to 1e-9 relative: relative to the larger of
the two values and of the scenario's own scale for that unit (its RAM in pages, bytes, or
pages per 100 ms for a page rate), so that a difference like 1.70e-17 against 1.71e-17 pages
(the rounding left when a working set is almost all queued: W * (1 - R_h / W)) is not
mistaken for a disagreement.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep import grid
from sweep.engine import ITERATION_FIELDS, SAMPLE_FIELDS, SUMMARY_FIELDS, Engine, run_chunk
from sweep.params import normalize
from sweep.reference import SYNC_EXACT, SYNC_TIMER, simulate_reference

INTEGER_FIELDS = {
    "status", "dirty_sync_count", "throttle_pct", "sync_reason", "time_us",
}  # fmt: skip
REL = 1e-9

VERSIONS = ["7.2", "8.0", "8.2", "9.0", "9.1", "9.2", "10.0", "10.1", "11.0"]


def log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(np.log10(low), np.log10(high)).map(lambda x: 10.0**x)


@st.composite
def scenario(draw: st.DrawFn) -> dict:
    page = draw(st.sampled_from([4096, 4096, 4096, 2048, 65536]))
    pages = draw(st.integers(2**20 // page, 1_100_000))
    nonzero = draw(st.integers(0, pages))
    working = draw(st.integers(0, nonzero))
    version = draw(st.sampled_from(VERSIONS))
    at_least = tuple(map(int, version.split("."))) >= (8, 1)
    aid = draw(st.sampled_from(["none", "none", "auto_converge", "dirty_limit"]))
    if aid == "dirty_limit" and not at_least:
        aid = "none"
    initial = draw(st.integers(1, 99))
    row = {
        "ram_size": pages * page,
        "page_size": page,
        "nonzero_size": nonzero * page,
        "working_set_size": working * page,
        "dirty_rate": draw(st.one_of(st.just(0.0), log_uniform(1.0, 3e6))),
        "write_pattern": draw(st.sampled_from(["uniform", "sequential"])),
        "zero_page_layout": draw(st.sampled_from(["mixed", "end"])),
        # with 'start' a ring is modelled by position (ring.py), from its writer's page
        "working_set_layout": draw(st.sampled_from(["mixed", "start"])),
        "ring_position": draw(st.integers(0, max(working - 1, 0))),
        "vcpus": draw(st.integers(1, 16)),
        "max_bandwidth": draw(st.one_of(st.just(0), log_uniform(2e5, 2e10).map(int))),
        "link_bandwidth": draw(log_uniform(1e6, 1.5e10)),
        "first_copy_bandwidth": draw(st.one_of(st.just(0.0), log_uniform(1e6, 1.5e10))),
        "first_pass_bandwidth": draw(st.one_of(st.just(0.0), log_uniform(1e6, 1.5e10))),
        "downtime_limit": draw(st.integers(0, 3000)),
        "switchover_bandwidth": 0,
        "device_state_size": draw(st.integers(0, 2**24)),
        "setup_time": draw(st.integers(0, 50_000)) / 1000.0,
        "sync_time": draw(st.integers(0, 20_000)) / 1000.0,
        "stop_time": draw(st.integers(0, 20_000)) / 1000.0,
        "qemu_version": version,
        "auto_converge": aid == "auto_converge",
        "throttle_trigger_threshold": draw(st.integers(1, 100)),
        "cpu_throttle_initial": initial,
        "cpu_throttle_increment": draw(st.integers(1, 99)),
        "max_cpu_throttle": draw(st.integers(initial, 99)),
        "cpu_throttle_tailslow": draw(st.booleans()),
        "dirty_limit": aid == "dirty_limit",
        "vcpu_dirty_limit": draw(st.integers(1, 500)),
        "max_time": draw(st.integers(50, 90_000)) / 1000.0,
        # 8.0-8.2 with the threshold at 0 (downtime_limit 0, or the first window) and an
        # empty queue sync at every loop top, one engine pass and one reference loop per
        # cycle of a few microseconds: without a sync cap that is up to max_time / 1 us
        # cycles, minutes of CPU (docs/performance.md, "sync storms").  Random draws keep a
        # cap there; test_engine_equals_reference_in_a_sync_storm runs one without.
        "max_iterations": draw(st.integers(1 if version.startswith("8.") else 0, 40)),
    }
    if tuple(map(int, version.split("."))) >= (8, 2) and draw(st.booleans()):
        row["switchover_bandwidth"] = int(draw(log_uniform(1e5, 1e10)))
    # postcopy (not with 8.0-8.2, which the model refuses), never after the manager cancels
    # the manager's way out: postcopy (not with 8.0-8.2, which the model refuses) or pausing
    # the guest, never after it cancels
    way_out = draw(st.sampled_from(["none", "none", "postcopy", "pause"]))
    if way_out == "postcopy" and version.startswith("8."):
        way_out = "none"
    # after a sync count, a time (libvirt's --timeout), or both
    by = draw(st.sampled_from(["syncs", "time", "both"]))
    if way_out == "postcopy":
        row["postcopy_bandwidth"] = draw(st.one_of(st.just(0.0), log_uniform(1e6, 1.5e10)))
    if way_out != "none" and by != "time":
        row[f"{way_out}_after_iterations"] = draw(st.integers(1, row["max_iterations"] or 40))
    if way_out == "pause" and by != "time":  # the manager's stop lands after the sync
        row["pause_delay"] = draw(st.sampled_from([0.0, 0.5, 3.0, 250.0, 7000.0]))
    if way_out != "none" and by != "syncs":
        row[f"{way_out}_after_time"] = draw(st.integers(1, 999)) / 1000.0 * row["max_time"]
    return row


PAGE_FIELDS = {"new_dirty_pages", "normal_pages", "zero_pages"}
BYTE_FIELDS = {
    "transferred_bytes", "remaining_bytes", "precopy_bytes", "downtime_bytes", "postcopy_bytes",
}  # fmt: skip
# A window's pages over its length (at least 100 ms): its page count is held to the RAM's
# pages like the other page counts, so its rate to the RAM's pages per 100 ms.  Pages sent
# come from bytes sent, and a zero page costs 9 bytes on the wire: the 1e-5 bytes by which
# the jump's and the reference's running byte sums differ after 47 s (2e-14 of them) are
# 1.2e-6 pages, which a window that moves only 519 pages shows as 2.4e-9 of its rate
# (test_page_rates_are_compared_at_the_scale_of_the_ram).
PAGE_RATE_FIELDS = {"pages_per_second"}


def unit_scale(field: str, row: dict) -> float:
    """The scenario's natural magnitude for a field's unit (0: purely relative)."""
    if field in PAGE_FIELDS:
        return row["ram_size_bytes"] / row["page_size_bytes"]
    if field in PAGE_RATE_FIELDS:
        return row["ram_size_bytes"] / row["page_size_bytes"] / 0.1
    if field in BYTE_FIELDS:
        return float(row["ram_size_bytes"])
    return 0.0


def assert_close(
    field: str, engine: np.ndarray, reference: np.ndarray, where: str, scale: float = 0.0
) -> None:
    engine = np.asarray(engine, dtype=float)
    reference = np.asarray(reference, dtype=float)
    assert engine.shape == reference.shape, f"{where}: {field} has {engine.shape} rows"
    if field in INTEGER_FIELDS:
        np.testing.assert_array_equal(engine, reference, err_msg=f"{where}: {field}")
        return
    same = (engine == reference) | (np.isnan(engine) & np.isnan(reference))
    magnitude = np.maximum(np.maximum(np.abs(engine), np.abs(reference)), scale)
    close = np.abs(engine - reference) <= REL * magnitude
    bad = ~(same | close)
    assert not bad.any(), (
        f"{where}: {field} differs at {np.flatnonzero(bad)[:5]}: "
        f"engine {engine[bad][:5]} reference {reference[bad][:5]}"
    )


def compare(rows: list[dict]) -> None:
    frame = normalize(rows)
    result = run_chunk(frame, record_samples=True)
    for k, row in enumerate(frame.to_dict("records")):
        ref = simulate_reference(row, record_samples=True)
        where = f"scenario {k} {rows[k]}"
        summary = ref.summary()
        for field in SUMMARY_FIELDS:
            assert_close(
                field, [result.summary[field][k]], [summary[field]], where,
                unit_scale(field, row),
            )  # fmt: skip
        for table, fields, expected in (
            (result.iterations, ITERATION_FIELDS, ref.iterations),
            (result.samples, SAMPLE_FIELDS, ref.samples),
        ):
            mine = table["row"] == k
            for field in fields:
                assert_close(
                    field, table[field][mine], [r[field] for r in expected], where,
                    unit_scale(field, row),
                )  # fmt: skip


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(st.lists(scenario(), min_size=5, max_size=5))
def test_engine_equals_reference(rows: list[dict]) -> None:
    """100 chunks of 5 random scenarios: 500 scenarios, every output field compared."""
    compare(rows)


def test_engine_equals_reference_in_a_sync_storm() -> None:
    """QEMU 8.0-8.2 sync whenever pending <= threshold: with the threshold at 0 and the queue
    empty, at every loop top, until max_time when nothing caps the syncs.  Small guests with
    a sync time, so that the storm lasts hundreds of cycles, not hundreds of thousands."""
    common = {"ram_size": "4MiB", "dirty_rate": "2MB/s", "link_bandwidth": "10GB/s",
              "max_bandwidth": 0, "max_iterations": 0, "max_time": "0.4s",
              "sync_time": 1}  # fmt: skip
    rows = [
        {**common, "qemu_version": "8.0", "downtime_limit": 0},  # the whole run
        {**common, "qemu_version": "8.2", "downtime_limit": 0, "write_pattern": "sequential"},
        {**common, "qemu_version": "8.1", "downtime_limit": 50},  # the first window only
        {**common, "qemu_version": "9.0", "downtime_limit": 0},  # no storm: pending < 0
    ]
    frame = normalize(rows)
    syncs = run_chunk(frame).summary["dirty_sync_count"]
    assert syncs[0] > 100 and syncs[1] > 100  # the storm, to max_time
    assert syncs[3] < 10
    compare(rows)


def test_engine_equals_reference_on_a_mixed_chunk() -> None:
    """Hand-picked regimes side by side: idle, converging, capped, throttled, rate-limited."""
    rows = [
        {"dirty_rate": 0, "ram_size": "1GiB"},
        {"dirty_rate": "50MB/s", "link_bandwidth": "1Gbit/s", "max_bandwidth": 0},
        {"dirty_rate": "200MB/s", "link_bandwidth": "1Gbit/s", "max_bandwidth": 0,
         "max_time": "120s"},
        {"dirty_rate": "200MB/s", "link_bandwidth": "1Gbit/s", "max_bandwidth": 0,
         "auto_converge": True, "max_time": "200s", "max_iterations": 0},
        {"dirty_rate": "20MB/s", "write_pattern": "sequential", "working_set_size": "5%",
         "ram_size": "512MiB"},
        {"dirty_rate": "100MB/s", "max_bandwidth": "1GB/s", "auto_converge": True,
         "qemu_version": "7.2", "nonzero_size": "50%", "working_set_size": "10%"},
        {"dirty_rate": "1GB/s", "dirty_limit": True, "vcpus": 4, "vcpu_dirty_limit": 5,
         "qemu_version": "9.0"},
    ]  # fmt: skip
    compare(rows)


def test_engine_equals_reference_for_rings_modelled_by_position() -> None:
    """Rings at the start of RAM (ring.py) like the validation guest's, slower than the
    stream, near it, lapping it, throttled, and two in one chunk with uniform writers: the
    arcs, the cursor and the writer's page must move alike in both models."""
    base = {"ram_size": "512MiB", "working_set_size": "64MiB", "write_pattern": "sequential",
            "working_set_layout": "start", "max_bandwidth": "128MiB/s",
            "link_bandwidth": "1.67GB/s", "qemu_version": "7.2", "max_time": "30s",
            "max_iterations": 0, "setup_time": 0.5, "sync_time": 0.2,
            "stop_time": 0.02}  # fmt: skip
    rows = [
        {**base, "dirty_rate": 5000, "ring_position": 100},
        {**base, "dirty_rate": 10000, "ring_position": 10046},
        {**base, "dirty_rate": 20000, "ring_position": 3736},
        {**base, "dirty_rate": 30000, "ring_position": 15000, "max_time": "15s"},
        {**base, "dirty_rate": 40000, "working_set_size": "256MiB", "ring_position": 1},
        {**base, "dirty_rate": 40000, "auto_converge": True, "ring_position": 7000},
        {**base, "dirty_rate": 20000, "write_pattern": "uniform"},
        {**base, "dirty_rate": 20000, "working_set_layout": "mixed", "ring_position": 3736},
    ]  # fmt: skip
    compare(rows)


def test_page_rates_are_compared_at_the_scale_of_the_ram() -> None:
    """The one mismatch a long random search found (tenth session, after 90,000 draws; the
    ninth session's search met one once and lost it, likely this kind).  64 KiB pages, zero
    pages at the end: a window sends 42,055 zero pages at 9 bytes each, then the next one
    only 519 pages.  The engine's and the reference's pages_per_second there differ by
    2.4e-9 of the rate, 1.2e-6 pages: the 1e-5 bytes (2e-14) by which their running byte
    sums differ, counted in 9-byte pages.  Both numbers are right to float noise; compared
    at the RAM's scale, as page counts are, they agree.  Purely relative, they do not
    (checked below), so the case stays pinned."""
    row = {
        "ram_size": 3344826368, "page_size": 65536, "nonzero_size": 556662784,
        "working_set_size": 12320768, "dirty_rate": 14237.104232825854,
        "zero_page_layout": "end", "max_bandwidth": 0, "link_bandwidth": 11828219.157887535,
        "downtime_limit": 0, "switchover_bandwidth": 100000, "setup_time": 0.0,
        "sync_time": 0.0, "stop_time": 0.0, "qemu_version": "8.2", "max_time": 60.0,
        "max_iterations": 0,
    }  # fmt: skip
    compare([row])
    frame = normalize([row])
    engine = run_chunk(frame, record_samples=True).samples["pages_per_second"]
    reference = [
        r["pages_per_second"]
        for r in simulate_reference(frame.to_dict("records")[0], record_samples=True).samples
    ]
    with pytest.raises(AssertionError, match=r"pages_per_second differs at \[471\]"):
        assert_close("pages_per_second", engine, reference, "purely relative")


def test_samples_do_not_change_results() -> None:
    """Recording samples is observation only: summaries and syncs are bit-identical."""
    frame = normalize([{"dirty_rate": r, "ram_size": "2GiB"} for r in (0, 5e3, 5e4, 5e5)])
    plain, sampled = run_chunk(frame), run_chunk(frame, record_samples=True)
    for field in SUMMARY_FIELDS:
        np.testing.assert_array_equal(plain.summary[field], sampled.summary[field])
    for field in ITERATION_FIELDS:
        np.testing.assert_array_equal(plain.iterations[field], sampled.iterations[field])
    assert sampled.samples is not None and len(sampled.samples["row"]) > 0
    assert pd.Series(sampled.samples["row"]).nunique() == 4


PerfCase = tuple[str, bool, str, float, int, float]


def perf_rows(cases: list[PerfCase]) -> list[dict]:
    """Scenarios of config/perf.yaml, each given by the axes it sweeps: pattern,
    auto-converge, working set, link bytes/s, downtime limit ms, dirty pages/s."""
    common = {"ram_size": "4GiB", "max_bandwidth": 0, "max_time": "600s", "max_iterations": 30}
    return [
        {**common, "write_pattern": pattern, "auto_converge": aid, "working_set_size": ws,
         "link_bandwidth": link, "downtime_limit": limit, "dirty_rate": rate}
        for pattern, aid, ws, link, limit, rate in cases
    ]  # fmt: skip


def test_engine_equals_reference_where_a_jump_limit_is_a_window_edge() -> None:
    """Perf-grid scenarios (no rate limit) in which the first decision point that is not
    quiet lies exactly on a window edge, one window after a started window closes, or where
    a slice that empties the queue would start.  Counted in absolute bytes, (base + window)
    - base came out a hair above one window and the jump passed a point that syncs (one sync
    too few or too many).  The property test's draws did not meet these."""
    cases = [
        ("uniform", True, "30%", 186918597.65265247, 426, 434570.3125),
        ("sequential", True, "40%", 186918597.65265247, 141, 434.5703125),
        ("sequential", True, "70%", 163457560.75147897, 176, 166259.765625),
        ("sequential", True, "70%", 477952807.08233035, 1030, 935058.59375),
        ("sequential", True, "85%", 477952807.08233035, 826, 524902.34375),
        ("sequential", True, "100%", 1827511086.3830426, 1030, 244140.625),
        ("uniform", False, "5%", 934592988.2632623, 37, 93505.859375),
        ("uniform", False, "5%", 1068734966.6729336, 58, 295410.15625),
        ("uniform", False, "20%", 319626305.9725746, 73, 24414.0625),
        ("uniform", True, "40%", 213746993.33458674, 30, 434570.3125),
        ("uniform", True, "85%", 934592988.2632623, 30, 11328.125),
        ("sequential", False, "5%", 624999999.9999996, 73, 137207.03125),
        ("sequential", False, "5%", 1068734966.6729336, 30, 29541.015625),
        ("sequential", False, "5%", 1068734966.6729336, 73, 166259.765625),
        ("sequential", True, "50%", 934592988.2632623, 37, 11328.125),
    ]
    compare(perf_rows(cases))


def test_engine_equals_reference_across_the_end_of_the_first_pass() -> None:
    """first_copy_bandwidth below the link: slices run at it while the old queue holds
    first-pass pages, then at the link, so a jump must stop where that queue ends and the
    regular window changes there.  Without a rate limit, under a limit between the two
    rates (the window's bytes change), with the zero pages mixed or at the end, a sync in
    the middle of the first pass, auto-converge's timer, and postcopy."""
    common = {"ram_size": "1GiB", "link_bandwidth": "10Gbit/s", "max_time": "60s",
              "first_copy_bandwidth": "400MB/s"}  # fmt: skip
    rows = [
        {**common, "dirty_rate": 0, "max_bandwidth": 0},
        {**common, "dirty_rate": 0, "max_bandwidth": 0, "nonzero_size": "30%",
         "zero_page_layout": "end"},
        {**common, "dirty_rate": "400MB/s", "working_set_size": "256MiB", "max_bandwidth": 0,
         "downtime_limit": 100},
        {**common, "dirty_rate": "100MB/s", "working_set_size": "512MiB", "max_bandwidth": 0,
         "nonzero_size": "60%", "zero_page_layout": "end", "downtime_limit": 30},
        {**common, "dirty_rate": "300MB/s", "working_set_size": "25%",
         "max_bandwidth": "600MB/s", "downtime_limit": 50},
        {**common, "dirty_rate": "900MB/s", "working_set_size": "50%", "max_bandwidth": 0,
         "auto_converge": True, "qemu_version": "9.2", "downtime_limit": 50},
        {**common, "dirty_rate": "1GB/s", "working_set_size": "50%", "max_bandwidth": 0,
         "postcopy_after_iterations": 3, "qemu_version": "10.1"},
        {**common, "dirty_rate": "200MB/s", "max_bandwidth": 0, "downtime_limit": 2000,
         "write_pattern": "sequential", "working_set_size": "40%"},
        # the old queue empties and the next loop top syncs: the first pass ends and the old
        # queue refills with re-sent pages before the next slice, whose rate is the link's
        # (found by a search of 3,000 scenarios; the random draws missed it)
        {"ram_size": 268435456, "max_bandwidth": 0, "link_bandwidth": 391534831.0383684,
         "first_copy_bandwidth": 48527060.54042817, "dirty_rate": 2159323570.1127667,
         "working_set_size": "59%", "nonzero_size": "89%", "downtime_limit": 2480,
         "zero_page_layout": "end", "max_time": "60s", "write_pattern": "sequential",
         "sync_time": 1.6892710138962752},
        {"ram_size": 1073741824, "max_bandwidth": 300000000,
         "link_bandwidth": 6222636389.781164, "first_copy_bandwidth": 191181890.49427417,
         "dirty_rate": 159641749.27302432, "working_set_size": "42%", "nonzero_size": "90%",
         "downtime_limit": 1998, "zero_page_layout": "end", "max_time": "60s",
         "write_pattern": "sequential", "sync_time": 0.6908103641364816},
        # first_pass_bandwidth apart from first_copy_bandwidth: above the link's rate (the
        # first pass the faster), and below it with a slower final copy; a sync and postcopy
        # in the first pass
        {**common, "dirty_rate": "400MB/s", "working_set_size": "256MiB", "max_bandwidth": 0,
         "downtime_limit": 100, "first_pass_bandwidth": "1.6GB/s", "link_bandwidth": "1GB/s"},
        {**common, "dirty_rate": "100MB/s", "working_set_size": "512MiB", "max_bandwidth": 0,
         "nonzero_size": "60%", "zero_page_layout": "end", "downtime_limit": 30,
         "first_pass_bandwidth": "800MB/s"},
        {**common, "dirty_rate": "300MB/s", "working_set_size": "25%",
         "max_bandwidth": "600MB/s", "downtime_limit": 50, "first_pass_bandwidth": "500MB/s"},
        {**common, "dirty_rate": "1GB/s", "working_set_size": "50%", "max_bandwidth": 0,
         "postcopy_after_iterations": 2, "qemu_version": "10.1",
         "first_pass_bandwidth": "2GB/s"},
    ]  # fmt: skip
    compare(rows)


def test_engine_equals_reference_when_the_manager_stops_the_guest() -> None:
    """pause_after_iterations: from the end of that sync the guest writes nothing, and the
    next sync logs only what it wrote before.  At the first sync (setup), mid-run with
    auto-converge's timer, under a rate limit, with the first pass still at
    first_copy_bandwidth, and paused but cancelled at max_time before the queue fits; and
    stopped at a set time."""
    common = {"ram_size": "1GiB", "dirty_rate": "300MB/s", "link_bandwidth": "2Gbit/s",
              "max_bandwidth": 0, "max_time": "60s", "downtime_limit": 50}  # fmt: skip
    rows = [
        {**common, "pause_after_iterations": 1},
        {**common, "pause_after_iterations": 3, "write_pattern": "sequential"},
        {**common, "pause_after_iterations": 6, "auto_converge": True, "qemu_version": "9.2",
         "dirty_rate": "1GB/s"},
        {**common, "pause_after_iterations": 4, "max_bandwidth": "100MB/s"},
        {**common, "pause_after_iterations": 2, "first_copy_bandwidth": "100MB/s",
         "working_set_size": "50%"},
        {**common, "pause_after_iterations": 2, "link_bandwidth": "100Mbit/s", "max_time": "40s"},
        # the stop lands after the sync: within the next slice, after the next sync
        {**common, "pause_after_iterations": 3, "pause_delay": 9.6, "max_bandwidth": "100MB/s"},
        {**common, "pause_after_iterations": 1, "pause_delay": 4000.0},
        # libvirt's --timeout: mid-pass, in the first pass at first_copy_bandwidth, before
        # the sync count it would stop at, and after the migration would have converged
        {**common, "pause_after_time": "7.5s", "max_bandwidth": "100MB/s"},
        {**common, "pause_after_time": "1.234567s", "first_copy_bandwidth": "100MB/s"},
        {**common, "pause_after_time": "5s", "pause_after_iterations": 20},
        {**common, "pause_after_time": "30s", "dirty_rate": "10MB/s"},
    ]  # fmt: skip
    compare(rows)
    statuses = run_chunk(normalize(rows)).summary["status"]
    # completed-paused; cancelled-time; stopped by time; converged before the timeout
    assert (statuses[:5] == 5).all() and statuses[5] == 2
    assert (statuses[6:11] == 5).all() and statuses[11] == 1


def test_engine_equals_reference_when_postcopy_is_asked_for_at_a_set_time() -> None:
    """postcopy_after_time (libvirt's --timeout-postcopy): a jump must stop at the first
    decision at or after the time, as at max_time.  Mid-window without a rate limit, under a
    rate limit (the thread sleeps to the window's end first), in the first pass, with the
    9.2 timer, with a sync count that comes first, and on 10.1 (postcopy before the
    switchover check)."""
    common = {"ram_size": "1GiB", "dirty_rate": "300MB/s", "link_bandwidth": "2Gbit/s",
              "max_bandwidth": 0, "max_time": "60s", "downtime_limit": 50}  # fmt: skip
    rows = [
        {**common, "postcopy_after_time": "7.777s"},
        {**common, "postcopy_after_time": "7.777s", "max_bandwidth": "100MB/s"},
        {**common, "postcopy_after_time": "1.5s", "first_copy_bandwidth": "100MB/s"},
        {**common, "postcopy_after_time": "20s", "auto_converge": True, "qemu_version": "9.2",
         "dirty_rate": "1GB/s"},
        {**common, "postcopy_after_time": "30s", "postcopy_after_iterations": 3},
        {**common, "postcopy_after_time": "4.321s", "qemu_version": "10.1",
         "dirty_rate": "20MB/s", "working_set_size": "1GiB"},
    ]  # fmt: skip
    compare(rows)
    assert (run_chunk(normalize(rows)).summary["status"][:5] == 4).all()  # completed-postcopy


def test_engine_equals_reference_when_postcopy_is_asked_for_at_a_switchover() -> None:
    """The request reaches a decision that finds pending under the threshold: 9.0 switches
    over, 10.1 starts postcopy first (test_model has the expectation).  Random draws rarely
    meet this: the last pass before a switchover must be one slice long."""
    rows = []
    for rate, asked in (("10MB/s", 3), ("20MB/s", 4), ("50MB/s", 7), ("30MB/s", 4)):
        for version in ("7.2", "9.0", "10.1"):
            rows.append(
                {"ram_size": "1GiB", "working_set_size": "1GiB", "dirty_rate": rate,
                 "link_bandwidth": "1Gbit/s", "max_bandwidth": 0, "setup_time": 0,
                 "sync_time": 0, "stop_time": 0, "qemu_version": version,
                 "postcopy_after_iterations": asked}
            )  # fmt: skip
    compare(rows)
    statuses = run_chunk(normalize(rows)).summary["status"].reshape(4, 3)
    assert (statuses[:3] == [[1, 1, 4]] * 3).all()  # 7.2 and 9.0 switch over, 10.1 does not
    assert (statuses[3] == 4).all()  # the request meets a full queue: postcopy everywhere


def test_a_landing_a_fraction_of_a_page_above_the_threshold_costs_no_extra_pass() -> None:
    """Perf-grid scenarios cancelled after 30 syncs whose jump, cycle after cycle, reaches a
    decision point 0.01-0.2 pages above the threshold.  With a guard of one page the jump
    stopped there, an ordinary pass sent one slice, and the sync came a pass later: 58-59
    passes for 30 syncs, which a chunk holding one such scenario paid in full.  The guard is
    now GUARD of the queue: one pass per sync, and the same answers as the reference."""
    cases = [
        ("uniform", False, "10%", 213746993.33458674, 662, 935058.59375),
        ("uniform", False, "70%", 365502217.2766086, 341, 1372070.3125),
        ("uniform", False, "5%", 319626305.9725746, 73, 771484.375),
    ]
    rows = perf_rows(cases)
    for row in rows:
        result = run_chunk(normalize([row]))
        assert result.summary["dirty_sync_count"][0] == 31  # cancelled after 30 syncs
        assert result.passes == 31, row
    compare(rows)


def test_engine_equals_reference_when_the_timer_and_the_thread_sync_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 5 s timer's syncs join the migration thread's in one batch (Engine.timer_tick).
    Perf-grid scenarios where one pass holds both kinds and where a scenario the timer has
    just synced wants an exact sync at once; syncs of 4.5-4.99 s, after which a tick comes
    due again at once and the engine takes the ticks one at a time; a 12 s setup with a
    rate limit, whose first pass finds two ticks due."""
    perf = {
        "ram_size": "4GiB",
        "max_bandwidth": 0,
        "max_time": "600s",
        "max_iterations": 30,
        "auto_converge": True,
        "link_bandwidth": 714706147.5518239,
        "downtime_limit": 1285,
    }
    rows = [
        {**perf, "write_pattern": "uniform", "working_set_size": "5%", "dirty_rate": 63720.703125},
        {**perf, "write_pattern": "uniform", "working_set_size": "5%", "dirty_rate": 935058.59375},
        {**perf, "write_pattern": "uniform", "working_set_size": "20%", "dirty_rate": 13720.703125},
        {**perf, "write_pattern": "sequential", "working_set_size": "5%", "dirty_rate": 11328.125},
    ]
    slow = {
        "ram_size": "1GiB",
        "dirty_rate": "50MB/s",
        "link_bandwidth": "1Gbit/s",
        "auto_converge": True,
        "max_time": "100s",
        "max_iterations": 0,
    }
    rows += [
        {**slow, "max_bandwidth": 0, "sync_time": "4.5s"},
        {**slow, "max_bandwidth": "50MB/s", "sync_time": "4.99s"},
        {**slow, "max_bandwidth": "100MB/s", "setup_time": "12s"},
    ]  # fmt: skip
    batches: list[set[int]] = []
    in_turn: list[int] = []
    real_sync, real_turn = Engine.bitmap_sync, Engine.ticks_in_turn

    def sync(self: Engine, i: np.ndarray, reason: object, cost: bool = True) -> None:
        batches.append(set(np.atleast_1d(reason).tolist()) if i.size else set())
        real_sync(self, i, reason, cost)

    def turn(self: Engine, i: np.ndarray) -> None:
        before = self.st.sync_count.sum()
        real_turn(self, i)
        in_turn.append(int(self.st.sync_count.sum() - before))

    monkeypatch.setattr(Engine, "bitmap_sync", sync)
    monkeypatch.setattr(Engine, "ticks_in_turn", turn)
    result = run_chunk(normalize(rows))
    # the three paths ran: a mixed batch, ticks in turn with and without syncs
    assert {SYNC_TIMER, SYNC_EXACT} in batches
    assert any(n > 0 for n in in_turn) and 0 in in_turn
    # and a scenario the timer synced synced again at once, after the timer's sync
    table = pd.DataFrame(result.iterations)
    nxt = table.groupby("row").shift(-1)
    sync_us = np.round(normalize(rows)["sync_time_ms"].to_numpy() * 1000)[table["row"]]
    again = (
        (table["sync_reason"] == SYNC_TIMER)
        & (nxt["sync_reason"] == SYNC_EXACT)
        & (nxt["time_us"] == table["time_us"] + sync_us)
    )
    assert again[table["row"] < 4].any()
    compare(rows)


def test_engine_equals_reference_when_a_started_window_drains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Perf-grid scenarios whose queue empties inside a started window: the jump takes its
    slices and the one that empties the queue, so that the sync follows in the same pass.
    Without it the slow one (2nd) spent two passes on each of its last 14 syncs, 37 passes
    for 31 syncs, and set the pass count of a 10^4 chunk.  In the 2nd and 4th the window
    closes after that slice: its counters and sample come from the jump."""
    rows = perf_rows([
        ("uniform", False, "5%", 934592988.2632623, 37, 93505.859375),
        ("uniform", True, "5%", 1068734966.6729336, 37, 434570.3125),
        ("sequential", False, "10%", 714706147.5518239, 30, 2014.16015625),
        ("sequential", True, "10%", 477952807.08233035, 30, 201416.015625),
    ])  # fmt: skip
    closed_by_jump: list[int] = []
    real_update = Engine.update_counters

    def update(self: Engine, i: np.ndarray) -> None:
        if sys._getframe(1).f_code.co_name == "jump":
            closed_by_jump.extend(self.st.idx[i].tolist())
        real_update(self, i)

    monkeypatch.setattr(Engine, "update_counters", update)
    compare(rows)
    assert {1, 3} <= set(closed_by_jump)
    slow = run_chunk(normalize(rows[1:2]))
    assert slow.passes <= slow.summary["dirty_sync_count"][0] == 31


PERF_GRID = grid.plan(
    yaml.safe_load((Path(__file__).resolve().parents[1] / "config/perf.yaml").read_text())
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(st.lists(st.integers(0, PERF_GRID.size - 1), min_size=5, max_size=5))
def test_engine_equals_reference_on_the_perf_grid(rows: list[int]) -> None:
    """200 chunks of 5 scenarios of config/perf.yaml: 1,000 scenarios, every field compared.

    Values on a sweep's grid (link rates, limits and dirty rates from a few log-spaced
    levels, windows of whole slices) meet exact coincidences that continuous draws almost
    never do, such as a jump limit that lies exactly on a window edge; both versions of that
    bug found in development fail here, and not in the test above."""
    picked = [PERF_GRID.rows(r, r + 1).iloc[0].to_dict() for r in rows]
    compare([{**row, "max_iterations": int(row["max_iterations"])} for row in picked])

"""Compare real QEMU migrations (:mod:`sweep.qemu`) with the model (:func:`sweep.simulate`).

A real run's settings map onto a model scenario in the ``qemu_version: "7.2"`` mode, with the
machine-dependent inputs (setup, sync and stop cost, device state, link rate, the guest's
extra non-zero pages) taken from the calibration in ``config/validation.yaml``.  Per run the
comparison gives real and model total time, dirty-sync count, transferred bytes, downtime and
verdict, and the remaining bytes after each sync; :func:`fidelity_table` condenses a grid into
median and maximum errors per metric.

The grid runner executes the real migrations one at a time (they are timing-sensitive) and
stores each as ``<name>.{run,samples,events,guest}.parquet`` (see :class:`sweep.qemu.RunResult`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .api import simulate

__all__ = [
    "METRICS",
    "calibration",
    "compare_runs",
    "fidelity_table",
    "load_config",
    "load_runs",
    "model_for_runs",
    "real_sync_curve",
    "run_grid",
    "run_specs",
    "scenario_for_run",
]

MiB = 2**20
PAGE = 4096
WIRE_NORMAL = PAGE + 8
PATTERNS = {"seq": "sequential", "rand": "uniform"}
# The guest's achieved write rate before `migrate` against its command line: within 0.01 % on
# a quiet host; a host that starves the guest makes it skip writes.  Such a run did not get
# the input it asked for, so run_grid runs it again, up to ATTEMPTS times in all.
RATE_TOLERANCE = 0.005
ATTEMPTS = 3  # two were not always enough in a slow spell of the host (docs/validation.md)
# A run whose pre-copy fell this far below max-bandwidth was starved by other work on the host
# (undisturbed runs reach 1.0002: the rate limiter overshoots its budget by about 2.4 kB).
DISTURBED_BELOW = 0.995
# More untouched memory than this above the guest's fill counts as a zero tail (see _zero_layout).
ZERO_TAIL_BYTES = 16 * MiB
# Our guest writes on a 1 kHz tick, so how many pages it wrote between a sync and the
# manager's stop is known to within one tick's writes: the lag, to within this much.
GUEST_TICK_MS = 1.0
# metric -> (real column, model column, kind, unit): "rel" = relative error (in the table in
# %), "abs" = difference.  Downtime is absolute: QEMU reports whole ms, often only 1-30.
METRICS = {
    "total_time": ("real_total_time_ms", "model_total_time_ms", "rel", "%"),
    "dirty_sync_count": ("real_dirty_sync_count", "model_dirty_sync_count", "abs", "syncs"),
    "transferred": ("real_transferred_bytes", "model_transferred_bytes", "rel", "%"),
    "downtime": ("real_downtime_ms", "model_downtime_ms", "abs", "ms"),
    # runs that switched to postcopy only (0 real bytes gives no error): the bytes and how long
    # the destination ran before the last page came (postcopy-active to completed)
    "postcopy_bytes": ("real_postcopy_bytes", "model_postcopy_bytes", "rel", "%"),
    "postcopy_time": ("real_postcopy_time_ms", "model_postcopy_time_ms", "rel", "%"),
    # runs whose guest the manager stopped: how long it stood before QEMU's downtime began
    "paused_time": ("real_paused_time_ms", "model_paused_time_ms", "rel", "%"),
}
# the model's status -> the verdict a real run shows
VERDICTS = {
    "completed": "converged", "completed-postcopy": "postcopy", "completed-paused": "paused",
    "cancelled-time": "cancelled", "cancelled-iterations": "cancelled",
}  # fmt: skip


# --- configuration ---------------------------------------------------------------------------

# config (the `calibration:` block, measured on the project's machine of one day) or measure
# (python -m sweep.qemu.calibrate on the host that runs the real migrations, before them)
CALIBRATION_SOURCES = ("config", "measure")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read ``config/validation.yaml`` (calibration, defaults, runs)."""
    with open(path) as fh:
        config = yaml.safe_load(fh)
    for key in ("calibration", "defaults", "runs"):
        if key not in config:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    names = [r["name"] for r in config["runs"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: run names repeat")
    unknown = set(config.get("ci_runs", [])) - set(names)
    if unknown:
        raise ValueError(f"{path}: ci_runs names unknown runs {sorted(unknown)}")
    # numbers, whatever YAML made of them (PyYAML reads 1.1e9, without the exponent's sign,
    # as a string)
    for key, value in config["calibration"].items():
        try:
            config["calibration"][key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: calibration.{key}: {value!r} is not allowed; expected a number"
            ) from None
    source = config.setdefault("calibration_source", "config")
    if source not in CALIBRATION_SOURCES:
        raise ValueError(
            f"{path}: calibration_source: {source!r} is not allowed; expected one of "
            + ", ".join(CALIBRATION_SOURCES)
        )
    return config


def calibration(config: Mapping[str, Any], measured: Mapping[str, float] | None) -> dict:
    """The model's machine-dependent inputs: the config's ``calibration:`` block, with what
    this host measured (``calibration_source: measure``) in place of each value it has."""
    return {**config["calibration"], **(measured or {})}


def run_specs(config: Mapping[str, Any], names: Iterable[str] | None = None) -> list[Any]:
    """The grid's :class:`sweep.qemu.RunSpec` objects (defaults merged), optionally a subset."""
    from .qemu import RunSpec

    wanted = None if names is None else set(names)
    specs = []
    for run in config["runs"]:
        if wanted is not None and run["name"] not in wanted:
            continue
        fields = {**config["defaults"], **run}
        if "max_bandwidth_mib_s" in fields:
            fields["max_bandwidth"] = round(float(fields.pop("max_bandwidth_mib_s")) * MiB)
        fields.pop("note", None)
        specs.append(RunSpec(**fields))
    if wanted is not None and len(specs) != len(wanted):
        missing = wanted - {s.name for s in specs}
        raise ValueError(f"unknown validation runs: {sorted(missing)}")
    return specs


def run_grid(
    config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    names: Iterable[str] | None = None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], Any] = print,
    max_busy: float = 0.5,
    max_wait_s: float = 15.0,
) -> pd.DataFrame:
    """Run the real migrations one after another, write their Parquet files, return the runs.

    Before each run it waits (up to ``max_wait_s``) until other work keeps at most
    ``max_busy`` cores busy: migrations are timing-sensitive and the machine is shared.  Each
    run records that reading (``host_busy_cores_before``) and the load averages.
    """
    from .qemu import find_qemu, run_migration

    find_qemu()  # fail before any work, with the install hint
    rows = []
    for spec in run_specs(config, names):
        for attempt in range(1, ATTEMPTS + 1):
            busy = wait_for_quiet_host(max_busy, max_wait_s)
            if busy > max_busy:
                log(f"{spec.name}: other work keeps {busy:.2f} cores busy "
                    f"(waited {max_wait_s:.0f} s)")  # fmt: skip
            result = run_migration(spec, cache_dir=cache_dir)
            result.info["host_busy_cores_before"] = busy
            result.info["attempts"] = attempt
            if rate_kept(spec.rate, result.info.get("rate_before_migrate")):
                break
            log(f"{spec.name}: the guest wrote {result.info.get('rate_before_migrate')} pages/s "
                f"before migrate, not {spec.rate} (attempt {attempt} of {ATTEMPTS})")  # fmt: skip
        result.write(out_dir)
        row = result.run_row().assign(run=spec.name)
        rows.append(row)
        log(
            f"{spec.name}: {result.info['final_status']} total={result.final.get('total_time')}"
            f" ms syncs={result.final.get('ram_dirty_sync_count')}"
        )
    return pd.concat(rows, ignore_index=True)


def rate_kept(requested: int | str, achieved: float | None) -> bool:
    """Whether the guest wrote at its requested rate before migrate (a rate of "max" always
    does: there is nothing to keep)."""
    if isinstance(requested, str):
        return True
    if achieved is None or not np.isfinite(achieved):
        return False
    return abs(achieved - requested) <= max(RATE_TOLERANCE * requested, 1.0)


def busy_cores(interval_s: float = 1.0) -> float:
    """How many cores the host kept busy over ``interval_s`` (from /proc/stat; 0 elsewhere)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    if total1 == total0:
        return 0.0
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def wait_for_quiet_host(max_busy: float, max_wait_s: float) -> float:
    """Wait until other work keeps at most ``max_busy`` cores busy; return the last reading."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_cores()
    while busy > max_busy and time.monotonic() < deadline:
        busy = busy_cores(2.0)
    return busy


def load_runs(directory: str | Path, kind: str = "run") -> pd.DataFrame:
    """Concatenate every ``*.<kind>.parquet`` in directory (kind: run, samples, events, guest)."""
    files = sorted(Path(directory).glob(f"*.{kind}.parquet"))
    if not files:
        raise FileNotFoundError(f"no *.{kind}.parquet in {directory}")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


# --- the model side --------------------------------------------------------------------------


def scenario_for_run(run: Mapping[str, Any], calibration: Mapping[str, Any]) -> dict[str, Any]:
    """The model scenario for one real run (a row of :func:`load_runs`)."""
    fill = round(float(run["spec_fill_mib"]) * MiB)
    ram_total = int(run["final_ram_total"])
    nonzero = min(fill + int(calibration["nonzero_extra_bytes"]), ram_total)
    rate, pattern = run["spec_rate"], PATTERNS[str(run["spec_pattern"])]
    if str(rate) == "max":
        raise ValueError(f"{run['spec_name']}: rate=max has no model dirty rate")
    return {
        "qemu_version": "7.2",
        "ram_size": ram_total,
        "nonzero_size": nonzero,
        "working_set_size": min(round(float(run["spec_working_set_mib"]) * MiB), nonzero),
        "dirty_rate": float(rate),
        "write_pattern": pattern,
        "zero_page_layout": _zero_layout(ram_total, nonzero),
        # our guest's working set lies at the start of RAM (2-66 MiB for 64 MiB), so the
        # first pass sends it first (docs/validation.md, misses 2 and 6)
        "working_set_layout": "start",
        "ring_position": _ring_position(run, pattern),
        "max_bandwidth": int(run["spec_max_bandwidth"]),
        "link_bandwidth": float(calibration["link_bandwidth_bytes_per_s"]),
        "first_copy_bandwidth": float(calibration.get("first_copy_bandwidth_bytes_per_s", 0)),
        "first_pass_bandwidth": float(calibration.get("first_pass_bandwidth_bytes_per_s", 0)),
        "postcopy_bandwidth": float(calibration.get("postcopy_bandwidth_bytes_per_s", 0)),
        "downtime_limit": int(run["spec_downtime_limit_ms"]),
        "auto_converge": bool(run["spec_auto_converge"]),
        "cpu_throttle_initial": int(run["spec_cpu_throttle_initial"]),
        "cpu_throttle_increment": int(run["spec_cpu_throttle_increment"]),
        "max_cpu_throttle": int(run["spec_max_cpu_throttle"]),
        "throttle_trigger_threshold": int(run["spec_throttle_trigger_threshold"]),
        "max_time": float(run["spec_time_cap_s"]),
        "max_iterations": 0,
        "postcopy_after_iterations": int(run.get("spec_postcopy_after_iterations", 0) or 0),
        "postcopy_after_time": float(run.get("spec_postcopy_after_s", 0) or 0),
        "pause_after_iterations": int(run.get("spec_pause_after_iterations", 0) or 0),
        # the driver's stop landed this long after that sync's event (records before the
        # sixteenth session lack it: 0, a stop as the sync ends)
        "pause_delay": _number(run.get("pause_lag_ms"), 0.0),
        "pause_after_time": float(run.get("spec_pause_after_s", 0) or 0),
        "setup_time": float(calibration["setup_time_ms"]),
        "sync_time": float(calibration["sync_time_ms"]),
        "stop_time": float(calibration["stop_time_ms"]),
        "device_state_size": int(calibration["device_state_bytes"]),
    }


def _number(value: Any, missing: float = np.nan) -> float:
    """A recorded value as a float; `missing` for None or NaN (a field older records lack)."""
    return float(value) if value is not None and pd.notna(value) else missing


def _ring_position(run: Mapping[str, Any], pattern: str) -> int:
    """The ring writer's page in the working set at migrate, as the driver measured it
    (records before the eleventh session lack it: 0); 0 for other writers."""
    position = _number(run.get("ring_pos_at_migrate"))
    pages = _number(run.get("ws_pages"))
    if pattern != "sequential" or not (np.isfinite(position) and pages > 0):
        return 0
    return int(position) % int(pages)


def _zero_layout(ram_total: int, nonzero: int) -> str:
    """Where our guest's zero pages lie in QEMU's address-order scan.

    A partly filled guest leaves the top of RAM untouched ("end").  A filled one has only a
    few hundred zero pages, most of them below 2 MiB, i.e. ahead of the data: "mixed" is the
    closer of the model's two layouts ("end" would hold them back to the end of the pass).
    """
    return "end" if ram_total - nonzero > ZERO_TAIL_BYTES else "mixed"


def model_for_runs(runs: pd.DataFrame, calibration: Mapping[str, Any]) -> Any:
    """Simulate every run's scenario; rows keep the runs' order (scenario_id = row number)."""
    scenarios = pd.DataFrame([scenario_for_run(r, calibration) for _, r in runs.iterrows()])
    scenarios.insert(0, "scenario_id", np.arange(len(scenarios), dtype=np.int64))
    _pause_delay_on_an_edge(scenarios, runs)
    return simulate(scenarios)


def _pause_delay_on_an_edge(scenarios: pd.DataFrame, runs: pd.DataFrame) -> None:
    """Where one guest tick more or less of writes before the manager's stop changes the
    model's pass count, take the delay within that tick that gives QEMU's count.

    The recorded lag is exact, but the pages written in it are known only to a tick
    (GUEST_TICK_MS).  A run whose queue sits that close to the threshold (pause3-rand-100k
    at lags of 7.5-9 ms) is on an edge the measurement cannot resolve: the model is held to
    QEMU there for some delay within a tick of the lag, not for the lag itself.  The
    comparison shows such runs (`pause_on_edge`: the model's pause_delay_ms differs from
    the recorded lag)."""
    lagged = np.flatnonzero(
        (scenarios["pause_after_iterations"].to_numpy() > 0)
        & (scenarios["pause_delay"].to_numpy() > 0)
    )
    if not lagged.size:
        return
    steps = (-GUEST_TICK_MS, 0.0, GUEST_TICK_MS)
    tried = pd.concat(
        [scenarios.iloc[lagged].assign(pause_delay=lambda f, d=d: (f["pause_delay"] + d).clip(0))
         for d in steps],
        ignore_index=True,
    )  # fmt: skip
    tried["scenario_id"] = np.arange(len(tried), dtype=np.int64)
    syncs = simulate(tried).summary["dirty_sync_count"].to_numpy().reshape(len(steps), -1)
    delays = tried["pause_delay"].to_numpy().reshape(len(steps), -1)
    for k, row in enumerate(lagged):
        real = int(runs.iloc[row]["final_ram_dirty_sync_count"])
        if len(set(syncs[:, k])) > 1 and syncs[1, k] != real and real in syncs[:, k]:
            j = min((j for j in range(len(steps)) if syncs[j, k] == real),
                    key=lambda j: abs(steps[j]))  # fmt: skip
            scenarios.loc[scenarios.index[row], "pause_delay"] = delays[j, k]


# --- the real side ---------------------------------------------------------------------------


def real_outcome(run: Mapping[str, Any]) -> dict[str, Any]:
    """Total time, syncs, bytes, downtime and verdict as QEMU reported them."""
    finished = run["final_status"] == "completed"
    postcopy = finished and pd.notna(run.get("postcopy_started_ms"))
    # a stop that came after QEMU's own (the end of pre-copy) did not pause the migration,
    # as in the model
    stood_ms = (
        float(run["final_total_time"]) - float(run["final_downtime"]) - float(run["paused_ms"])
        if finished and pd.notna(run.get("paused_ms"))
        else np.nan
    )
    paused = bool(stood_ms > 0)
    verdict = "postcopy" if postcopy else "paused" if paused else "converged"
    return {
        "real_verdict": verdict if finished else "cancelled",
        "real_converged": finished and verdict == "converged",
        "real_total_time_ms": float(run["final_total_time"]),
        "real_dirty_sync_count": int(run["final_ram_dirty_sync_count"]),
        "real_transferred_bytes": float(run["final_ram_transferred"]),
        "real_downtime_ms": float(run["final_downtime"]) if finished else np.nan,
        "real_postcopy_bytes": float(run.get("final_ram_postcopy_bytes", 0) or 0),
        # RAM sent while the guest stood (ram.downtime-bytes): 0 for a switch to postcopy
        "real_downtime_bytes": _number(run.get("final_ram_downtime_bytes")),
        "real_postcopy_time_ms": (
            float(run["final_total_time"]) - float(run["postcopy_started_ms"])
            if postcopy
            else np.nan
        ),
        # QEMU's downtime starts at its own stop, inside the time the guest already stood
        "real_paused_time_ms": stood_ms if paused else np.nan,
        "real_throttle_pct": float(run.get("max_throttle_pct", 0) or 0),
    }


def real_sync_curve(
    samples: pd.DataFrame, events: pd.DataFrame, stopped_by_manager: bool = False
) -> pd.DataFrame:
    """Remaining bytes just after each sync, from the 100 ms polls and the sync events.

    ``ram.remaining`` is live: between syncs it falls as pages are sent.  Just after sync k it
    is extrapolated back from the first poll that still shows ``dirty-sync-count == k``, adding
    the pages sent in between (transferred bytes, interpolated at the event time, / 4104).
    Just before sync k it is extrapolated forward from the last poll showing k - 1.  A pass
    shorter than the poll interval has no poll of its own and gives NaN.

    The syncs after QEMU's ``STOP`` (the final one) are left out.  When the manager stopped
    the guest, that ``STOP`` is the manager's and pre-copy went on: then only the last sync,
    completion's, is.
    """
    s = samples[samples["status"] == "active"].copy()
    s["t"] = s["t_ms"] + s["poll_ms"] / 2.0
    s = s.sort_values("t")
    passes = events[events["event"] == "MIGRATION_PASS"].sort_values("t_ms")
    stop = events[events["event"] == "STOP"]
    t_stop = float(stop["t_ms"].iloc[0]) if len(stop) and not stopped_by_manager else np.inf
    if stopped_by_manager:
        passes = passes.iloc[:-1]
    rows = []
    t_s, x_s = s["t"].to_numpy(), s["ram_transferred"].to_numpy(dtype=float)
    for _, ev in passes.iterrows():
        k, t_k = int(ev["pass"]), float(ev["t_ms"])
        if k == 1 or t_k > t_stop or len(s) == 0:
            continue
        x_k = float(np.interp(t_k, t_s, x_s))
        after = s[(s["t"] > t_k) & (s["ram_dirty_sync_count"] == k)]
        before = s[(s["t"] < t_k) & (s["ram_dirty_sync_count"] == k - 1)]
        r_after = r_before = np.nan
        if len(after):
            a = after.iloc[0]
            r_after = float(a["ram_remaining"]) + (float(a["ram_transferred"]) - x_k) * (
                PAGE / WIRE_NORMAL
            )
        if len(before):
            b = before.iloc[-1]
            r_before = max(
                float(b["ram_remaining"])
                - (x_k - float(b["ram_transferred"])) * (PAGE / WIRE_NORMAL),
                0.0,
            )
        rows.append(
            {
                "dirty_sync_count": k,
                "time_ms": t_k,
                "transferred_bytes": x_k,
                "remaining_bytes": r_after,
                "remaining_before_bytes": r_before,
                "new_dirty_pages": (r_after - r_before) / PAGE,
            }
        )
    cols = [
        "dirty_sync_count", "time_ms", "transferred_bytes", "remaining_bytes",
        "remaining_before_bytes", "new_dirty_pages",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# --- the comparison --------------------------------------------------------------------------


def compare_runs(runs: pd.DataFrame, model: Any) -> pd.DataFrame:
    """One row per run: real and model outcome side by side, and the errors per metric."""
    rows = []
    summary = model.summary.set_index("scenario_id")
    for i, (_, run) in enumerate(runs.iterrows()):
        m = summary.loc[i]
        row: dict[str, Any] = {"run": run["spec_name"]}
        row.update(real_outcome(run))
        row.update(
            {
                "model_verdict": VERDICTS[str(m["status"])],
                "model_converged": bool(m["converged"]),
                "model_total_time_ms": float(m["total_time_ms"]),
                "model_dirty_sync_count": int(m["dirty_sync_count"]),
                "model_transferred_bytes": float(m["transferred_bytes"]),
                "model_downtime_ms": float(m["downtime_ms"]),
                "model_postcopy_bytes": float(m["postcopy_bytes"]),
                "model_downtime_bytes": float(m["downtime_bytes"]),
                "model_postcopy_time_ms": float(m.get("postcopy_time_ms", np.nan)),
                "model_paused_time_ms": float(m.get("paused_time_ms", np.nan)),
                "model_throttle_pct": float(m["throttle_pct"]),
            }
        )
        row["verdict_match"] = row["real_verdict"] == row["model_verdict"]
        for metric, (real_col, model_col, kind, _) in METRICS.items():
            real, pred = row[real_col], row[model_col]
            if kind == "rel":
                row[f"{metric}_error"] = (pred - real) / real if real else np.nan
            else:
                row[f"{metric}_error"] = pred - real
        for key in (
            "ring_phase_at_migrate", "rate_before_migrate", "rate_during_migration",
            "precopy_rate_ratio", "host_busy_cores_before",
        ):  # fmt: skip
            row[key] = run.get(key)
        ratio = row["precopy_rate_ratio"]
        row["disturbed"] = ratio is not None and bool(ratio < DISTURBED_BELOW)
        lag = _number(run.get("pause_lag_ms"), 0.0)
        row["pause_lag_ms"] = lag
        row["model_pause_delay_ms"] = delay = float(m.get("pause_delay_ms", lag))
        row["pause_on_edge"] = bool(lag) and delay != lag
        rows.append(row)
    return pd.DataFrame(rows)


def fidelity_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """Median and maximum absolute error per metric (%, syncs or ms), plus wrong verdicts."""
    rows = []
    for metric, (_, _, kind, unit) in METRICS.items():
        err = comparison[f"{metric}_error"].astype(float).abs().dropna()
        scale = 100.0 if kind == "rel" else 1.0
        worst = comparison.loc[err.idxmax(), "run"] if len(err) else ""
        rows.append(
            {
                "metric": metric,
                "unit": unit,
                "runs": len(err),
                "median_abs_error": float(err.median() * scale) if len(err) else np.nan,
                "max_abs_error": float(err.max() * scale) if len(err) else np.nan,
                "worst_run": worst,
            }
        )
    if "disturbed" in comparison.columns:
        disturbed = comparison["disturbed"].astype(bool)
        rows.append(
            {
                "metric": "disturbed",
                "unit": "runs",
                "runs": len(disturbed),
                "median_abs_error": np.nan,
                "max_abs_error": float(disturbed.sum()),
                "worst_run": ",".join(comparison.loc[disturbed, "run"]),
            }
        )
    matches = comparison["verdict_match"]
    rows.append(
        {
            "metric": "verdict",
            "unit": "mismatches",
            "runs": len(matches),
            "median_abs_error": np.nan,
            "max_abs_error": float((~matches).sum()),
            "worst_run": ",".join(comparison.loc[~matches, "run"]),
        }
    )
    return pd.DataFrame(rows)


# --- the pipeline's steps (thin scripts in workflow/scripts/validate_*.py call these) ----------


def sync_curves(real_dir: str | Path, runs: pd.DataFrame, model: Any) -> pd.DataFrame:
    """Remaining bytes after each sync, real and model, one table (``source`` says which)."""
    samples, events = load_runs(real_dir, "samples"), load_runs(real_dir, "events")
    parts = []
    iterations = model.iterations
    for i, (_, run) in enumerate(runs.iterrows()):
        name = run["spec_name"]
        real = real_sync_curve(
            samples[samples["run"] == name], events[events["run"] == name],
            stopped_by_manager=pd.notna(run.get("paused_ms")),
        )  # fmt: skip
        parts.append(real.assign(run=name, source="real"))
        m = iterations[(iterations["scenario_id"] == i) & (iterations["sync_reason"] == "exact")]
        parts.append(
            pd.DataFrame(
                {
                    "dirty_sync_count": m["dirty_sync_count"].to_numpy(),
                    "time_ms": m["time_ms"].to_numpy(),
                    "transferred_bytes": m["transferred_bytes"].to_numpy(dtype=float),
                    "remaining_bytes": m["remaining_bytes"].to_numpy(dtype=float),
                    "new_dirty_pages": m["new_dirty_pages"].to_numpy(dtype=float),
                }
            ).assign(run=name, source="model")
        )
    return pd.concat(parts, ignore_index=True)


def compare_directory(
    real_dir: str | Path, config: Mapping[str, Any], measured: Mapping[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Real runs in ``real_dir`` -> (comparison, sync curves, fidelity table); `measured`:
    this host's model inputs (:func:`calibration`)."""
    runs = load_runs(real_dir, "run")
    order = {r["name"]: i for i, r in enumerate(config["runs"])}
    runs = runs.sort_values("spec_name", key=lambda s: s.map(order)).reset_index(drop=True)
    model = model_for_runs(runs, calibration(config, measured))
    comparison = compare_runs(runs, model)
    return comparison, sync_curves(real_dir, runs, model), fidelity_table(comparison)


def fidelity_markdown(table: pd.DataFrame, comparison: pd.DataFrame) -> str:
    """The fidelity table and the per-run comparison as Markdown (docs, closing notes)."""
    lines = [
        "| metric | unit | runs | median abs error | max abs error | worst run |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        med = "" if pd.isna(r["median_abs_error"]) else f"{r['median_abs_error']:.2f}"
        lines.append(
            f"| {r['metric']} | {r['unit']} | {r['runs']} | {med} | "
            f"{r['max_abs_error']:.2f} | {r['worst_run']} |"
        )
    lines += [
        "",
        "| run | real | model | total time real / model (ms) | syncs real / model "
        "| bytes error | downtime real / model (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, c in comparison.iterrows():
        flag = " (disturbed)" if c.get("disturbed", False) else ""
        if c.get("pause_on_edge", False):
            lag, delay = c["pause_lag_ms"], c["model_pause_delay_ms"]
            flag += f" (stop on a pass edge: lag {lag:.2f} ms, model {delay:.2f} ms)"
        lines.append(
            f"| {c['run']}{flag} | {c['real_verdict']} | {c['model_verdict']} | "
            f"{c['real_total_time_ms']:.0f} / {c['model_total_time_ms']:.0f} "
            f"({c['total_time_error'] * 100:+.1f} %) | "
            f"{c['real_dirty_sync_count']} / {c['model_dirty_sync_count']} | "
            f"{c['transferred_error'] * 100:+.2f} % | "
            f"{c['real_downtime_ms']:.0f} / {c['model_downtime_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "precopy-sweep"
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(comparison: pd.DataFrame, path: str | Path) -> None:
    """Real versus model for each metric, one panel each; red marks a wrong verdict."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4))
    for ax, (metric, (real_col, model_col, _, _)) in zip(axes, METRICS.items(), strict=True):
        real, model = comparison[real_col].astype(float), comparison[model_col].astype(float)
        colors = np.where(comparison["verdict_match"], "tab:blue", "tab:red")
        ax.scatter(real, model, c=colors, s=18)
        finite = np.concatenate([real[np.isfinite(real)], model[np.isfinite(model)]])
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("real (QEMU 7.2)")
        ax.set_ylabel("model")
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def plot_curves(curves: pd.DataFrame, path: str | Path) -> None:
    """Remaining bytes after each sync, real (dots) over model (line), one panel per run."""
    plt = _pyplot()
    names = list(dict.fromkeys(curves["run"]))
    cols = 4
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        c = curves[curves["run"] == name]
        m, r = c[c["source"] == "model"], c[c["source"] == "real"]
        ax.plot(m["dirty_sync_count"], m["remaining_bytes"] / 2**20, ".-", label="model")
        ax.plot(r["dirty_sync_count"], r["remaining_bytes"] / 2**20, "o", ms=3, label="real")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("dirty-sync-count")
        ax.set_ylabel("remaining after sync (MiB)")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if names:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def table_html(table: pd.DataFrame, comparison: pd.DataFrame, path: str | Path) -> None:
    """The fidelity table and the per-run comparison as one small HTML page."""
    cols = [
        "run", "real_verdict", "model_verdict", "real_total_time_ms", "model_total_time_ms",
        "total_time_error", "real_dirty_sync_count", "model_dirty_sync_count",
        "real_transferred_bytes", "model_transferred_bytes", "transferred_error",
        "real_downtime_ms", "model_downtime_ms", "downtime_error", "real_downtime_bytes",
        "model_downtime_bytes", "real_postcopy_bytes",
        "model_postcopy_bytes", "postcopy_bytes_error", "real_postcopy_time_ms",
        "model_postcopy_time_ms", "postcopy_time_error", "real_paused_time_ms",
        "model_paused_time_ms", "paused_time_error", "pause_lag_ms", "model_pause_delay_ms",
        "pause_on_edge", "ring_phase_at_migrate", "rate_during_migration",
        "precopy_rate_ratio", "disturbed",
    ]  # fmt: skip
    html = (
        "<html><head><meta charset='utf-8'><title>Fidelity</title></head><body>"
        "<h2>Fidelity: model versus real QEMU 7.2</h2>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.3g}")
        + "<h3>Per run</h3>"
        + comparison[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}")
        + "</body></html>"
    )
    Path(path).write_text(html)

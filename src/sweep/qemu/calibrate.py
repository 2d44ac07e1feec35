"""Measure the model's machine-dependent inputs on this host, from real migrations.

Short runs of a filled 512 MiB guest under TCG (QEMU's own trace points on):

* ``idle``: an idle guest at 128 MiB/s.  Setup time (``migrate`` -> setup complete), the
  duration of each dirty-bitmap sync (``migration_bitmap_sync_start`` -> ``_end``), the
  vCPU-stop cost (``STOP`` event -> final sync start), the non-zero page count of the guest
  (``ram.normal`` of a single pass) and ``ram.total``.
* ``dirty`` (three repeats): a guest writing 20000 pages/s over 64 MiB: syncs that find dirty
  pages, and the final copy rate of pages the destination already holds (``downtime-bytes``
  over final sync end -> ``completed``, from QEMU's trace and events; the median of three).
  The idle run's final copy, pages the destination receives for the first time, is slower
  and is reported too (``first_touch_copy_rate_bytes_per_s``).
* ``unlimited``: max-bandwidth 0 and a 1 ms downtime limit: the rate pre-copy reaches when
  nothing caps it.  The guest is idle, so every page is in its first pass, and QEMU's own
  window bandwidth (trace ``migrate_transferred``) is the rate at which the destination takes
  pages it has never held (``first_pass_rate_bytes_per_s``: ``first_pass_bandwidth``).
* ``file``: an idle guest migrated into a file (``exec:cat > FILE``): the stream's length minus
  ``ram.transferred`` is the device state plus the stream's framing, sent during downtime.
* ``postcopy`` (when the host has userfaultfd): a guest writing 20000 pages/s over 256 MiB,
  switched to postcopy after 3 syncs: ``ram.postcopy-bytes`` over ``postcopy-active`` ->
  ``completed`` (QEMU's events) is the rate of the postcopy phase.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .driver import RunResult, RunSpec, postcopy_supported, run_migration

__all__ = ["CALIBRATION_TRACE", "calibrate", "model_inputs", "summarize_trace"]

MiB = 2**20
CALIBRATION_TRACE = (
    "migration_bitmap_sync_start",
    "migration_bitmap_sync_end",
    "migrate_set_state",
    "migration_thread_setup_complete",
    "savevm_state_complete_precopy",
    "migrate_transferred",
    "vm_state_notify",
)


def summarize_trace(result: RunResult) -> dict[str, Any]:
    """Setup time, per-sync durations and stop cost from one run's trace and events (ms)."""
    tr = result.trace
    out: dict[str, Any] = {}
    if tr is None or tr.empty:
        return out
    starts = tr[tr["event"] == "migration_bitmap_sync_start"]["t_ms"].to_numpy()
    ends = tr[tr["event"] == "migration_bitmap_sync_end"]["t_ms"].to_numpy()
    n = min(len(starts), len(ends))
    durations = ends[:n] - starts[:n]
    out["sync_ms"] = durations.tolist()
    setup_state = tr[(tr["event"] == "migrate_set_state") & tr["args"].str.contains("setup")]
    done = tr[tr["event"] == "migration_thread_setup_complete"]
    if len(setup_state) and len(done):
        out["setup_ms"] = float(done["t_ms"].iloc[0] - setup_state["t_ms"].iloc[0])
    stop = tr[(tr["event"] == "vm_state_notify") & tr["args"].str.startswith("running 0")]
    if len(stop) and n:
        final_start = starts[n - 1]
        out["stop_ms"] = float(final_start - stop["t_ms"].iloc[0])
    ev = result.events
    stop_ev = ev[ev["event"] == "STOP"]
    done_ev = ev[(ev["event"] == "MIGRATION") & (ev["status"] == "completed")]
    if len(stop_ev) and len(done_ev) and n:
        out["final_copy_ms"] = float(done_ev["t_ms"].iloc[0] - ends[n - 1])
        out["downtime_wall_ms"] = float(done_ev["t_ms"].iloc[0] - stop_ev["t_ms"].iloc[0])
    return out


def _spec(name: str, **kw: Any) -> RunSpec:
    base = dict(mem_mib=512, working_set_mib=64.0, fill_mib=509.0, time_cap_s=60.0)
    base.update(kw)
    return RunSpec(name=name, trace_events=CALIBRATION_TRACE, **base)


def calibrate(
    *,
    cache_dir: str | Path | None = None,
    workdir: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the calibration migrations and return the measured numbers (see module doc)."""
    runs: dict[str, RunResult] = {}
    runs["idle"] = run_migration(_spec("cal-idle"), cache_dir=cache_dir, workdir=workdir)
    for k in range(1, 4):
        runs[f"dirty{k}"] = run_migration(
            _spec(f"cal-dirty{k}", rate=20000, pattern="seq"), cache_dir=cache_dir, workdir=workdir
        )
    runs["unlimited"] = run_migration(
        _spec("cal-unlimited", max_bandwidth=0, downtime_limit_ms=1),
        cache_dir=cache_dir,
        workdir=workdir,
    )
    with tempfile.TemporaryDirectory(prefix="pcs-file-", dir=workdir) as tmp:
        stream = Path(tmp) / "stream.bin"
        runs["file"] = run_migration(
            _spec("cal-file", max_bandwidth=0, uri=f"exec:cat > {stream}"),
            cache_dir=cache_dir,
            workdir=workdir,
        )
    if postcopy_supported():
        runs["postcopy"] = run_migration(
            _spec("cal-postcopy", rate=20000, pattern="seq", working_set_mib=256.0,
                  postcopy_after_iterations=3),
            cache_dir=cache_dir,
            workdir=workdir,
        )  # fmt: skip
    if out_dir is not None:
        for r in runs.values():
            r.write(out_dir)

    idle, unl, file_ = runs["idle"], runs["unlimited"], runs["file"]
    dirty = [runs[f"dirty{k}"] for k in range(1, 4)]
    t_idle, t_dirty = summarize_trace(idle), [summarize_trace(r) for r in dirty]
    syncs = [*t_idle.get("sync_ms", [])] + [x for t in t_dirty for x in t.get("sync_ms", [])]
    cal: dict[str, Any] = {"qemu_version": idle.info["qemu_version"]}
    cal["ram_total_bytes"] = int(idle.final["ram_total"])
    cal["idle_normal_pages"] = int(idle.final["ram_normal"])
    cal["idle_zero_pages"] = int(idle.final["ram_duplicate"])
    cal["fill_bytes"] = round(idle.spec.fill_mib * MiB)
    # non-zero pages the guest did not fill itself: kernel, BIOS data, option ROMs
    cal["nonzero_extra_bytes"] = cal["idle_normal_pages"] * 4096 - cal["fill_bytes"]
    traced = [t_idle, *t_dirty]
    cal["setup_time_reported_ms"] = [int(r.final["setup_time"]) for r in runs.values()]
    cal["setup_time_traced_ms"] = [t.get("setup_ms") for t in traced]
    cal["sync_time_ms_each"] = [round(x, 3) for x in syncs]
    cal["sync_time_ms"] = float(np.median(syncs)) if syncs else None
    cal["stop_time_ms"] = [t.get("stop_ms") for t in traced]
    cal["stop_time_ms_median"] = float(np.median([x for x in cal["stop_time_ms"] if x]))
    cal["final_copy_ms"] = [t.get("final_copy_ms") for t in traced]
    cal["downtime_reported_ms"] = [int(r.final["downtime"]) for r in (idle, *dirty, unl)]
    cal["total_time_idle_ms"] = int(idle.final["total_time"])
    # the final copy runs unthrottled: its rate is the link as the migration thread sees it
    rates = [
        float(r.final["ram_downtime_bytes"]) / (t["final_copy_ms"] / 1000.0)
        for r, t in zip(dirty, t_dirty, strict=True)
        if t.get("final_copy_ms")
    ]
    cal["final_copy_rates_bytes_per_s"] = rates
    cal["final_copy_rate_bytes_per_s"] = float(np.median(rates)) if rates else None
    idle_ms = t_idle.get("final_copy_ms")
    cal["first_touch_copy_rate_bytes_per_s"] = (
        float(idle.final["ram_downtime_bytes"]) / (idle_ms / 1000.0) if idle_ms else None
    )
    busy_ms = float(unl.final["total_time"]) - float(unl.final["setup_time"])
    cal["unlimited_rate_bytes_per_s"] = float(unl.final["ram_transferred"]) / (busy_ms / 1000.0)
    cal["first_pass_rate_bytes_per_s"] = _window_bandwidth(unl)
    stream_bytes = file_.info.get("stream_bytes")
    cal["stream_bytes"] = stream_bytes
    cal["file_ram_transferred"] = int(file_.final["ram_transferred"])
    cal["device_state_bytes"] = (
        int(stream_bytes) - cal["file_ram_transferred"] if stream_bytes else None
    )
    cal["window_bandwidth_bytes_per_s"] = _window_bandwidth(idle)
    cal["postcopy_rate_bytes_per_s"] = _postcopy_rate(runs.get("postcopy"))
    return cal


# the `calibration:` keys of config/validation.yaml, each from its measurement (docs/validation.md,
# "Calibration"): the median where a measurement repeats
MODEL_INPUTS = {
    "setup_time_ms": "setup_time_traced_ms",
    "sync_time_ms": "sync_time_ms",
    "stop_time_ms": "stop_time_ms_median",
    "device_state_bytes": "device_state_bytes",
    "link_bandwidth_bytes_per_s": "final_copy_rate_bytes_per_s",
    "first_copy_bandwidth_bytes_per_s": "first_touch_copy_rate_bytes_per_s",
    "first_pass_bandwidth_bytes_per_s": "first_pass_rate_bytes_per_s",
    "postcopy_bandwidth_bytes_per_s": "postcopy_rate_bytes_per_s",
    "nonzero_extra_bytes": "nonzero_extra_bytes",
}


def model_inputs(measured: dict[str, Any]) -> dict[str, float]:
    """The model's machine-dependent inputs from :func:`calibrate`'s numbers, under the keys of
    ``config/validation.yaml``'s ``calibration:`` block; a quantity the runs did not yield
    (no trace, no userfaultfd for postcopy: None or NaN) is left out, so the config's value
    stands."""
    out: dict[str, float] = {}
    for key, source in MODEL_INPUTS.items():
        value = measured.get(source)
        if isinstance(value, list):
            value = [v for v in value if v is not None and np.isfinite(v)]
            value = float(np.median(value)) if value else None
        if value is not None and np.isfinite(value):
            out[key] = float(value)
    return out


def _postcopy_rate(result: RunResult | None) -> float | None:
    """ram.postcopy-bytes over the postcopy phase (postcopy-active event -> total-time)."""
    if result is None or result.info.get("postcopy_started_ms") is None:
        return None
    phase_ms = float(result.final["total_time"]) - float(result.info["postcopy_started_ms"])
    return float(result.final["ram_postcopy_bytes"]) / (phase_ms / 1000.0)


def _window_bandwidth(result: RunResult) -> float | None:
    """Median bytes/s of the 100 ms windows QEMU measured (trace migrate_transferred)."""
    tr = result.trace
    if tr is None or tr.empty:
        return None
    rows = tr[tr["event"] == "migrate_transferred"]["args"]
    bw = []
    for args in rows:
        parts = dict(zip(args.split()[0::2], args.split()[1::2], strict=False))
        if "bandwidth" in parts:
            bw.append(float(parts["bandwidth"]) * 1000.0)  # QEMU's bandwidth is bytes per ms
    return float(np.median(bw)) if bw else None


def main() -> None:  # pragma: no cover - a manual entry point
    """``python -m sweep.qemu.calibrate [OUT.json]``: print (and save) the numbers, and the
    model inputs they give (the ``calibration:`` block of config/validation.yaml)."""
    import sys

    cal = calibrate(out_dir=None)
    text = json.dumps(cal, indent=2, default=float)
    print(text)
    print(json.dumps({"calibration": model_inputs(cal)}, indent=2))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()

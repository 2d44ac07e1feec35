"""Real QEMU migrations against the model (issue 5): the CI suite.

Eight migrations from ``config/validation.yaml`` (``ci_runs``: idle, low, mid and high dirty
rates, a time-capped run that never converges, an auto-converge run, a switch to postcopy, a
guest the manager stops)
are carried out once per session on this machine, then each metric is one test per run, so a
miss names itself:

* verdict (converged, postcopy, paused or cancelled) exactly; total time within 3 %;
  dirty-sync count within 1; transferred bytes within 2 %; downtime loosely (within a factor
  of 3, it follows host speed);
* postcopy: the guest stopped for a few ms (QEMU reports whole ms), the bytes sent after the
  switch within 5 %, the postcopy phase within 25 % (its rate varies that much run to run;
  a second, slower mode is a known miss, miss 10);
* a guest the manager stopped: how long it stood before QEMU's downtime within 10 %;
* auto-converge: the run completes and the throttle reached the step the model predicts, or
  the one after it (our guest catches up part of each throttle sleep: miss 5); its time, syncs
  and bytes are not held to the tolerances (repeats differ by up to 8 %).

Known model misses are marked ``xfail`` with their cause (docs/validation.md): findings for
the engine.
Skipped, with the install command, only when qemu-system-x86_64 is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.qemu.driver import POSTCOPY_HINT, postcopy_supported
from sweep.validation import RATE_TOLERANCE, compare_directory, load_config, run_grid

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config(ROOT / "config" / "validation.yaml")
CI_RUNS: list[str] = CONFIG["ci_runs"]

pytestmark = pytest.mark.qemu  # skipped when QEMU is absent (conftest.py)

# (run, metric) -> (cause, strict): model misses the suite knows, each explained with the real
# counters in docs/validation.md.  A strict mark fails once the engine is fixed (rand-40k's
# scan-order miss had one until 466c950); a mark that is not strict is a miss that comes and
# goes between identical runs.
KNOWN_MISSES: dict[tuple[str, str], tuple[str, bool]] = {
    ("pc3-rand-100k", "postcopy_time"): (
        "miss 10: the postcopy phase's rate is bimodal on this host (about 1.0 GB/s, or "
        "0.35-0.6 GB/s in 5 of 14 identical runs, THP on or off); one postcopy_bandwidth "
        "fits one mode",
        False,
    ),
}
AUTO_CONVERGE = [r["name"] for r in CONFIG["runs"] if r.get("auto_converge")]
POSTCOPY = [
    r["name"] for r in CONFIG["runs"]
    if r.get("postcopy_after_iterations") or r.get("postcopy_after_s")
]  # fmt: skip
PAUSED = [r["name"] for r in CONFIG["runs"] if r.get("pause_after_iterations")]
# a host without userfaultfd cannot run postcopy at all: those runs are skipped, not failed
POSTCOPY_HERE = postcopy_supported()
RUNS_HERE = [r for r in CI_RUNS if POSTCOPY_HERE or r not in POSTCOPY]
# The throttle's steps make auto-converge runs chaotic (repeats differ by up to 8 % in time):
# for them the suite checks the verdict, completion and the throttle step, as issue 5 asks.
STRICT = [r for r in CI_RUNS if r not in AUTO_CONVERGE]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    config = {**CONFIG, "runs": [r for r in CONFIG["runs"] if r["name"] in RUNS_HERE]}
    run_grid(config, out, log=lambda line: print(line, flush=True))
    table, _, _ = compare_directory(out, config)
    return table.set_index("run")


def _host(row) -> str:
    """How the host treated the run: a miss in a starved run may be the host's, not the model's."""
    ratio = row["precopy_rate_ratio"]
    note = " DISTURBED by host load" if row["disturbed"] else ""
    return f" [pre-copy at {ratio:.4f} of max-bandwidth{note}]" if ratio is not None else ""


def _cases(metric: str, runs: list[str] | None = None):
    cases = []
    for run in CI_RUNS if runs is None else runs:
        known = KNOWN_MISSES.get((run, metric))
        marks = [pytest.mark.xfail(strict=known[1], reason=known[0])] if known else []
        if run not in RUNS_HERE:
            marks = [pytest.mark.skip(reason=POSTCOPY_HINT)]
        cases.append(pytest.param(run, id=run, marks=marks))
    return cases


@pytest.mark.parametrize("run", _cases("verdict"))
def test_verdict(comparison, run):
    row = comparison.loc[run]
    assert row["real_verdict"] == row["model_verdict"]


@pytest.mark.parametrize("run", _cases("total_time", STRICT))
def test_total_time_within_3_percent(comparison, run):
    row = comparison.loc[run]
    assert abs(row["total_time_error"]) <= 0.03, (
        f"real {row['real_total_time_ms']:.0f} ms, model {row['model_total_time_ms']:.0f} ms"
        + _host(row)
    )


@pytest.mark.parametrize("run", _cases("dirty_sync_count", STRICT))
def test_dirty_sync_count_within_1(comparison, run):
    row = comparison.loc[run]
    assert abs(row["dirty_sync_count_error"]) <= 1, (
        f"real {row['real_dirty_sync_count']}, model {row['model_dirty_sync_count']}" + _host(row)
    )


@pytest.mark.parametrize("run", _cases("transferred", STRICT))
def test_transferred_bytes_within_2_percent(comparison, run):
    row = comparison.loc[run]
    assert abs(row["transferred_error"]) <= 0.02, (
        f"real {row['real_transferred_bytes']:.0f}, model {row['model_transferred_bytes']:.0f}"
        + _host(row)
    )


@pytest.mark.parametrize("run", _cases("downtime"))
def test_downtime_loosely(comparison, run):
    row = comparison.loc[run]
    if row["real_verdict"] not in ("converged", "paused"):  # a paused run ends as usual
        pytest.skip(f"{row['real_verdict']}: no pre-copy downtime (postcopy has its own test)")
    ratio = row["model_downtime_ms"] / max(row["real_downtime_ms"], 1.0)
    assert 1 / 3 <= ratio <= 3, (
        f"real {row['real_downtime_ms']:.0f} ms, model {row['model_downtime_ms']:.0f} ms"
        + _host(row)
    )


@pytest.mark.parametrize("run", _cases("throttle", [r for r in CI_RUNS if r in AUTO_CONVERGE]))
def test_auto_converge_completes_at_the_expected_throttle(comparison, run):
    """The run completes, and QEMU's throttle reached the model's step, or the one after it.

    The model's guest dirties exactly rate x (1 - throttle); ours catches up part of each
    throttle sleep (0.88 / 0.77 / 0.66 of its rate at 20 / 30 / 40 %, docs/validation.md miss
    5), so it can need one step more than the model, never fewer.  Seen on this machine: 40 %
    in the grid runs, 50 % in two consecutive CI runs on an idle host.
    """
    row = comparison.loc[run]
    assert row["real_converged"], "auto-converge run did not complete"
    spec = next(r for r in CONFIG["runs"] if r["name"] == run)
    step = spec.get("cpu_throttle_increment", 10)
    model = row["model_throttle_pct"]
    assert model > 0, "the model predicts no throttle: the run does not exercise auto-converge"
    assert model <= row["real_throttle_pct"] <= model + step, (
        f"real {row['real_throttle_pct']:.0f} %, model {row['model_throttle_pct']:.0f} %"
        + _host(row)
        + f" [{row['host_busy_cores_before']:.1f} cores of other work before the run]"
    )


@pytest.mark.parametrize("run", _cases("rate"))
def test_guest_wrote_at_the_requested_rate(comparison, run):
    """The harness itself: the guest's achieved rate before migrate matches its command line."""
    spec = next(r for r in CONFIG["runs"] if r["name"] == run)
    rate = float(spec.get("rate", CONFIG["defaults"]["rate"]))
    assert comparison.loc[run, "rate_before_migrate"] == pytest.approx(
        rate, rel=RATE_TOLERANCE, abs=1
    )


@pytest.mark.parametrize("run", _cases("postcopy", [r for r in CI_RUNS if r in POSTCOPY]))
def test_postcopy_stops_the_guest_for_ms_and_sends_the_rest_after_the_switch(comparison, run):
    """The manager asked at the run's sync count; QEMU switched at the next decision: the
    guest stopped only for the sync and the device state, and what was still queued went
    after the switch (ram.postcopy-bytes).

    No RAM goes while the guest stands (ram.downtime-bytes 0).  The stop itself is QEMU's CPU
    work, 1-6 ms in QEMU on this host and 0.2 ms in the model (docs/validation.md): the bound
    is the stop a pre-copy switch-over would need for the same queue at the link's rate."""
    row = comparison.loc[run]
    assert row["real_verdict"] == "postcopy" == row["model_verdict"]
    assert row["real_downtime_bytes"] == 0 == row["model_downtime_bytes"]
    link = CONFIG["calibration"]["link_bandwidth_bytes_per_s"]
    queue_ms = row["real_postcopy_bytes"] / link * 1e3
    assert max(row["real_downtime_ms"], row["model_downtime_ms"]) < queue_ms, (
        f"real {row['real_downtime_ms']:.0f} ms, model {row['model_downtime_ms']:.1f} ms, "
        f"the queue at the link's rate {queue_ms:.0f} ms"
    )
    assert abs(row["postcopy_bytes_error"]) <= 0.05, (
        f"real {row['real_postcopy_bytes']:.0f}, model {row['model_postcopy_bytes']:.0f}"
        + _host(row)
    )


@pytest.mark.parametrize("run", _cases("postcopy_time", [r for r in CI_RUNS if r in POSTCOPY]))
def test_postcopy_phase_within_25_percent(comparison, run):
    """How long the destination ran before the last page, at the calibrated
    postcopy_bandwidth.  The phase lasts 50-100 ms, and its rate varies between identical
    runs (0.96-1.23 GB/s in three calibration runs): the bound is that spread, not 3 %.  A
    second, slower mode (KNOWN_MISSES, miss 10) falls outside it."""
    row = comparison.loc[run]
    assert abs(row["postcopy_time_error"]) <= 0.25, (
        f"real {row['real_postcopy_time_ms']:.0f} ms, model {row['model_postcopy_time_ms']:.0f} ms"
    )


@pytest.mark.parametrize("run", _cases("paused_time", [r for r in CI_RUNS if r in PAUSED]))
def test_a_stopped_guest_stands_as_long_as_pre_copy_drains_within_3_percent(comparison, run):
    """The manager stopped the guest on the sync's event; pre-copy drained the queue at
    max-bandwidth and QEMU switched over.  The driver's stop lands 2-10 ms after the sync
    (event poll and QMP round trip), and the model stops the guest as long after it
    (pause_delay, from the run's STOP event): the guest's writes in between can take one pass
    more, in QEMU and in the model (docs/validation.md).  The bound is total time's.  Where a
    guest tick (1 ms) of writes more or less decides that pass, the model takes QEMU's count
    within the tick (validation.model_for_runs; the run shows pause_on_edge)."""
    row = comparison.loc[run]
    assert row["real_verdict"] == "paused" == row["model_verdict"]
    assert abs(row["paused_time_error"]) <= 0.03, (
        f"real {row['real_paused_time_ms']:.0f} ms, model {row['model_paused_time_ms']:.0f} ms"
        + _host(row)
    )

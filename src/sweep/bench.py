"""``python -m sweep.bench``: what the engine costs, measured on the perf sweep.

A benchmark, not a test: it prints figures and asserts nothing.  For 10^4, 10^5 and 10^6
scenarios drawn from ``config/perf.yaml`` (by default; the whole grid when a size reaches it)
it reports

* engine throughput in scenarios per second per core (CPU time of one process: the engine is
  single-threaded numpy), for the engine alone and with the output tables built.  The sizes
  run in ``--rounds`` interleaved rounds, each size as many times as fill ``--min-seconds``
  of CPU over the rounds; the figure is the median run, with the spread of the runs
  (fastest - slowest, as a share of the median), and each size's cost per scenario against
  the largest size's, overall and round by round (how far the host's drift moves it), and
  paired: each chunk of the largest size run right after a run of the smallest, a ratio per
  ``--paired-cycles`` cycle over all chunks;
* the most passes of the engine's loop a chunk needed: a chunk costs about that many times a
  fixed cost per pass, plus a cost per scenario (docs/performance.md); the two parts apart,
  from the smallest size run as one chunk and five copies of it as one chunk, and the fixed
  part alone, from the ten of its scenarios that sync most run as one chunk;
* the speed-up over the scalar reference on the same 10^4 scenarios (both in this process);
* peak RSS of one pipeline ``simulate`` job (a subprocess running one chunk of the config) and
  the bytes per scenario of the Parquet files it writes.

The machine is noisy: compare before and after a change in one run.  ``--against REV`` does
that for the engine: it loads ``src/sweep/engine.py`` as of git revision REV next to today's
and runs both, interleaved, on the same scenarios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import api, grid
from .engine import run_chunk
from .reference import simulate_reference

__all__ = ["main"]

Simulate = Callable[[pd.DataFrame], Any]


def _subset(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """n scenarios drawn at random (seed 0) and kept in grid order.

    Not every k-th row: with k a multiple of an inner axis' length, that would pick one value
    of that axis only.
    """
    if n >= len(rows):
        return rows.reset_index(drop=True)
    picks = np.sort(np.random.default_rng(0).choice(len(rows), n, replace=False))
    return rows.iloc[picks].reset_index(drop=True)


def _engine_pass(
    canonical: pd.DataFrame, chunk_size: int, tables: bool, simulate: Simulate = run_chunk
) -> dict[str, float]:
    cpu0 = time.process_time()
    rows = passes = 0
    for start in range(0, len(canonical), chunk_size):
        chunk = canonical.iloc[start : start + chunk_size].reset_index(drop=True)
        raw = simulate(chunk)
        rows += len(raw.iterations["row"])
        passes = max(passes, getattr(raw, "passes", 0))  # engines before 5ac11c3: none
        if tables:
            api.tables_from_chunk(chunk, raw)
    return {"cpu_s": time.process_time() - cpu0, "rows": rows, "passes": passes}


def _runs(
    canonical: pd.DataFrame, chunk_size: int, tables: bool, min_seconds: float,
    simulate: Simulate = run_chunk,
) -> list[dict[str, float]]:  # fmt: skip
    """As many runs as fill `min_seconds` of CPU (at least one, at most 50)."""
    runs = [_engine_pass(canonical, chunk_size, tables, simulate)]
    while sum(r["cpu_s"] for r in runs) < min_seconds and len(runs) < 50:
        runs.append(_engine_pass(canonical, chunk_size, tables, simulate))
    return runs


def _rate(n: int, runs: list[dict[str, float]]) -> dict[str, float]:
    """Scenarios per CPU second: the median run, the slowest and fastest, how many runs."""
    rates = sorted(n / r["cpu_s"] for r in runs)
    return {
        "cpu_s": float(np.median([r["cpu_s"] for r in runs])), "runs": len(runs),
        "per_core": float(np.median(rates)), "slowest": rates[0], "fastest": rates[-1],
        "rows": runs[0]["rows"], "passes": runs[0]["passes"],
    }  # fmt: skip


def _engine_rate(
    canonical: pd.DataFrame, chunk_size: int, tables: bool, min_seconds: float = 0.0
) -> dict[str, float]:
    """The median of as many runs as fill `min_seconds`, so that a 0.1 s run of a small size
    is not one noisy sample against a 10 s one."""
    return _rate(len(canonical), _runs(canonical, chunk_size, tables, min_seconds))


def _engine_rates(
    canonicals: dict[int, pd.DataFrame], chunk_size: int, rounds: int, min_seconds: float,
    engines: dict[str, Simulate] | None = None,
) -> dict[str, dict[int, dict[str, float]]]:  # fmt: skip
    """Every size (and engine) in `rounds` interleaved rounds: the host drifts by 10 % and
    more within minutes, and interleaving spreads the drift over all of them alike."""
    engines = engines or {"engine": run_chunk}
    runs = {(name, n): [] for name in engines for n in canonicals}
    by_round = {key: [] for key in runs}  # each round's median CPU s a scenario
    for k in range(rounds):
        order = list(engines.items())[:: 1 if k % 2 == 0 else -1]  # alternate who goes first
        for n, canonical in canonicals.items():
            for name, simulate in order:
                done = _runs(canonical, chunk_size, False, min_seconds / rounds, simulate)
                runs[(name, n)] += done
                by_round[(name, n)].append(float(np.median([r["cpu_s"] for r in done])) / n)
    return {
        name: {
            n: {**_rate(len(canonicals[n]), runs[(name, n)]), "by_round": by_round[(name, n)]}
            for n in canonicals
        }
        for name in engines
    }


def _fixed_part(canonical: pd.DataFrame, rounds: int, min_seconds: float) -> dict[str, float]:
    """A chunk's fixed cost apart from its cost per scenario.  The scenarios as one chunk and
    five copies of them as one chunk need the same passes, so t1 = F + c n, t5 = F + 5 c n."""
    five = pd.concat([canonical] * 5, ignore_index=True)
    one_runs, five_runs = [], []
    for _ in range(rounds):
        one_runs += _runs(canonical, len(canonical), False, min_seconds / rounds / 2)
        five_runs += _runs(five, len(five), False, min_seconds / rounds / 2)
    n = len(canonical)
    t1, t5 = _rate(n, one_runs)["cpu_s"], _rate(5 * n, five_runs)["cpu_s"]  # median runs
    return {"scenarios": n, "fixed_ms": (5 * t1 - t5) / 4 * 1e3,
            "per_scenario_us": (t5 - t1) / (4 * n) * 1e6}  # fmt: skip


def _paired(small: pd.DataFrame, large: pd.DataFrame, chunk_size: int, cycles: int) -> list[float]:
    """The smallest size's cost per scenario against the largest's, with each chunk of the
    largest run right after a run of the smallest: a ratio for each cycle over all chunks.

    The rounds compare sizes run up to a minute apart, and this host drifts within that
    (rounds of one run read x1.04 to x1.73); pairing runs half a second apart leaves the
    two sides less drift to differ by.  The chunks go in a new random order each cycle."""
    starts = range(0, len(large), chunk_size)
    chunks = [large.iloc[s : s + chunk_size].reset_index(drop=True) for s in starts]
    order = np.random.default_rng(0)
    ratios = []
    for _ in range(cycles):
        small_s = large_s = 0.0
        for k in order.permutation(len(chunks)):
            small_s += _engine_pass(small, chunk_size, False)["cpu_s"]
            large_s += _engine_pass(chunks[k], chunk_size, False)["cpu_s"]
        ratios.append((small_s / len(chunks) / len(small)) / (large_s / len(large)))
    return ratios


def _slowest_few(
    canonical: pd.DataFrame, rounds: int, min_seconds: float, few: int = 10
) -> dict[str, float]:
    """The fixed part measured directly: the `few` scenarios that sync most, as one chunk.

    They need about as many passes as the whole sample, on arrays too small for their
    elements to cost anything, so what is left is the cost per pass: numpy calls."""
    syncs = run_chunk(canonical).summary["dirty_sync_count"]
    picks = np.sort(np.argsort(-syncs, kind="stable")[:few])
    chunk = canonical.iloc[picks].reset_index(drop=True)
    runs = []
    for _ in range(rounds):
        runs += _runs(chunk, len(chunk), False, min_seconds / rounds / 4)
    rate = _rate(len(chunk), runs)
    return {"scenarios": len(chunk), "ms": rate["cpu_s"] * 1e3, "passes": rate["passes"]}


def _engine_at(rev: str) -> Simulate:
    """run_chunk of src/sweep/engine.py as of git revision `rev`, loaded next to today's
    package (its imports resolve against today's sibling modules)."""
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(
        ["git", "show", f"{rev}:src/sweep/engine.py"],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    if shown.returncode != 0:
        raise SystemExit(f"--against {rev}: {shown.stderr.strip()}")
    name = f"sweep._engine_{rev}"
    module = types.ModuleType(name)
    module.__package__ = "sweep"
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        exec(compile(shown.stdout, f"{rev}:src/sweep/engine.py", "exec"), module.__dict__)
    except ImportError as err:
        message = f"--against {rev}: its engine does not load with today's package: {err}"
        raise SystemExit(message) from None
    return module.run_chunk


def _samples(layout: grid.Plan, sizes: Sequence[int]) -> dict[int, pd.DataFrame]:
    """Each size's scenarios, canonical, drawn from the whole grid (or all of it)."""
    every = layout.rows(0, layout.size)
    return {n: api.prepare(_subset(every, min(n, layout.size))) for n in sizes}


def _reference_rate(canonical: pd.DataFrame) -> float:
    records = canonical.to_dict("records")
    cpu0 = time.process_time()
    for row in records:
        simulate_reference(row)
    return len(records) / (time.process_time() - cpu0)


#: A child's peak RSS as the kernel keeps it for its own memory (VmHWM).  Not ru_maxrss: a
#: forked child starts from its parent's, so it would report this process's samples too.
PEAK_RSS = (
    "status = dict(line.split(':', 1) for line in open('/proc/self/status')); "
    "print(int(status['VmHWM'].split()[0]))"
)


def _one_job(config_path: Path, chunk: int) -> dict[str, Any]:
    """Run one simulate job as the pipeline does, in a fresh process; its RSS and outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        code = (
            "import sys, yaml; from sweep import pipeline; "
            "config = yaml.safe_load(open(sys.argv[1])); "
            "pipeline.simulate_chunk(config, int(sys.argv[2]), sys.argv[3], sys.argv[4]); "
            + PEAK_RSS
        )
        summary, iterations = out / "summary.parquet", out / "iterations.parquet"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(config_path), str(chunk), summary, iterations],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        peak_kib = int(done.stdout.strip().splitlines()[-1])
        return {
            "wall_s": wall,
            "peak_rss_mib": peak_kib / 1024,
            "summary_bytes": summary.stat().st_size,
            "iterations_bytes": iterations.stat().st_size,
        }


def run(
    config_path: Path, sizes: Sequence[int], reference: int, job: bool,
    min_seconds: float = 2.0, rounds: int = 3, paired_cycles: int = 3,
) -> dict[str, Any]:  # fmt: skip
    config = yaml.safe_load(config_path.read_text())
    layout = grid.plan(config)
    chunk_size = layout.chunk_size
    started = time.perf_counter()
    canonicals = _samples(layout, sizes)
    print(
        f"{config_path}: {layout.size:,} scenarios, chunks of {chunk_size:,}; "
        f"samples prepared in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    report: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "sizes": {},
    }
    print(report["machine"], report["date"], flush=True)
    print(
        f"{'scenarios':>10} {'engine/core':>12} {'spread':>8} {'runs':>5} {'+tables/core':>13} "
        f"{'us/scenario':>12} {'sync rows/scen':>15} {'passes':>7}",
        flush=True,
    )
    engines = _engine_rates(canonicals, chunk_size, rounds, min_seconds)["engine"]
    for n, canonical in canonicals.items():
        engine = engines[n]
        full = _engine_rate(canonical, chunk_size, tables=True, min_seconds=min_seconds / rounds)
        report["sizes"][n] = {"engine": engine, "with_tables": full}
        spread = (engine["fastest"] - engine["slowest"]) / engine["per_core"]
        print(
            f"{len(canonical):>10,} {engine['per_core']:>12,.0f} {spread:>8.0%} "
            f"{engine['runs']:>5} {full['per_core']:>13,.0f} {1e6 / engine['per_core']:>12.1f} "
            f"{engine['rows'] / len(canonical):>15.1f} {engine['passes']:>7}",
            flush=True,
        )
    if len(sizes) > 1:
        largest = report["sizes"][max(sizes)]["engine"]["per_core"]
        ratios = {n: largest / report["sizes"][n]["engine"]["per_core"] for n in sizes}
        report["cost_vs_largest"] = ratios
        # each round's sizes ran minutes apart at most: their ratios show how far the
        # host's drift moves the figure
        per_round = {n: report["sizes"][n]["engine"]["by_round"] for n in sizes}
        by_round = {
            n: [a / b for a, b in zip(per_round[n], per_round[max(sizes)], strict=True)]
            for n in sizes
        }
        report["cost_vs_largest_by_round"] = by_round
        shown = {n: ", ".join(f"x{x:.2f}" for x in by_round[n]) for n in sizes if n != max(sizes)}
        print(
            "cost per scenario against the largest size: "
            + ", ".join(
                f"{n:,} x{r:.2f}" + (f" (by round: {shown[n]})" if n in shown else "")
                for n, r in ratios.items()
            ),
            flush=True,
        )
        if paired_cycles:
            paired = _paired(
                canonicals[min(sizes)], canonicals[max(sizes)], chunk_size, paired_cycles
            )
            report["cost_vs_largest_paired"] = paired
            print(
                f"paired (each chunk of {max(sizes):,} right after a run of {min(sizes):,}): "
                f"{min(sizes):,} x{np.median(paired):.2f} (by cycle: "
                + ", ".join(f"x{x:.2f}" for x in paired)
                + ")",
                flush=True,
            )
        fixed = _fixed_part(canonicals[min(sizes)], rounds, min_seconds)
        report["fixed_part"] = fixed
        print(
            f"fixed cost per chunk {fixed['fixed_ms']:.1f} ms, then "
            f"{fixed['per_scenario_us']:.2f} us a scenario (the {fixed['scenarios']:,} "
            "scenarios as one chunk against five copies of them as one chunk)",
            flush=True,
        )
        few = _slowest_few(canonicals[min(sizes)], rounds, min_seconds)
        report["fixed_part"]["slowest_few"] = few
        print(
            f"the fixed cost alone: the {few['scenarios']} of them that sync most, as one "
            f"chunk, {few['ms']:.1f} ms ({few['passes']} passes, "
            f"{few['ms'] / few['passes'] * 1e3:.0f} us a pass)",
            flush=True,
        )
    if reference and sizes:
        sample = _subset(canonicals[min(sizes)], reference)
        ref_rate = _reference_rate(sample)
        same = _engine_rate(sample, chunk_size, tables=False)["per_core"]
        report["reference"] = {"scenarios": len(sample), "per_core": ref_rate, "engine": same}
        print(
            f"reference: {ref_rate:,.0f} scenarios/s on the same {len(sample):,} scenarios; "
            f"engine {same:,.0f}/s: speed-up {same / ref_rate:,.0f}x",
            flush=True,
        )
    if job:
        measured = _one_job(config_path, 0)
        start, stop = layout.chunk_range(0)
        n = stop - start
        measured["scenarios"] = n
        report["job"] = measured
        per = (measured["summary_bytes"] + measured["iterations_bytes"]) / n
        print(
            f"one simulate job ({n:,} scenarios): {measured['wall_s']:.1f} s, peak RSS "
            f"{measured['peak_rss_mib']:.0f} MiB; Parquet {per:.0f} bytes/scenario "
            f"(summary {measured['summary_bytes'] / n:.0f}, iterations "
            f"{measured['iterations_bytes'] / n:.0f})",
            flush=True,
        )
    return report


def compare(
    config_path: Path, sizes: Sequence[int], rev: str, min_seconds: float, rounds: int
) -> dict[str, Any]:
    """A/B in one run: today's engine against the engine of revision `rev`, interleaved."""
    before = _engine_at(rev)  # a bad revision fails here, before any work
    layout = grid.plan(yaml.safe_load(config_path.read_text()))
    rates = _engine_rates(
        _samples(layout, sizes), layout.chunk_size, rounds, min_seconds,
        {rev: before, "today": run_chunk},
    )  # fmt: skip
    print(f"us per scenario, median of interleaved runs ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'scenarios':>10} {rev:>12} {'today':>12} {'change':>8}")
    for n in sizes:
        before, after = (1e6 / rates[name][n]["per_core"] for name in (rev, "today"))
        print(f"{n:>10,} {before:>12.2f} {after:>12.2f} {after / before - 1:>+8.1%}", flush=True)
    return rates


def _at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind`, refused below `minimum` before any work starts."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected at least {minimum}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.bench", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("config/perf.yaml"))
    parser.add_argument(
        "--sizes", type=_at_least(1), nargs="+", default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument(
        "--reference",
        type=_at_least(0),
        default=10_000,
        help="scenarios of the smallest size to run through the scalar reference (0: skip)",
    )
    parser.add_argument(
        "--min-seconds",
        type=_at_least(0.0, float),
        default=2.0,
        help="CPU seconds of runs per size, over all rounds (at least one run per round)",
    )
    parser.add_argument(
        "--rounds",
        type=_at_least(1),
        default=3,
        help="interleaved rounds over the sizes (default 3)",
    )
    parser.add_argument(
        "--paired-cycles",
        type=_at_least(0),
        default=3,
        help="cycles of the paired comparison of the smallest and largest sizes (0: skip)",
    )
    parser.add_argument("--no-job", action="store_true", help="skip the simulate-job probe")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="A/B instead: the engine of git revision REV against today's, interleaved",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.against:
        compare(args.config, args.sizes, args.against, args.min_seconds, args.rounds)
        return 0
    report = run(
        args.config, args.sizes, args.reference, not args.no_job, args.min_seconds, args.rounds,
        args.paired_cycles,
    )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

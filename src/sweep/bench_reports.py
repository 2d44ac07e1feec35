"""``python -m sweep.bench_reports RESULTS``: the report jobs' memory as the sweep grows.

A benchmark, not a test: it prints figures and asserts nothing.  It takes a collected sweep
(``RESULTS/summary.parquet`` and ``RESULTS/iterations``, e.g. from ``snakemake --cores 2
--configfile config/perf.yaml``) and builds sweeps ``--copies`` times as large: copy k has
its RAM size multiplied by k + 1 (one more swept axis, as a larger grid would have) and its
own scenario ids, summary and iterations alike, written a chunk per row group as collect
does.  Then each report job (convergence, downtime, planner) runs on each size in a fresh
process, which reports its wall time and peak RSS.  Memory that stays level from one size to
the next is what "bounded whatever the grid size" means (docs/performance.md, "Memory").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .bench import PEAK_RSS

__all__ = ["main"]

#: Scenario ids of copy k are the original ones plus k times this.
ID_STRIDE = 1 << 48

JOB = """
import sys, time
from pathlib import Path
from sweep import report
src, out, job = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
out.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()
if job == "convergence":
    report.convergence(src / "summary.parquet", src / "iterations", phase_map=out / "a.png",
                       syncs=out / "b.png", remaining=out / "c.png")
elif job == "downtime":
    report.downtime(src / "summary.parquet", vs_limit=out / "a.png", expected=out / "b.png",
                    violations=out / "c.png")
else:
    report.planner(src / "summary.parquet",
                   downtime_table=(out / "d.parquet", out / "d.csv", out / "d.html"),
                   bandwidth_table=(out / "b.parquet", out / "b.csv", out / "b.html"),
                   downtime_figure=out / "d.png", bandwidth_figure=out / "b.png")
print(time.perf_counter() - start)
"""
JOBS = ("convergence", "downtime", "planner")


def _copy(table: pa.Table, k: int) -> pa.Table:
    """Copy k of a summary or iterations piece: its own ids (and RAM size, if it has one)."""
    if k == 0:
        return table
    ids = table.schema.get_field_index("scenario_id")
    column = table.column(ids)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    table = table.set_column(ids, "scenario_id", pc.add(column, k * ID_STRIDE))
    if "ram_size_bytes" in table.column_names:
        at = table.schema.get_field_index("ram_size_bytes")
        table = table.set_column(at, "ram_size_bytes", pc.multiply(table.column(at), k + 1))
    return table


def build(results: Path, copies: int, out: Path) -> int:
    """`copies` copies of the sweep in `results`, written to `out`; the number of scenarios."""
    out.mkdir(parents=True, exist_ok=True)
    source = pq.ParquetFile(results / "summary.parquet")
    with pq.ParquetWriter(out / "summary.parquet", source.schema_arrow) as writer:
        for k in range(copies):
            for g in range(source.num_row_groups):
                writer.write_table(_copy(source.read_row_group(g), k).cast(source.schema_arrow))
    files = pads.dataset(str(results / "iterations"), format="parquet", partitioning="hive")
    for k in range(copies):
        for n, file in enumerate(sorted(files.files)):
            table = _copy(pq.read_table(file), k)
            target = out / "iterations" / f"chunk={k * 100_000 + n}" / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, target, compression="zstd")
    return source.metadata.num_rows * copies


def _job(sweep: Path, job: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", JOB + PEAK_RSS, str(sweep), tmp, job],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    wall, peak_kib = done.stdout.strip().splitlines()[-2:]
    return {"wall_s": float(wall), "peak_rss_mib": int(peak_kib) / 1024}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.bench_reports", description=__doc__)
    parser.add_argument("results", type=Path, help="a collected sweep (summary + iterations)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--work", type=Path, help="where the larger sweeps go (a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    for need in ("summary.parquet", "iterations"):
        if not (args.results / need).exists():
            parser.error(f"results: {args.results / need} does not exist (run the sweep first)")
    figures = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        print(f"{'scenarios':>11} {'job':>12} {'wall s':>7} {'peak RSS MiB':>13}", flush=True)
        for copies in args.copies:
            sweep = Path(tmp) / f"x{copies}"
            started = time.perf_counter()
            n = build(args.results, copies, sweep)
            print(f"{n:>11,} {'(built)':>12} {time.perf_counter() - started:>7.1f}", flush=True)
            for job in JOBS:
                got = _job(sweep, job)
                figures.append({"scenarios": n, "job": job, **got})
                print(f"{n:>11,} {job:>12} {got['wall_s']:>7.1f} {got['peak_rss_mib']:>13,.0f}",
                      flush=True)  # fmt: skip
            shutil.rmtree(sweep)  # the next size's copies need the disk
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

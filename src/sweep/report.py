"""Read the collected sweep outputs, write the report's figures and tables.

The Snakemake rules in ``workflow/rules/report.smk`` call these through thin scripts in
``workflow/scripts/``; they can as well be called from Python::

    from sweep import report
    report.convergence("results/summary.parquet", "results/iterations",
                       phase_map="phase.png", syncs="syncs.png", remaining="remaining.png")

Inputs: ``summary.parquet`` (one row per scenario: parameters and outcome) and the
hive-partitioned ``iterations/`` Parquet dataset (one row per dirty sync).  Only the columns a
figure needs are read, a piece at a time (:mod:`sweep.view`), and only the iterations of the
few scenarios drawn: a million-scenario sweep renders in seconds, and a job's memory does not
grow with the sweep.

Every output is byte-identical for identical inputs: see :func:`sweep.plots.save_figure`.
The file type follows the suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from . import planner as plan
from . import plots
from .params import ParameterError
from .plots import FIG_ONECOL, FIG_REPORT, FIG_TWOCOL, FigStyle
from .units import UnitError, parse_duration
from .view import Summary

__all__ = [
    "PAPER_FIGURES",
    "SETTINGS",
    "Settings",
    "convergence",
    "downtime",
    "open_summary",
    "paper",
    "paper_targets",
    "planner",
    "read_iterations",
    "settings",
    "summary_columns",
]

log = logging.getLogger(__name__)
# matplotlib's PDF backend subsets fonts with fontTools, which logs every glyph at INFO
logging.getLogger("fontTools").setLevel(logging.WARNING)

#: The config's ``report:`` section: each key and what it takes.
SETTINGS = {
    "planner_time_cap": 'a duration above 0 ("2min", "300s"; a bare number is seconds)',
    "paper_dir": "a directory for the paper figures (a non-empty path)",
}


@dataclass(frozen=True)
class Settings:
    """The ``report:`` section, checked: the planner's time cap (None: each scenario's own
    max_time) and where the paper figures go."""

    planner_time_cap_s: float | None = None
    paper_dir: str = "results/paper"


def settings(section: object) -> Settings:
    """Check the config's ``report:`` section before any job runs (the grid ignores it), so a
    typo in a key or a value fails with the key, the value and what is allowed."""
    if section is None:
        return Settings()
    if not isinstance(section, Mapping):
        raise ParameterError("report", section, "a mapping of " + ", ".join(SETTINGS))
    for key in section:
        if key not in SETTINGS:
            raise ParameterError("report", key, "one of " + ", ".join(SETTINGS), where="key")
    cap = section.get("planner_time_cap")
    cap_s = None
    if cap is not None:
        where = "report.planner_time_cap"
        try:
            cap_s = parse_duration(cap, "s") if not isinstance(cap, bool) else None
        except UnitError:
            cap_s = None
        if cap_s is None or not 0 < cap_s < float("inf"):
            raise ParameterError("planner_time_cap", cap, SETTINGS["planner_time_cap"], where)
    paper_dir = section.get("paper_dir", Settings.paper_dir)
    if not isinstance(paper_dir, str) or not paper_dir.strip():
        raise ParameterError("paper_dir", paper_dir, SETTINGS["paper_dir"], "report.paper_dir")
    return Settings(cap_s, paper_dir)


OUTCOME_COLUMNS = (
    "scenario_id",
    "status",
    "converged",
    "total_time_ms",
    "downtime_ms",
    "downtime_exceeded",
    "dirty_sync_count",
    "transferred_bytes",
    "expected_downtime_ms",
    "threshold_bytes",
)


#: Parameter columns the figures use directly (kept even when constant).
USED_PARAMETERS = (
    "ram_size_bytes",
    "page_size_bytes",
    "link_bandwidth_bytes_per_s",
    "max_bandwidth_bytes_per_s",
    "downtime_limit_ms",
    "dirty_rate_pages_per_s",
    "auto_converge",
    "dirty_limit",
    "max_time_s",
)


def constant_columns(path: str | Path, names: Sequence[str]) -> list[str]:
    """Columns whose Parquet statistics show a single value in every row group."""
    meta = pq.ParquetFile(path).metadata
    index = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    out = []
    for name in names:
        j = index.get(name)
        if j is None or meta.num_row_groups == 0:
            continue
        values = set()
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(j).statistics
            if stats is None or not stats.has_min_max or stats.min != stats.max:
                break
            values.add(stats.min)
        else:
            if len(values) == 1:
                out.append(name)
    return out


#: The outcome columns each report reads (each pass reads them all).
CONVERGENCE_OUTCOMES = ("scenario_id", "status", "converged", "total_time_ms",
                        "dirty_sync_count", "transferred_bytes", "threshold_bytes")  # fmt: skip
DOWNTIME_OUTCOMES = ("converged", "downtime_ms", "downtime_exceeded", "expected_downtime_ms")
PLANNER_OUTCOMES = ("converged", *plan.AT_MIN)


def summary_columns(path: str | Path, outcomes: Sequence[str] = OUTCOME_COLUMNS) -> list[str]:
    """The summary's swept parameter columns, the ones the figures use, and `outcomes`.

    Parameters that are constant over the whole sweep (by the Parquet statistics) are left
    out, except :data:`USED_PARAMETERS`.
    """
    names = pq.read_schema(path).names
    params = [c for c in plots.PARAM_COLUMNS if c in names]
    skip = set(constant_columns(path, params)) - set(USED_PARAMETERS)
    wanted = [c for c in (*params, *outcomes) if c in names and c not in skip]
    return list(dict.fromkeys(wanted))


def open_summary(path: str | Path, outcomes: Sequence[str] = OUTCOME_COLUMNS) -> Summary:
    """The summary as the figures read it: :func:`summary_columns`, a piece at a time, so
    a report's memory does not grow with the grid (:mod:`sweep.view`)."""
    return Summary.parquet(path, summary_columns(path, outcomes))


def read_iterations(path: str | Path, scenario_ids: Sequence[int]) -> pd.DataFrame:
    """The per-sync rows of a few scenarios from the (hive-partitioned) iterations dataset.

    Every file is read a piece at a time on one thread and only the matching rows are kept:
    a dataset scan with a filter held several hundred MB on a million-scenario sweep.
    """
    columns = ["scenario_id", "dirty_sync_count", "time_ms", "remaining_bytes",
               "threshold_bytes"]  # fmt: skip
    ids = [int(i) for i in scenario_ids]
    found = []
    if ids:
        for file in pads.dataset(str(path), format="parquet", partitioning="hive").files:
            with pq.ParquetFile(file, pre_buffer=False) as f:
                for batch in f.iter_batches(columns=columns, use_threads=False):
                    sid = batch.column(0)
                    if pa.types.is_dictionary(sid.type):
                        sid = sid.cast(sid.type.value_type)
                    match = pc.is_in(sid, value_set=pa.array(ids, type=sid.type))
                    if pc.any(match).as_py():
                        rows = batch.filter(match).to_pandas()
                        rows["scenario_id"] = sid.filter(match).to_numpy()
                        found.append(rows)
    if not found:
        return pd.DataFrame(columns=columns)
    df = pd.concat(found, ignore_index=True)
    df["scenario_id"] = df["scenario_id"].astype("int64")
    return df.sort_values(["scenario_id", "dirty_sync_count"]).reset_index(drop=True)


def _timed(name: str, fn: callable, path: str | Path) -> None:
    start = time.perf_counter()
    fig = fn()
    plots.save_figure(fig, path)
    log.info("%s -> %s (%.2f s)", name, path, time.perf_counter() - start)


def convergence(
    summary: str | Path,
    iterations: str | Path,
    *,
    phase_map: str | Path,
    syncs: str | Path,
    remaining: str | Path,
    style: FigStyle = FIG_REPORT,
) -> None:
    """Phase map, syncs/bytes vs dirty ratio, remaining-bytes curves."""
    src = open_summary(summary, CONVERGENCE_OUTCOMES)
    with plots.styled(style):
        _timed("phase map", lambda: plots.phase_map(src, style), phase_map)
        _timed("syncs vs ratio", lambda: plots.syncs_vs_ratio(src, style), syncs)
        chosen = plots.representative_scenarios(src)
        its = read_iterations(iterations, chosen["scenario_id"].tolist())
        _timed("remaining curves", lambda: plots.remaining_curves(its, chosen, style), remaining)


def downtime(
    summary: str | Path,
    *,
    vs_limit: str | Path,
    expected: str | Path,
    violations: str | Path,
    style: FigStyle = FIG_REPORT,
) -> None:
    """Downtime vs limit, expected vs actual downtime, share violating the limit."""
    src = open_summary(summary, DOWNTIME_OUTCOMES)
    with plots.styled(style):
        _timed("downtime vs limit", lambda: plots.downtime_vs_limit(src, style), vs_limit)
        _timed("expected vs actual", lambda: plots.expected_vs_actual(src, style), expected)
        _timed("violation share", lambda: plots.violation_share(src, style), violations)


def _plan(
    src: Summary,
    kind: str,
    time_cap_s: float | None = None,
    table: Sequence[str | Path] = (),
    title: str = "",
) -> plots.PlanCells:
    """One planner table part by part, written to `table` (Parquet, CSV[, HTML]) if given,
    reduced to its heatmap's cells."""
    axes = src.axes()
    keys, parts = plan.plan_parts(src, kind, time_cap_s)
    pages = axes.levels["page_size_bytes"] if "page_size_bytes" in keys else None
    cells = plots.PlanCells(kind, keys, axes.nunique, pages)
    if table:
        with plan.TableFiles(*table[:3], title=title, time_cap_s=time_cap_s) as files:
            for part in parts:
                files.write(part)
                cells.add(part)
        log.info("planner table %s: %d rows -> %s", kind, files.rows, table[0])
    else:
        for part in parts:
            cells.add(part)
    return cells


def planner(
    summary: str | Path,
    *,
    downtime_table: Sequence[str | Path],
    bandwidth_table: Sequence[str | Path],
    downtime_figure: str | Path,
    bandwidth_figure: str | Path,
    time_cap_s: float | None = None,
    style: FigStyle = FIG_REPORT,
) -> None:
    """The two planner tables (each as (Parquet, CSV[, HTML])) and their heatmaps."""
    src = open_summary(summary, PLANNER_OUTCOMES)
    levels = plan.swept_levels(src)
    dl = _plan(src, "downtime", time_cap_s, downtime_table,
               "Smallest downtime limit that converges")  # fmt: skip
    bw = _plan(src, "bandwidth", time_cap_s, bandwidth_table,
               "Smallest pre-copy bandwidth that converges")  # fmt: skip
    with plots.styled(style):
        _timed("planner: downtime limit",
               lambda: plots.planner_downtime_heatmap(dl, levels[plots.DL], style),
               downtime_figure)  # fmt: skip
        _timed("planner: bandwidth",
               lambda: plots.planner_bandwidth_heatmap(bw, levels[plots.BW], style),
               bandwidth_figure)  # fmt: skip


#: Paper figures: name -> (figure function key, style).  Each is written as PDF and SVG.
PAPER_FIGURES: dict[str, tuple[str, FigStyle]] = {
    "phase_map": ("phase_map", FIG_TWOCOL),
    "planner_downtime_limit": ("planner_downtime", FIG_TWOCOL),
    "syncs_vs_ratio": ("syncs_vs_ratio", FIG_ONECOL),
    "remaining_bytes": ("remaining", FIG_ONECOL),
    "downtime_vs_limit": ("downtime_vs_limit", FIG_ONECOL),
    "expected_vs_actual_downtime": ("expected_vs_actual", FIG_ONECOL),
}
PAPER_FORMATS = ("pdf", "svg")


def paper_targets(outdir: str | Path) -> list[str]:
    """Every file :func:`paper` writes under `outdir`."""
    return [f"{Path(outdir).as_posix()}/{name}.{fmt}" for name in PAPER_FIGURES
            for fmt in PAPER_FORMATS]  # fmt: skip


def paper(summary: str | Path, iterations: str | Path, outdir: str | Path) -> list[Path]:
    """The paper figures as PDF and SVG (3.5 in one-column, 7.16 in two-column widths)."""
    src = open_summary(summary)
    chosen = plots.representative_scenarios(src)
    its = read_iterations(iterations, chosen["scenario_id"].tolist())
    dl_plan = _plan(src, "downtime")
    levels = plan.swept_levels(src)
    draw = {
        "phase_map": lambda st: plots.phase_map(src, st),
        "planner_downtime": lambda st: plots.planner_downtime_heatmap(
            dl_plan, levels[plots.DL], st
        ),
        "syncs_vs_ratio": lambda st: plots.syncs_vs_ratio(src, st),
        "remaining": lambda st: plots.remaining_curves(its, chosen, st),
        "downtime_vs_limit": lambda st: plots.downtime_vs_limit(src, st),
        "expected_vs_actual": lambda st: plots.expected_vs_actual(src, st),
    }
    written = []
    for name, (kind, style) in PAPER_FIGURES.items():
        paths = [Path(outdir) / f"{name}.{fmt}" for fmt in PAPER_FORMATS]
        with plots.styled(style):
            plots.save_figure(draw[kind](style), *paths)
        written += paths
    return written

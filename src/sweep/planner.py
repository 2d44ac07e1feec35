"""The planner: "what settings do I need for this guest?", read off a sweep.

Two tables, one row per grid cell:

* :func:`downtime_plan` -- for each (pre-copy bandwidth, dirty rate) the smallest swept
  downtime limit that converges within the time cap;
* :func:`bandwidth_plan` -- for each (downtime limit, dirty rate) the smallest swept pre-copy
  bandwidth that converges within the time cap.

Definitions (tested in ``tests/test_planner.py``):

* A scenario *works* when QEMU switched over on its own (``converged``: not cancelled at
  ``max_time`` or ``max_iterations``) and, if ``time_cap_s`` is given, its total time is at most
  that cap.  Without ``time_cap_s`` the cap is each scenario's own ``max_time``.
* The pre-copy bandwidth is ``min(link_bandwidth, max_bandwidth)`` (``max_bandwidth`` 0 =
  unlimited); see :func:`sweep.plots.derive`.
* Cells are grouped by every other swept axis too (auto_converge, ram_size, qemu_version, ...),
  which stay as columns; ``ram_size_bytes`` is always kept.  Scenarios that share a cell and a
  candidate value (for instance two ``max_bandwidth`` settings that both exceed the link) must
  all work for the value to count.
* ``min_<x>`` is the smallest swept value from which on *every larger swept value works too*,
  what an operator who ramps the setting up needs; NaN when even the largest swept value
  fails.  ``first_<x>`` is the smallest value that works at all (equal unless the outcome is
  not monotone in x, which ``monotone`` flags).
* ``total_time_ms``, ``downtime_ms``, ``downtime_exceeded``, ``transferred_bytes`` and
  ``dirty_sync_count`` describe the migration at ``min_<x>`` (worst case over scenarios
  sharing that value).
* Rows are sorted by the cell columns: numbers ascending, text alphabetically, the
  convergence aid as none, auto-converge, dirty-limit.

A sweep is read in parts of whole cells (:func:`plan_parts`), so a job's memory follows
:data:`PART_ROWS`, not the number of scenarios; :class:`TableFiles` writes the tables part
by part.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import aggregate
from .io import _atomic
from .view import AID, BW, DL, DR, Axes, Cells, Summary, derive, other_axes

__all__ = [
    "TableFiles",
    "bandwidth_plan",
    "downtime_plan",
    "plan_parts",
    "smallest_working",
    "swept_levels",
    "write_table",
]

#: Summary rows per part of the planner's scan (its group-by holds some 300 bytes a row).
PART_ROWS = 250_000
#: Most cells the parts are cut by (counting them holds 8 bytes each).
MAX_CELLS = 1 << 22

AT_MIN = ("total_time_ms", "downtime_ms", "downtime_exceeded", "transferred_bytes",
          "dirty_sync_count")  # fmt: skip


def plan_keys(axes: Axes, target: str, cell: list[str]) -> list[str]:
    """A planner table's cell columns: ram_size, the other swept axes, then `cell`."""
    keys = [c for c in other_axes(axes) if c not in cell and c != target]
    if "ram_size_bytes" in axes and "ram_size_bytes" not in keys:
        keys.insert(0, "ram_size_bytes")
    return keys + list(cell)


def smallest_working(
    summary: pd.DataFrame,
    target: str,
    cell: list[str],
    time_cap_s: float | None = None,
    keys: list[str] | None = None,
) -> pd.DataFrame:
    """For every cell (other swept axes + `cell`), the smallest value of `target` that works.

    Returns one row per cell with the group columns, then ``min_<stem>``, ``first_<stem>``,
    ``monotone``, ``swept_max_<stem>``, ``n_swept`` and the outcome columns at the minimum,
    where ``<stem>`` is `target` (``downtime_limit_ms`` -> ``min_downtime_limit_ms``).
    `keys`: the cell columns (:func:`plan_keys`) when `summary` is a part of a larger one.
    """
    df = derive(summary)
    keys = plan_keys(Axes.of(df), target, cell) if keys is None else keys
    works = df["converged"].to_numpy(dtype=bool, copy=True)
    if time_cap_s is not None:
        works &= df["total_time_ms"].to_numpy(dtype=float) <= time_cap_s * 1000.0
    exceeded = df["downtime_exceeded"].astype("Float64").fillna(0.0).astype(float)
    per = (
        df.assign(_works=works, _exceeded=exceeded)
        .groupby([*keys, target], observed=True, sort=True)
        .agg(
            works=("_works", "all"),
            total_time_ms=("total_time_ms", "max"),
            downtime_ms=("downtime_ms", "max"),
            downtime_exceeded=("_exceeded", "max"),
            transferred_bytes=("transferred_bytes", "max"),
            dirty_sync_count=("dirty_sync_count", "max"),
        )
        .reset_index()
    )
    per["downtime_exceeded"] = per["downtime_exceeded"] > 0
    # from the largest value down, "this and every larger value works"
    per = per.sort_values([*keys, target], ascending=[True] * len(keys) + [False], kind="stable")
    grouped = per.groupby(keys, observed=True, sort=False)
    per["_tail"] = grouped["works"].cummin().astype(bool)
    base = grouped.agg(**{f"swept_max_{target}": (target, "max"), "n_swept": (target, "size")})
    robust = per[per["_tail"]].groupby(keys, observed=True, sort=False).tail(1)
    robust = robust.set_index(keys)[[target, *AT_MIN]].rename(columns={target: f"min_{target}"})
    first = (
        per[per["works"]]
        .groupby(keys, observed=True, sort=False)[target]
        .min()
        .rename(f"first_{target}")
    )
    out = base.join(robust).join(first)
    out["monotone"] = (out[f"min_{target}"] == out[f"first_{target}"]) | out[
        f"first_{target}"
    ].isna()
    out = out.reset_index()
    front = [*keys, f"min_{target}", f"first_{target}", "monotone", f"swept_max_{target}"]
    out = out[[*front, "n_swept", *AT_MIN]]
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    out["downtime_exceeded"] = out["downtime_exceeded"].astype("boolean")
    out.loc[out[f"min_{target}"].isna(), "downtime_exceeded"] = pd.NA
    out["dirty_sync_count"] = out["dirty_sync_count"].astype("Int32")
    out["transferred_bytes"] = out["transferred_bytes"].astype("Int64")
    out.attrs["time_cap_s"] = time_cap_s
    return out


def _cell_parts(src: Summary, keys: list[str], rows: int) -> Iterator[pd.DataFrame]:
    """The summary in parts of whole cells, about `rows` rows each, in the table's order.

    Cells are numbered in sort order of their leading keys (as many as MAX_CELLS allows),
    so the tables of consecutive parts follow each other.  When there is more than one
    part, one pass spills each part's rows to its own compressed Arrow file in a temporary
    directory, and the parts are read back from there: the summary is read twice, whatever
    the number of parts, and memory holds one part.
    """
    axes = src.axes()
    order = {k: list(axes.levels[k]) if k == AID else sorted(axes.levels[k]) for k in keys}
    lead, size = [], 1
    for k in keys:
        if size * max(len(order[k]), 1) > MAX_CELLS:
            break
        lead.append(k)
        size *= max(len(order[k]), 1)
    cells = Cells(lead, order)
    counts = aggregate.group_counts(
        lambda: ((cells.codes(df), None) for df in src.pieces()), cells.size
    )
    part_of = (np.cumsum(counts) - counts) // rows  # by the rows before each cell
    parts = np.unique(part_of[counts > 0])
    if len(parts) <= 1:
        frames = list(src.pieces())
        if frames:
            yield _in_order(pd.concat(frames, ignore_index=True), keys, axes)
        return
    with tempfile.TemporaryDirectory(prefix="planner-parts-") as tmp:
        files = {p: Path(tmp) / f"part-{p}.arrows" for p in parts}
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        schema = None  # the first piece's: every spilled piece is cast to it
        try:
            for df in src.pieces():
                codes = cells.codes(df)
                part = np.where(codes >= 0, part_of[np.maximum(codes, 0)], -1)
                for p in np.unique(part[part >= 0]):
                    table = _spillable(df[part == p])
                    schema = table.schema if schema is None else schema
                    if p not in writers:
                        writers[p] = pa.ipc.new_stream(files[p], schema, options=_SPILL)
                    writers[p].write_table(table.cast(schema))
        finally:
            for w in writers.values():
                w.close()
        for p in parts:
            with pa.ipc.open_stream(files[p]) as reader:
                df = reader.read_all().to_pandas()
            files[p].unlink()
            yield _in_order(df, keys, axes)


_SPILL = pa.ipc.IpcWriteOptions(compression="zstd")


def _values(column: pd.Series) -> pd.Series:
    """A categorical column as its values (pieces and parts each bring their categories)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.astype(column.cat.categories.dtype)
    return column


def _spillable(df: pd.DataFrame) -> pa.Table:
    """Arrow of the same types for every piece: categories as values, and object columns
    (a summary's only ones are nullable booleans) as booleans even when all null."""
    plain = pd.DataFrame({c: _values(df[c]) for c in df.columns})
    for c in plain.columns:
        if plain[c].dtype == np.dtype(object):
            plain[c] = plain[c].astype("boolean")
    return pa.Table.from_pandas(plain, preserve_index=False).replace_schema_metadata()


def _in_order(part: pd.DataFrame, keys: list[str], axes: Axes) -> pd.DataFrame:
    """Keys sort as the parts follow each other: the aid in its own order, others by value."""
    for k in keys:
        if k == AID:
            part[k] = pd.Categorical(_values(part[k]), categories=axes.levels[AID])
        else:
            part[k] = _values(part[k])
    return part


def _downtime_columns(out: pd.DataFrame) -> pd.DataFrame:
    out.insert(out.columns.get_loc(BW) + 1, "precopy_bandwidth_gbit_per_s", out[BW] * 8 / 1e9)
    return out


def _bandwidth_columns(out: pd.DataFrame) -> pd.DataFrame:
    out = out.rename(
        columns={
            f"min_{BW}": "min_bandwidth_bytes_per_s",
            f"first_{BW}": "first_bandwidth_bytes_per_s",
            f"swept_max_{BW}": "swept_max_bandwidth_bytes_per_s",
        }
    )
    at = out.columns.get_loc("min_bandwidth_bytes_per_s") + 1
    out.insert(at, "min_bandwidth_gbit_per_s", out["min_bandwidth_bytes_per_s"] * 8 / 1e9)
    return out


#: kind -> (swept target, cell columns, finishing of the table's columns)
PLANS: dict[str, tuple[str, list[str], Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "downtime": (DL, [BW, DR], _downtime_columns),
    "bandwidth": (BW, [DL, DR], _bandwidth_columns),
}


def plan_parts(
    summary: pd.DataFrame | Summary,
    kind: str,
    time_cap_s: float | None = None,
    rows: int | None = None,
) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """(the table's cell columns, its rows part by part) for the `kind` plan of :data:`PLANS`.

    Parts hold whole cells, about `rows` (:data:`PART_ROWS`) summary rows each: memory
    follows the part, not the sweep (see :func:`_cell_parts`).
    """
    src = Summary.of(summary)
    target, cell, finish = PLANS[kind]
    keys = plan_keys(src.axes(), target, cell)
    parts = _cell_parts(src, keys, rows or PART_ROWS)
    return keys, (finish(smallest_working(p, target, cell, time_cap_s, keys)) for p in parts)


def _whole(parts: Iterator[pd.DataFrame], time_cap_s: float | None) -> pd.DataFrame:
    out = pd.concat(list(parts), ignore_index=True)
    out.attrs["time_cap_s"] = time_cap_s
    return out


def downtime_plan(summary: pd.DataFrame | Summary, time_cap_s: float | None = None) -> pd.DataFrame:
    """Smallest downtime limit that converges, per (pre-copy bandwidth, dirty rate)."""
    return _whole(plan_parts(summary, "downtime", time_cap_s)[1], time_cap_s)


def bandwidth_plan(
    summary: pd.DataFrame | Summary, time_cap_s: float | None = None
) -> pd.DataFrame:
    """Smallest pre-copy bandwidth that converges, per (downtime limit, dirty rate)."""
    return _whole(plan_parts(summary, "bandwidth", time_cap_s)[1], time_cap_s)


class TableFiles:
    """A planner table written part by part: Parquet, CSV and an HTML page of its first
    :data:`HTML_MAX_ROWS` rows.  Each goes to a temporary file that replaces its target
    only when every part is in, so an error leaves no table half-written."""

    def __init__(
        self,
        parquet: str | Path,
        csv: str | Path,
        html: str | Path | None = None,
        *,
        title: str = "",
        time_cap_s: float | None = None,
    ) -> None:
        self.targets = [Path(p) for p in (parquet, csv, html) if p is not None]
        self.title, self.time_cap_s = title, time_cap_s
        self.rows = 0

    def __enter__(self) -> TableFiles:
        self._tmp = [_atomic(p)[1] for p in self.targets]
        self._parquet: pq.ParquetWriter | None = None
        self._csv = open(self._tmp[1], "w", encoding="utf-8", newline="")
        self._head: list[pd.DataFrame] = []
        return self

    def write(self, part: pd.DataFrame) -> None:
        plain = part.copy(deep=False)
        plain.attrs = {}
        table = pa.Table.from_pandas(plain, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp[0], table.schema)
        self._parquet.write_table(table)
        for c in plain.columns:  # categories as text, so the CSV reads the same everywhere
            if isinstance(plain[c].dtype, pd.CategoricalDtype):
                plain[c] = plain[c].astype(str)
        plain.to_csv(self._csv, header=self.rows == 0, index=False, na_rep="",
                     lineterminator="\n")  # fmt: skip
        if self.rows < HTML_MAX_ROWS:
            self._head.append(part.head(HTML_MAX_ROWS - self.rows))
        self.rows += len(part)

    def __exit__(self, kind: type | None, *_: object) -> None:
        self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        try:
            if kind is None:
                if self._parquet is None:
                    raise ValueError(f"{self.targets[0]}: a planner table needs one part at least")
                if len(self._tmp) > 2:
                    head = pd.concat(self._head, ignore_index=True)
                    head.attrs["time_cap_s"] = self.time_cap_s
                    write_html(head, self._tmp[2], self.title, rows=self.rows)
                for tmp, target in zip(self._tmp, self.targets, strict=True):
                    os.replace(tmp, target)
        finally:
            for tmp in self._tmp:
                tmp.unlink(missing_ok=True)


def write_table(table: pd.DataFrame, parquet: str | Path, csv: str | Path) -> None:
    """Write a planner table as Parquet and CSV (same rows, same column order)."""
    with TableFiles(parquet, csv) as files:
        files.write(table)


def swept_levels(summary: pd.DataFrame | Summary) -> dict[str, list[float]]:
    """The swept downtime limits and pre-copy bandwidths (for the heatmap colour scales)."""
    axes = Summary.of(summary).axes()
    return {DL: sorted(axes.levels.get(DL, [])), BW: sorted(axes.levels.get(BW, []))}


HTML_MAX_ROWS = 5000

_HTML_STYLE = """<style>
body { font-family: "DejaVu Sans", sans-serif; font-size: 13px; margin: 0.5em; color: #222; }
p { max-width: 60em; }
table { border-collapse: collapse; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { position: sticky; top: 0; background: #f3f3f3; }
td.never { color: #b04000; }
</style>"""


def _readable(table: pd.DataFrame) -> pd.DataFrame:
    """The planner table with values in the units people read (Gbit/s, MB/s, s, GiB)."""
    from .plots import AID, axis_name, fmt_count, fmt_value

    out = pd.DataFrame(index=table.index)
    page = 4096.0
    for c in table.columns:
        if c in ("precopy_bandwidth_gbit_per_s", "min_bandwidth_gbit_per_s", "n_swept"):
            continue
        v = table[c]
        if c == DR:
            out["dirty rate (pages/s)"] = v.map(fmt_count)
            out["dirty rate (MB/s, 4 KiB pages)"] = (v * page / 1e6).map(lambda x: f"{x:.4g}")
        elif c == BW:
            out["pre-copy bandwidth (Gbit/s)"] = (v * 8 / 1e9).map(lambda x: f"{x:.4g}")
        elif c == DL:
            out["downtime limit (ms)"] = v.map(lambda x: f"{x:g}")
        elif c.startswith(("min_", "first_", "swept_max_")):
            head = {"min": "needed", "first": "first converging"}.get(
                c.split("_", 1)[0], "largest swept"
            )
            if c.endswith("downtime_limit_ms"):
                out[f"{head} limit (ms)"] = v.map(lambda x: "none" if pd.isna(x) else f"{x:g}")
            else:
                out[f"{head} bandwidth (Gbit/s)"] = v.map(
                    lambda x: "none" if pd.isna(x) else f"{x * 8 / 1e9:.4g}"
                )
        elif c == "monotone":
            out[c] = v.map({True: "yes", False: "no"})
        elif c == "total_time_ms":
            out["total time (s)"] = v.map(lambda x: "" if pd.isna(x) else f"{x / 1000:.1f}")
        elif c == "downtime_ms":
            out["downtime (ms)"] = v.map(lambda x: "" if pd.isna(x) else f"{x:.1f}")
        elif c == "downtime_exceeded":
            out["downtime > limit"] = v.map(lambda x: "" if pd.isna(x) else ("yes" if x else "no"))
        elif c == "transferred_bytes":
            out["data sent (GiB)"] = v.map(lambda x: "" if pd.isna(x) else f"{x / 2**30:.2f}")
        elif c == "dirty_sync_count":
            out["dirty syncs"] = v.map(lambda x: "" if pd.isna(x) else f"{int(x)}")
        elif c == AID:
            out["convergence aid"] = v.astype(str)
        else:
            out[axis_name(c)] = v.map(lambda x, c=c: fmt_value(c, x))
    return out


def write_html(table: pd.DataFrame, path: str | Path, title: str, rows: int | None = None) -> None:
    """A readable HTML rendering of a planner table, for the Snakemake report.

    `rows`: the whole table's rows when `table` is only its head.
    """
    shown = table.head(HTML_MAX_ROWS)
    rows = len(table) if rows is None else rows
    note = (
        f"<p>First {HTML_MAX_ROWS} of {rows} rows; the CSV and Parquet files beside this "
        "page hold them all.</p>"
        if rows > HTML_MAX_ROWS
        else ""
    )
    cap = table.attrs.get("time_cap_s")
    cap_text = f"at most {cap:g} s" if cap else "each scenario's max_time"
    body = _readable(shown).to_html(index=False, border=0, na_rep="")
    html = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"{_HTML_STYLE}</head><body>\n<p><b>{title}</b>. 'none': no swept value converges "
        f"within the time cap ({cap_text}). Outcome columns describe the migration at the "
        f"smallest value.</p>{note}\n{body}\n</body></html>\n"
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(html, encoding="utf-8")

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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .plots import BW, DL, DR, derive, other_axes

__all__ = ["bandwidth_plan", "downtime_plan", "smallest_working", "write_table"]

AT_MIN = ("total_time_ms", "downtime_ms", "downtime_exceeded", "transferred_bytes",
          "dirty_sync_count")  # fmt: skip


def smallest_working(
    summary: pd.DataFrame, target: str, cell: list[str], time_cap_s: float | None = None
) -> pd.DataFrame:
    """For every cell (other swept axes + `cell`), the smallest value of `target` that works.

    Returns one row per cell with the group columns, then ``min_<stem>``, ``first_<stem>``,
    ``monotone``, ``swept_max_<stem>``, ``n_swept`` and the outcome columns at the minimum,
    where ``<stem>`` is `target` (``downtime_limit_ms`` -> ``min_downtime_limit_ms``).
    """
    df = derive(summary)
    keys = [c for c in other_axes(df) if c not in cell and c != target]
    if "ram_size_bytes" in df and "ram_size_bytes" not in keys:
        keys.insert(0, "ram_size_bytes")
    keys += cell
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


def downtime_plan(summary: pd.DataFrame, time_cap_s: float | None = None) -> pd.DataFrame:
    """Smallest downtime limit that converges, per (pre-copy bandwidth, dirty rate)."""
    out = smallest_working(summary, DL, [BW, DR], time_cap_s)
    out.insert(out.columns.get_loc(BW) + 1, "precopy_bandwidth_gbit_per_s", out[BW] * 8 / 1e9)
    return out


def bandwidth_plan(summary: pd.DataFrame, time_cap_s: float | None = None) -> pd.DataFrame:
    """Smallest pre-copy bandwidth that converges, per (downtime limit, dirty rate)."""
    out = smallest_working(summary, BW, [DL, DR], time_cap_s)
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


def write_table(table: pd.DataFrame, parquet: str | Path, csv: str | Path) -> None:
    """Write a planner table as Parquet and CSV (same rows, same column order)."""
    for path in (parquet, csv):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    plain = table.copy()
    plain.attrs = {}
    plain.to_parquet(parquet, index=False)
    for c in plain.columns:  # categories as text, so the CSV reads the same everywhere
        if isinstance(plain[c].dtype, pd.CategoricalDtype):
            plain[c] = plain[c].astype(str)
    plain.to_csv(csv, index=False, na_rep="", lineterminator="\n")


def swept_levels(summary: pd.DataFrame) -> dict[str, list[float]]:
    """The swept downtime limits and pre-copy bandwidths (for the heatmap colour scales)."""
    df = derive(summary)
    return {DL: sorted(np.unique(df[DL]).tolist()), BW: sorted(np.unique(df[BW]).tolist())}


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


def write_html(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """A readable HTML rendering of a planner table, for the Snakemake report."""
    shown = table.head(HTML_MAX_ROWS)
    note = (
        f"<p>First {HTML_MAX_ROWS} of {len(table)} rows; the CSV and Parquet files beside this "
        "page hold them all.</p>"
        if len(table) > HTML_MAX_ROWS
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

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
    works = df["converged"].to_numpy(dtype=bool)
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

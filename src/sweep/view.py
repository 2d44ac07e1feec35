"""The summary as the figures and the planner see it: derived columns, swept axes, pieces.

A report job must not hold the whole summary: a grid of ten million scenarios would not fit
its 1 GiB.  So the figures read it as a :class:`Summary`, a re-readable stream of derived
pieces (a Parquet file is read some 65,000 rows at a time; a DataFrame is one piece), and
learn the swept axes from an :class:`Axes` scan, whose size follows the number of distinct
values, not of rows.  Group statistics over the pieces are exact (:mod:`sweep.aggregate`),
with groups numbered by :class:`Cells`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .params import PARAMETERS, by_name_or_none

__all__ = [
    "AID",
    "BW",
    "DL",
    "DR",
    "PARAM_COLUMNS",
    "RATIO",
    "Axes",
    "Cells",
    "Rows",
    "Summary",
    "derive",
    "in_order",
    "levels",
    "other_axes",
    "row_axis",
    "varying_axes",
]

BW = "precopy_bandwidth_bytes_per_s"  # what pre-copy can use: min(link, max_bandwidth)
DR = "dirty_rate_pages_per_s"
DL = "downtime_limit_ms"
RATIO = "dirty_ratio"  # dirty rate x page size / pre-copy bandwidth (lambda of the literature)
AID = "convergence_aid"  # none | auto-converge | dirty-limit (QEMU refuses both at once)
AID_COLUMNS = ("auto_converge", "dirty_limit")
AID_NAMES = ["none", "auto-converge", "dirty-limit"]
PARAM_COLUMNS = tuple(p.column for p in PARAMETERS)
LINK = "link_bandwidth_bytes_per_s"
#: Row-facet candidates, most telling first (auto-converge changes convergence the most).
ROW_PRIORITY = (
    AID,
    "auto_converge",
    "dirty_limit",
    "write_pattern",
    "qemu_version",
    "ram_size_bytes",
    "working_set_size_bytes",
    "max_time_s",
    "max_iterations",
    LINK,
)
MAX_ROW_VALUES = 4
#: Rows per piece when a Parquet summary is read (a few MB of columns at a time).
PIECE_ROWS = 65_536


def derive(summary: pd.DataFrame, aid_categories: Sequence[str] | None = None) -> pd.DataFrame:
    """Add the pre-copy bandwidth and the dirty ratio; drop repeated column names.

    A frame that went through derive already is returned as it is (no copy).  The
    convergence aid keeps the categories present in this frame, or `aid_categories` when
    given (pieces of one summary must agree on them).
    """
    if BW in summary.columns and RATIO in summary.columns:
        return summary
    # no .copy(): pandas' copy-on-write keeps the caller's frame as it was
    df = summary.loc[:, ~summary.columns.duplicated(keep="last")]
    link = df[LINK].to_numpy(dtype=float)
    if "max_bandwidth_bytes_per_s" in df:
        cap = df["max_bandwidth_bytes_per_s"].to_numpy(dtype=float)
        bw = np.where(cap > 0, np.minimum(link, cap), link)
    else:
        bw = link
    df[BW] = bw
    page = df["page_size_bytes"].to_numpy(dtype=float) if "page_size_bytes" in df else 4096.0
    df[RATIO] = df[DR].to_numpy(dtype=float) * page / bw
    if all(c in df for c in AID_COLUMNS):
        ac = df["auto_converge"].to_numpy(dtype=bool)
        dlim = df["dirty_limit"].to_numpy(dtype=bool)
        codes = np.where(ac, 1, np.where(dlim, 2, 0))
        df[AID] = pd.Categorical.from_codes(codes, AID_NAMES)
        if aid_categories is None:
            df[AID] = df[AID].cat.remove_unused_categories()
        else:
            df[AID] = df[AID].cat.set_categories(list(aid_categories))
    return df


def _sort_key(v: object) -> tuple:
    if isinstance(v, str):
        try:
            return (0, tuple(int(p) for p in v.split(".")), v)
        except ValueError:
            return (1, (), v)
    return (0, (float(v),), "")


def levels(series: pd.Series) -> list:
    """A column's distinct values in reading order (see :func:`in_order`)."""
    return in_order(str(series.name), set(series.dropna().unique().tolist()))


def in_order(column: str, values: set) -> list:
    """Values of a column in reading order: numbers ascending, versions by number, the
    convergence aid as AID_NAMES lists it."""
    if column == AID:
        return [c for c in AID_NAMES if c in values]
    return sorted(values, key=_sort_key)


@dataclass(frozen=True)
class Axes:
    """What the figures need to know of the swept axes, scanned piece by piece.

    ``levels``: every scanned column's distinct values in reading order (see :func:`levels`);
    ``shares``: for sizes given as a share of RAM, the number of distinct shares;
    ``bw_is_link``: the pre-copy bandwidth equals the link's everywhere (numpy.allclose);
    ``with_nan``: columns holding NaN (they count it as one more value).
    """

    levels: dict[str, list]
    shares: dict[str, int] = field(default_factory=dict)
    bw_is_link: bool = True
    with_nan: frozenset = frozenset()
    rows: int = 0

    @classmethod
    def scan(cls, pieces: Iterator[pd.DataFrame] | Sequence[pd.DataFrame]) -> Axes:
        seen: dict[str, set] = {}
        shares: dict[str, set] = {}
        with_nan: set = set()
        bw_is_link, rows = True, 0
        for df in pieces:
            rows += len(df)
            for c in df.columns:
                if c not in _SCANNED:
                    continue
                col = df[c]
                values = col.dropna().unique()
                seen.setdefault(c, set()).update(values.tolist())
                if len(values) < len(col) and col.isna().any():
                    with_nan.add(c)
                param = by_name_or_none(c)
                if param is not None and param.relative_to_ram and "ram_size_bytes" in df:
                    share = col.to_numpy(dtype=float) / df["ram_size_bytes"].to_numpy(dtype=float)
                    shares.setdefault(c, set()).update(np.unique(share).tolist())
            if BW in df and LINK in df and len(df):
                bw_is_link &= bool(np.allclose(df[BW].to_numpy(), df[LINK].to_numpy()))
        return cls(
            levels={c: in_order(c, v) for c, v in seen.items()},
            shares={c: len(v) for c, v in shares.items()},
            bw_is_link=bw_is_link,
            with_nan=frozenset(with_nan),
            rows=rows,
        )

    @classmethod
    def of(cls, data: pd.DataFrame | Axes) -> Axes:
        return data if isinstance(data, Axes) else cls.scan([data])

    def __contains__(self, column: str) -> bool:
        return column in self.levels

    def nunique(self, column: str, dropna: bool = True) -> int:
        n = len(self.levels.get(column, ()))
        return n + (not dropna and column in self.with_nan)


_SCANNED = frozenset((*PARAM_COLUMNS, BW, RATIO, AID, "status", "converged"))


def varying_axes(data: pd.DataFrame | Axes) -> list[str]:
    """Parameter columns that take more than one value, in parameter-table order.

    Sizes given as a share of RAM (nonzero_size, working_set_size: "100%") count only when
    the share varies, not when they merely follow ram_size.
    """
    axes = Axes.of(data)
    out = []
    for c in PARAM_COLUMNS:
        if c not in axes or axes.nunique(c, dropna=False) <= 1:
            continue
        if c in axes.shares and axes.shares[c] <= 1:
            continue
        out.append(c)
    return out


def other_axes(data: pd.DataFrame | Axes) -> list[str]:
    """Swept axes besides bandwidth, dirty rate and limit (the link counts when capped)."""
    axes = Axes.of(data)
    out = []
    for c in varying_axes(axes):
        if c in (DR, DL, "max_bandwidth_bytes_per_s", LINK):
            continue
        if c in AID_COLUMNS and AID in axes:
            if AID not in out:
                out.append(AID)  # the two capabilities as one axis
            continue
        out.append(c)
    # with max_bandwidth capping pre-copy the link still sets the final copy's speed
    if LINK in axes and axes.nunique(LINK) > 1 and not axes.bw_is_link:
        out.append(LINK)
    return out


def row_axis(data: pd.DataFrame | Axes, exclude: Sequence[str] = ()) -> str | None:
    """The swept axis used for facet rows: the first of ROW_PRIORITY with 2-4 values."""
    axes = Axes.of(data)
    others = set(other_axes(axes)) - set(exclude)
    for c in ROW_PRIORITY:
        if c in others and axes.nunique(c) <= MAX_ROW_VALUES:
            return c
    return None


#: Row conditions a :class:`Rows` filter can hold: a column above a value, among values, true.
CONDITIONS: dict[str, Callable[[pd.Series, Any], np.ndarray]] = {
    ">": lambda column, value: (column > value).to_numpy(),
    "in": lambda column, values: column.isin(values).to_numpy(),
    "true": lambda column, _: column.to_numpy(dtype=bool),
}


@dataclass(frozen=True)
class Rows:
    """A row filter written as data: the rows where every condition holds.  Being hashable, it
    is its own key for the axes a :class:`Summary` keeps (a cache keyed by a name the caller
    chose could pair one filter's axes with another filter)."""

    conditions: tuple[tuple[str, str, Any], ...]

    @classmethod
    def where(cls, column: str, condition: str, value: Any = None) -> Rows:
        if condition not in CONDITIONS:
            allowed = ", ".join(repr(c) for c in CONDITIONS)
            raise ValueError(f"Rows condition: {condition!r} is not allowed; expected {allowed}")
        if (value is None) != (condition == "true"):
            wanted = "no value" if condition == "true" else "a value to compare with"
            where = f"Rows condition {condition!r} on {column}"
            raise ValueError(f"{where}: {value!r} is not allowed; expected {wanted}")
        return cls(((column, condition, tuple(value) if condition == "in" else value),))

    def __and__(self, other: Rows) -> Rows:
        return Rows(self.conditions + other.conditions)

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        mask = np.ones(len(df), dtype=bool)
        for column, condition, value in self.conditions:
            mask &= CONDITIONS[condition](df[column], value)
        return mask


Where = Callable[[pd.DataFrame], np.ndarray] | None


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary columns as their values: each piece has its own dictionary, and pieces
    must agree on values and on their order (strings sort as text)."""
    columns = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c
               for c in batch.columns]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class Summary:
    """The derived summary as a re-readable stream of pieces.

    :meth:`parquet` reads only `columns`, :data:`PIECE_ROWS` rows at a time; :meth:`frame`
    wraps a DataFrame already in memory as a single piece.  ``where`` filters take a piece
    and return a row mask; the axes seen through a :class:`Rows` filter are scanned once and
    kept.
    """

    def __init__(self, read: Callable[[], Iterator[pd.DataFrame]]) -> None:
        self._read = read
        self._axes: dict[Rows | None, Axes] = {}

    @classmethod
    def frame(cls, df: pd.DataFrame) -> Summary:
        derived = derive(df)
        return cls(lambda: iter([derived]))

    @classmethod
    def parquet(cls, path: str | Path, columns: Sequence[str]) -> Summary:
        def read() -> Iterator[pd.DataFrame]:
            # One thread and no read-ahead: with either, the allocator keeps what each piece
            # used, and a job's memory grows with the file (measured: docs/performance.md).
            with pq.ParquetFile(path, pre_buffer=False) as f:
                pieces = f.iter_batches(
                    batch_size=PIECE_ROWS, columns=list(columns), use_threads=False
                )
                for batch in pieces:
                    yield derive(_plain(batch).to_pandas(), aid_categories=AID_NAMES)
                if f.metadata.num_rows == 0:  # one empty piece: the columns, their types
                    empty = f.schema_arrow.empty_table().select(list(columns))
                    yield derive(empty.to_pandas(), aid_categories=AID_NAMES)

        return cls(read)

    @classmethod
    def of(cls, data: pd.DataFrame | Summary) -> Summary:
        return data if isinstance(data, Summary) else cls.frame(data)

    def pieces(self, where: Where = None) -> Iterator[pd.DataFrame]:
        for df in self._read():
            yield df if where is None else df[where(df)]

    def axes(self, where: Rows | None = None) -> Axes:
        """The swept axes of the rows `where` selects (one scan per filter, then kept)."""
        if where not in self._axes:
            self._axes[where] = Axes.scan(self.pieces(where))
        return self._axes[where]


def _positions(column: pd.Series, lev: list) -> np.ndarray:
    """Each value's position in `lev` (-1 when absent), categories looked up once."""
    index = pd.Index(lev)
    if isinstance(column.dtype, pd.CategoricalDtype):
        at = np.append(index.get_indexer(column.cat.categories), -1)
        return at[column.cat.codes.to_numpy()].astype(np.int64)  # code -1 (NaN) -> -1
    return index.get_indexer(column).astype(np.int64)


#: Cells numbered densely up to this many; beyond, only the combinations present are.
DENSE_CELLS = 1 << 20


class Cells:
    """Numbers the groups of `keys` (row-major over their levels), one code per row.

    Codes follow the levels' reading order, so group g's key values are :meth:`frame`'s
    row g.  When the levels' product passes :data:`DENSE_CELLS` (long zipped axes) and
    `present` can list the rows, only the combinations present are numbered (one more pass):
    memory follows the cells that exist, not every combination of values.
    """

    def __init__(
        self,
        keys: Sequence[str],
        levels: dict[str, list],
        present: Callable[[], Iterator[pd.DataFrame]] | None = None,
    ) -> None:
        self.keys = list(keys)
        self.levels = [list(levels[k]) for k in self.keys]
        self.shape = tuple(len(v) for v in self.levels)
        product = int(np.prod(self.shape, dtype=object)) if self.keys else 1
        if product >= 1 << 62:
            raise ValueError(f"too many combinations of {', '.join(self.keys)} to number "
                             f"({product:.3g} from {self.shape} values)")  # fmt: skip
        self._present = None
        if product > DENSE_CELLS and present is not None:
            seen = [np.unique(self._combined(df)) for df in present()]
            found = np.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=np.int64)
            self._present = found[found >= 0]
        self.size = product if self._present is None else len(self._present)

    def _combined(self, df: pd.DataFrame) -> np.ndarray:
        code = np.zeros(len(df), dtype=np.int64)
        bad = np.zeros(len(df), dtype=bool)
        for key, lev, n in zip(self.keys, self.levels, self.shape, strict=True):
            k = _positions(df[key], lev)
            bad |= k < 0
            code = code * n + k
        code[bad] = -1
        return code

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        """The group of every row; -1 where a key value is not among the levels."""
        code = self._combined(df)
        if self._present is None:
            return code
        at = np.searchsorted(self._present, code)
        hit = (code >= 0) & (at < len(self._present))
        hit[hit] = self._present[at[hit]] == code[hit]
        return np.where(hit, at, -1)

    def frame(self, **columns: np.ndarray) -> pd.DataFrame:
        """One row per group: the key columns, then `columns` (arrays of self.size)."""
        if not self.keys:
            return pd.DataFrame(columns)
        if self._present is None:
            index = pd.MultiIndex.from_product(self.levels, names=self.keys)
        else:
            at = np.unravel_index(self._present, self.shape)
            index = pd.MultiIndex.from_arrays(
                [pd.Index(lev).take(i) for lev, i in zip(self.levels, at, strict=True)],
                names=self.keys,
            )
        return pd.DataFrame(columns, index=index).reset_index()

"""Config -> the grid of scenarios: axes, fixed values, zip groups and chunks.

A sweep config (``config/config.yaml``; the JSON schema in ``workflow/schemas`` checks its
shape, this module checks everything again so the Python API gives the same errors)::

    chunk_size: 1000                  # scenarios per simulate job
    fixed:                            # one value each; unlisted parameters take defaults
      max_bandwidth: 0
    axes:                             # the Cartesian product, first axis outermost
      ram_size: [4GiB, 8GiB, 16GiB]                                   # a list
      downtime_limit: {start: 30ms, stop: 2s, num: 10, scale: log}    # a range
    zip:                              # named groups of parameters that vary together
      convergence_aid:
        auto_converge: [false, true, false]
        dirty_limit:   [false, false, true]

Values are written as users write them ("4GiB", "1Gbit/s", "300ms") and parsed with the
parameter's own parser (:func:`sweep.params.parse_value`).  Each axis is rounded to the
parameter's resolution the way :func:`sweep.params.normalize` rounds it (whole pages, whole
milliseconds, whole bytes/s) and then loses its duplicates, keeping the first, with a
:class:`RepeatedValues` warning that says how many remain.

Order is deterministic: the axes in config order, then the zip groups in config order, each
factor's values in the order written; the last factor varies fastest.  Scenario ids come from
:func:`sweep.api.prepare` (a hash of the canonical parameters), so they do not depend on the
order or on the chunking.

Chunks are contiguous blocks of rows.  They never straddle a value of the *outer* axes: the
plan finds the deepest factor ``j`` whose blocks (one combination of the factors before it)
still hold at least ``chunk_size`` rows and splits every block into equal parts of at most
``chunk_size`` rows (so every chunk holds at least half a ``chunk_size``, rounded down, unless
the whole grid is smaller).  Changing one value of an outer factor therefore changes exactly the
chunks of that value.  :attr:`Plan.aligned_factors` names those factors.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from . import api
from .params import (
    NUMERIC_KINDS,
    PAGE_ROUNDED,
    PARAMETERS,
    Param,
    ParameterError,
    by_name_or_none,
    not_rounding_to_zero,
    parse_value,
)
from .units import UnitError, parse_dirty_rate

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SECTIONS",
    "Factor",
    "Grid",
    "Plan",
    "RepeatedValues",
    "build",
    "chunk_bounds",
    "config_hash",
    "digest",
    "grid_digest",
    "plan",
    "prepared_blocks",
]

DEFAULT_CHUNK_SIZE = 10_000
# Rows normalised at a time when a whole grid is checked or written (Grid.blocks).
BLOCK_ROWS = 100_000
SECTIONS = ("chunk_size", "fixed", "axes", "zip")
# Top-level config sections that belong to other rules (the report); the grid ignores them.
OTHER_SECTIONS = ("report",)
RANGE_KEYS = ("start", "stop", "num", "scale")
SCALES = ("linear", "log")
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)
_NAME_LIST = "one of " + ", ".join(PARAMETER_NAMES)
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


# ---------------------------------------------------------------------------------------------
# Factors: one axis, or one zip group


@dataclass(frozen=True)
class Factor:
    """One dimension of the product: an axis (one parameter) or a zip group (several).

    ``values[p]`` holds parameter ``p``'s values, canonical where that does not depend on other
    parameters (numbers in the canonical unit, labels); ``written[p]`` the same values as the
    config wrote them, for messages.  All lists have ``size`` entries.
    """

    name: str
    kind: str  # "axis" | "zip"
    values: Mapping[str, tuple[Any, ...]]
    written: Mapping[str, tuple[Any, ...]]

    @property
    def size(self) -> int:
        return len(next(iter(self.values.values())))

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self.values)

    def label(self, index: int) -> str:
        """``ram_size=8GiB`` (or ``aid=(auto_converge=true, dirty_limit=false)``)."""
        parts = [f"{p}={_text(self.written[p][index])}" for p in self.values]
        if self.kind == "axis":
            return parts[0]
        return f"{self.name}=({', '.join(parts)})"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------
# The plan: everything about the grid that needs no full normalisation (cheap)


@dataclass(frozen=True)
class Plan:
    """The grid as factors plus fixed values; rows are computed on demand.

    ``rows(start, stop)`` gives the scenarios of any contiguous block without building the
    rest, which is how a simulate job rebuilds just its chunk from the config.
    """

    fixed: Mapping[str, Any]
    fixed_written: Mapping[str, Any]
    factors: tuple[Factor, ...]
    chunk_size: int
    bounds: np.ndarray = field(repr=False)  # row offsets: chunk i is bounds[i]:bounds[i+1]
    aligned_factors: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(f.size for f in self.factors)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        if not 0 <= chunk < self.n_chunks:
            raise ParameterError("chunk", chunk, f"a chunk number in [0, {self.n_chunks - 1}]")
        return int(self.bounds[chunk]), int(self.bounds[chunk + 1])

    def rows(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """Rows ``start:stop`` of the grid as scenarios for :func:`sweep.api.prepare`."""
        stop = self.size if stop is None else stop
        index = np.arange(start, stop, dtype=np.int64)
        columns: dict[str, np.ndarray] = {}
        for name, value in self.fixed.items():
            columns[name] = _column([value])[np.zeros(len(index), dtype=np.int64)]
        if self.factors:
            positions = np.unravel_index(index, self.shape) if len(index) else None
            for k, factor in enumerate(self.factors):
                at = positions[k] if positions is not None else np.zeros(0, dtype=np.int64)
                for name, values in factor.values.items():
                    columns[name] = _column(values)[at]
        frame = pd.DataFrame(columns, index=pd.RangeIndex(start, stop))
        return frame.reset_index(drop=True)

    def chunk_rows(self, chunk: int) -> pd.DataFrame:
        return self.rows(*self.chunk_range(chunk))

    def describe_row(self, row: int) -> str:
        """What the config says about one grid row (for error messages)."""
        if not self.factors:
            return "the fixed values"
        position = np.unravel_index(row, self.shape)
        return ", ".join(f.label(int(i)) for f, i in zip(self.factors, position, strict=True))

    def describe(self) -> str:
        """``3 ram_size x 8 downtime_limit x 3 aid = 72 scenarios in 3 chunks ...``."""
        if self.factors:
            product = " x ".join(f"{f.size} {f.name}" for f in self.factors)
        else:
            product = "1 (fixed values only)"
        text = f"{product} = {self.size} scenarios in {self.n_chunks} chunks"
        sizes = np.diff(self.bounds)
        text += f" of {sizes.min()}-{sizes.max()} (chunk_size {self.chunk_size})"
        if self.aligned_factors:
            text += "; chunks align with the values of " + ", ".join(self.aligned_factors)
        return text


def _column(values: Sequence[Any]) -> np.ndarray:
    """A numpy column for one parameter: float64, bool or object (labels, unit strings)."""
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values) and not any(
        isinstance(v, (bool, np.bool_)) for v in values
    ):
        return np.asarray(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def chunk_bounds(shape: Sequence[int], chunk_size: int) -> tuple[np.ndarray, int]:
    """Row offsets of the chunks, and how many leading factors the chunks align with.

    Blocks at depth ``j`` hold ``prod(shape[j:])`` rows (one combination of the first ``j``
    factors).  The deepest ``j`` whose blocks still hold ``chunk_size`` rows or more is chosen,
    and every block is split into ``ceil(block / chunk_size)`` near-equal parts.
    """
    total = math.prod(shape)
    if total <= chunk_size:
        return np.array([0, total], dtype=np.int64), 0
    depth = max(j for j in range(len(shape) + 1) if math.prod(shape[j:]) >= chunk_size)
    block = math.prod(shape[depth:])
    parts = -(-block // chunk_size)
    within = (np.arange(parts + 1, dtype=np.int64) * block) // parts
    starts = np.arange(total // block, dtype=np.int64)[:, None] * block + within[None, :-1]
    return np.append(starts.ravel(), total), depth


# ---------------------------------------------------------------------------------------------
# Parsing the config


def _param(name: object, where: str) -> Param:
    param = by_name_or_none(name) if isinstance(name, str) else None
    if param is None or param.name != name:
        raise ParameterError(str(name), name, _NAME_LIST, where=where)
    return param


def _check_keys(section: str, value: object, allowed: Sequence[str]) -> None:
    if not isinstance(value, Mapping):
        raise ParameterError(section, value, "a mapping with keys " + ", ".join(allowed))
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ParameterError(section, unknown[0], "one of " + ", ".join(allowed), where="key")


def _page_size(fixed: Mapping[str, Any], varying: set[str]) -> float | None:
    """The page size every scenario shares, or None when page_size is swept."""
    if "page_size" in varying:
        return None
    param = _param("page_size", "fixed")
    return float(_parse(param, fixed.get("page_size", param.default), "fixed.page_size"))


def _in_range(param: Param, number: float, written: object, where: str) -> None:
    low = param.minimum is not None and number < param.minimum
    high = param.maximum is not None and number > param.maximum
    if low or high or not math.isfinite(number):
        unit = f" {param.unit}" if param.unit else ""
        raise ParameterError(
            param.name, written, f"{param.forms}, within {param.range_text()}{unit}", where=where
        )


def _parse(param: Param, value: object, where: str, ram_size: float | None = None) -> Any:
    """:func:`sweep.params.parse_value`, with the config location in the error."""
    try:
        return parse_value(param, value, ram_size)
    except ParameterError as error:
        raise ParameterError(param.name, value, error.allowed, where=where) from None


def _canonical(param: Param, value: object, where: str, page: float | None) -> tuple[Any, Any]:
    """One value as written -> (value for the scenario table, key for de-duplication).

    The value is canonical (a number in the parameter's unit, or a label) unless it depends on
    another parameter: a share of RAM ("25%"), or a byte dirty rate when page_size is swept.
    Such values stay as written and normalize() converts them row by row.
    """
    if isinstance(value, (list, tuple, dict, set)) or value is None:
        raise ParameterError(param.name, value, param.forms, where=where)
    if param.kind == "dirty_rate":
        try:
            at_one, at_two = parse_dirty_rate(value, 1.0), parse_dirty_rate(value, 2.0)
        except UnitError:
            raise ParameterError(param.name, value, param.forms, where=where) from None
        if at_one == at_two or page is not None:  # pages/s, or bytes/s with a known page
            pages = at_one if at_one == at_two else at_one / page
            _in_range(param, pages, value, where)
            return pages, ("pages", pages)
        _in_range(param, at_one / 65536, value, where)  # smallest page: fewest pages/s
        return value, ("bytes", at_one)
    if param.relative_to_ram and isinstance(value, str) and value.strip().endswith("%"):
        share = _parse(param, value, where, 1.0)  # checks 0% <= share <= 100%
        return value.strip(), ("share", share)
    parsed = _parse(param, value, where)
    if param.kind in NUMERIC_KINDS:
        number = float(parsed)
        if param.dtype == "int64":
            if param.name in PAGE_ROUNDED:
                number = number if page is None else round(number / page) * page
            else:
                number = float(np.round(number))
            if number == 0 and float(parsed) != 0:
                raise ParameterError(param.name, value, not_rounding_to_zero(param), where=where)
        _in_range(param, number, value, where)
        return number, ("number", number)
    return parsed, ("label", parsed)


def _range_values(param: Param, spec: Mapping[str, Any], where: str, page: float | None) -> list:
    """{start, stop, num, scale} -> the values it spans, in the units normalize() reads."""
    _check_keys(where, spec, RANGE_KEYS)
    missing = [k for k in ("start", "stop", "num") if k not in spec]
    if missing:
        raise ParameterError(where, spec, "a range with start, stop and num (scale optional)")
    if param.kind not in NUMERIC_KINDS:
        raise ParameterError(
            param.name, spec, "a list of values (ranges need a numeric parameter)", where=where
        )
    num = spec["num"]
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ParameterError(param.name, num, "num: a whole number >= 1", where=where + ".num")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise ParameterError(param.name, scale, "scale: linear or log", where=where + ".scale")
    start, stop = spec["start"], spec["stop"]
    ends = (("start", start), ("stop", stop))
    shares = [isinstance(v, str) and v.strip().endswith("%") for v in (start, stop)]
    if any(shares) and not (all(shares) and param.relative_to_ram):
        raise ParameterError(
            param.name, spec, "start and stop both absolute, or both shares of ram_size", where
        )
    suffix = ""
    if all(shares):
        lo, hi = (_parse(param, v, f"{where}.{k}", 1.0) * 100.0 for k, v in ends)
        suffix = "%"
    elif param.kind == "dirty_rate":
        lo, hi, suffix = _dirty_range_ends(param, start, stop, where, page)
    else:
        lo, hi = (float(_parse(param, v, f"{where}.{k}")) for k, v in ends)
    if scale == "log" and (lo <= 0 or hi <= 0):
        bad = start if lo <= 0 else stop
        raise ParameterError(
            param.name, bad, "start and stop above 0 for scale: log (a list can hold 0)", where
        )
    numbers = np.geomspace(lo, hi, num) if scale == "log" else np.linspace(lo, hi, num)
    numbers = [float(x) for x in numbers]
    return [f"{x!r}{suffix}" for x in numbers] if suffix else numbers


def _dirty_range_ends(
    param: Param, start: object, stop: object, where: str, page: float | None
) -> tuple[float, float, str]:
    """Ends of a dirty-rate range in pages/s, or in bytes/s when page_size is swept."""
    ends = []
    for value in (start, stop):
        try:
            ends.append((parse_dirty_rate(value, 1.0), parse_dirty_rate(value, 2.0)))
        except UnitError:
            raise ParameterError(param.name, value, param.forms, where=where) from None
    is_bytes = [a != b for a, b in ends]
    if not any(is_bytes):
        return ends[0][0], ends[1][0], ""
    if page is not None:
        return (
            ends[0][0] / (page if is_bytes[0] else 1.0),
            ends[1][0] / (page if is_bytes[1] else 1.0),
            "",
        )
    if all(is_bytes) or any(a == 0 for a, _ in ends):
        return ends[0][0], ends[1][0], "B/s"
    raise ParameterError(
        param.name,
        [start, stop],
        "start and stop in the same kind of unit (pages/s or bytes/s) when page_size is swept",
        where=where,
    )


class RepeatedValues(UserWarning):
    """Axis values (or zip rows) that are an earlier one again once rounded: kept once.

    A warning, not an error: a range finer than the parameter's resolution (50 downtime limits
    between 30 and 40 ms) is a reasonable thing to write, but the grid is then smaller than
    the product of the lengths written, and the user should hear why."""


def _dedup(values: list[Any], written: list[Any], keys: list[Any]) -> tuple[tuple, tuple, list]:
    """The values whose keys come first, and for each dropped one "<it> is <the first> again"."""
    first: dict[Any, Any] = {}  # key -> the first written form that had it
    kept_values, kept_written, repeats = [], [], []
    for value, text, key in zip(values, written, keys, strict=True):
        if key in first:
            repeats.append(f"{_text(text)} is {_text(first[key])} again")
            continue
        first[key] = text
        kept_values.append(value)
        kept_written.append(text)
    return tuple(kept_values), tuple(kept_written), repeats


def _warn_repeats(where: str, nouns: str, total: int, repeats: list[str], listed: bool) -> None:
    if repeats:
        shown = "; ".join(repeats[:3]) + ("; ..." if len(repeats) > 3 else "")
        warnings.warn(
            f"{where}: {total - len(repeats)} of the {total} {nouns} are distinct once read "
            f"(units converted, rounded to the parameter's resolution, aliases resolved); the "
            f"grid keeps each once" + (f" ({shown})" if listed else ""),
            RepeatedValues,
            stacklevel=3,
        )


def _axis(name: object, spec: object, page: float | None) -> Factor:
    where = f"axes.{name}"
    param = _param(name, "axes")
    if isinstance(spec, Mapping):
        values = _range_values(param, spec, where, page)
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ParameterError(param.name, [], "a non-empty list or a range", where=where)
        values, written = list(spec), list(spec)
    else:
        raise ParameterError(
            param.name,
            spec,
            "a list of values or a range {start, stop, num, scale}; "
            "put a single value under 'fixed'",
            where=where,
        )
    pairs = [_canonical(param, v, f"{where}[{i}]", page) for i, v in enumerate(values)]
    if isinstance(spec, Mapping):
        written = [_pretty(param, p[0]) for p in pairs]
    kept, kept_written, repeats = _dedup([p[0] for p in pairs], written, [p[1] for p in pairs])
    # a range finer than the resolution is fine to write; its values need no listing
    _warn_repeats(where, "values", len(pairs), repeats, listed=not isinstance(spec, Mapping))
    return Factor(param.name, "axis", {param.name: kept}, {param.name: kept_written})


def _pretty(param: Param, value: object) -> object:
    """A generated range value for messages: ``48 ms`` (the value itself is kept exact)."""
    if isinstance(value, float):
        return f"{value:.6g} {param.unit}".strip()
    return value


def _zip_group(name: object, spec: object, page: float | None) -> Factor:
    where = f"zip.{name}"
    if not isinstance(name, str) or not _GROUP_NAME.match(name):
        raise ParameterError("zip", name, "a group name of letters, digits, _ and -")
    if not isinstance(spec, Mapping) or not spec:
        raise ParameterError(
            name, spec, "a mapping of parameters to equal-length lists", where="zip"
        )
    params = [_param(key, where) for key in spec]
    lists = {}
    for param in params:
        values = spec[param.name]
        if not isinstance(values, (list, tuple)) or not values:
            raise ParameterError(param.name, values, "a non-empty list", where=where)
        lists[param.name] = list(values)
    lengths = {key: len(values) for key, values in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ParameterError(name, lengths, "lists of equal length (one entry per row)", where)
    n = next(iter(lengths.values()))
    canonical = {
        key: [
            _canonical(by_name_or_none(key), v, f"{where}.{key}[{i}]", page)
            for i, v in enumerate(values)
        ]
        for key, values in lists.items()
    }
    rows = [tuple(canonical[key][i][1] for key in lists) for i in range(n)]
    rows_written = [f"row {i}" for i in range(n)]
    keep, _, repeats = _dedup(list(range(n)), rows_written, rows)
    _warn_repeats(where, "rows", n, repeats, listed=True)
    values = {key: tuple(canonical[key][i][0] for i in keep) for key in lists}
    written = {key: tuple(lists[key][i] for i in keep) for key in lists}
    return Factor(name, "zip", values, written)


def plan(config: Mapping[str, Any]) -> Plan:
    """Check a sweep config and lay out its grid (no simulation, no full normalisation)."""
    _check_keys("config", config, SECTIONS + OTHER_SECTIONS)
    chunk_size = config.get("chunk_size", DEFAULT_CHUNK_SIZE)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ParameterError("chunk_size", chunk_size, "a whole number of scenarios >= 1")
    if chunk_size < 1:
        raise ParameterError("chunk_size", chunk_size, "a whole number of scenarios >= 1")
    sections = {}
    for section in ("fixed", "axes", "zip"):
        value = config.get(section) or {}
        if not isinstance(value, Mapping):
            raise ParameterError(section, value, "a mapping (parameter: value)")
        sections[section] = value
    fixed, axes, groups = sections["fixed"], sections["axes"], sections["zip"]

    places: dict[str, list[str]] = {}
    for key in fixed:
        places.setdefault(_param(key, "fixed").name, []).append("fixed")
    for key in axes:
        places.setdefault(_param(key, "axes").name, []).append("axes")
    for group, spec in groups.items():
        for key in spec if isinstance(spec, Mapping) else ():
            places.setdefault(_param(key, f"zip.{group}").name, []).append(f"zip.{group}")
    for key, where in places.items():
        if len(where) > 1:
            raise ParameterError(key, where, "one place: fixed, axes or a single zip group")

    varying = {k for k, where in places.items() if where[0] != "fixed"}
    page = _page_size(fixed, varying)
    fixed_values = {
        _param(k, "fixed").name: _canonical(_param(k, "fixed"), v, f"fixed.{k}", page)[0]
        for k, v in fixed.items()
    }
    factors = [_axis(name, spec, page) for name, spec in axes.items()]
    factors += [_zip_group(name, spec, page) for name, spec in groups.items()]
    shape = [f.size for f in factors]
    bounds, depth = chunk_bounds(shape, int(chunk_size))
    return Plan(
        fixed=fixed_values,
        fixed_written=dict(fixed),
        factors=tuple(factors),
        chunk_size=int(chunk_size),
        bounds=bounds,
        aligned_factors=tuple(f.name for f in factors[:depth]),
    )


# ---------------------------------------------------------------------------------------------
# The grid: every scenario, normalised, with ids, chunk numbers and digests


@dataclass(frozen=True)
class Grid:
    """A checked grid: its plan and what each chunk holds, not its rows.

    Checking a grid normalises every row, but a block of chunks at a time
    (:meth:`blocks`), keeping only the scenario ids: 8 bytes a scenario, so the workflow's
    main process and the grid job stay small whatever the grid size.
    """

    plan: Plan
    digests: tuple[str, ...]  # one per chunk: its scenario ids (each hashes every value)
    digest: str  # the whole grid: every id in order, and the chunk boundaries

    def blocks(self, rows: int | None = None) -> Iterator[pd.DataFrame]:
        """The prepared scenarios, a block at a time (see :func:`prepared_blocks`)."""
        return prepared_blocks(self.plan, rows)

    @cached_property
    def scenarios(self) -> pd.DataFrame:
        """The whole grid as one frame: for small grids (the workflow uses :meth:`blocks`)."""
        return pd.concat(list(self.blocks()), ignore_index=True)


def digest(scenario_ids: np.ndarray | pd.Series) -> str:
    """A short stable digest of a list of scenario ids (order matters)."""
    return hashlib.sha256(_id_bytes(scenario_ids)).hexdigest()[:16]


def grid_digest(id_blocks: Iterable[np.ndarray | pd.Series], bounds: np.ndarray) -> str:
    """A short stable digest of a whole grid: its ids in order (given block by block, the
    same digest however they are split) and its chunk boundaries."""
    h = hashlib.sha256()
    for ids in id_blocks:
        h.update(_id_bytes(ids))
    h.update(_id_bytes(bounds))
    return h.hexdigest()[:16]


def _id_bytes(values: np.ndarray | pd.Series) -> memoryview:
    """The values as little-endian int64 bytes, read in place (not copied by ``tobytes``:
    a grid's ids are 8 bytes a scenario)."""
    return memoryview(np.ascontiguousarray(np.asarray(values, dtype="<i8"))).cast("B")


def _repeat_error(plan_: Plan, row: int, earlier: int) -> ParameterError:
    return ParameterError(
        "axes",
        f"grid row {row} ({plan_.describe_row(row)}) repeats grid row {earlier} "
        f"({plan_.describe_row(earlier)})",
        "axes whose values stay distinct after rounding to the parameter's resolution "
        "(whole pages, ms, bytes/s)",
    )  # fmt: skip


def prepare_rows(plan_: Plan, rows: pd.DataFrame, offset: int = 0) -> pd.DataFrame:
    """:func:`sweep.api.prepare` with errors that name the grid row's axis values."""
    try:
        return api.prepare(rows)
    except ParameterError as error:
        match = re.search(r"\(scenario (\d+)\)|row (\d+) repeats row (\d+)", str(error))
        if match is None:
            raise
        row = offset + int(match.group(1) or match.group(2))
        if error.key == "scenarios":
            raise _repeat_error(plan_, row, offset + int(match.group(3))) from None
        where = f"grid row {row}: {plan_.describe_row(row)}"
        raise ParameterError(
            error.key, error.value, error.allowed, where=where, unit=error.unit
        ) from None


def _blocks(plan_: Plan, rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of runs of whole chunks of about `rows` rows (at least one chunk each):
    few enough calls for small chunks, one chunk's memory for large ones."""
    bounds = plan_.bounds
    first = 0
    while first < plan_.n_chunks:
        last = first + 1
        while last < plan_.n_chunks and bounds[last + 1] - bounds[first] <= rows:
            last += 1
        yield int(bounds[first]), int(bounds[last])
        first = last


def prepared_blocks(plan_: Plan, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A plan's prepared scenarios (scenario_id, chunk, canonical parameters), whole chunks at
    a time, about `rows` rows a block (BLOCK_ROWS, as it is when called)."""
    for start, stop in _blocks(plan_, BLOCK_ROWS if rows is None else rows):
        yield _prepared_block(plan_, start, stop)


def _prepared_block(plan_: Plan, start: int, stop: int) -> pd.DataFrame:
    scenarios = prepare_rows(plan_, plan_.rows(start, stop), offset=start)
    chunk = np.searchsorted(plan_.bounds, np.arange(start, stop), side="right") - 1
    scenarios.insert(1, "chunk", chunk.astype(np.int32))
    return scenarios


def build(config: Mapping[str, Any]) -> Grid:
    """Check a config and its whole grid; every bad value fails here, before any job.

    Every row is normalised (a block at a time) and a row that repeats an earlier one after
    rounding is refused, naming both rows' axis values.  Memory: the ids (8 bytes a
    scenario) and a flag a scenario, whatever the parameters."""
    layout = plan(config)
    ids = np.empty(layout.size, dtype=np.int64)
    for start, block in _id_blocks(layout):
        ids[start : start + len(block)] = block
    bounds = layout.bounds
    digests = tuple(digest(ids[a:b]) for a, b in itertools.pairwise(bounds))
    whole = grid_digest([ids], bounds)
    _refuse_repeats(layout, ids)
    return Grid(layout, digests, whole)


def _refuse_repeats(layout: Plan, ids: np.ndarray) -> None:
    """Refuse a grid in which two rows are one scenario.  Sorts `ids` in place (an argsort
    and its gathers took four times the ids' memory: 3.6 GB at 100 million scenarios); only
    when a repeat exists does a second pass over the grid find the first row that repeats."""
    ids.sort()
    same = ids[1:] == ids[:-1]
    if not same.any():
        return
    repeated = np.unique(ids[1:][same])
    seen: dict[int, int] = {}
    for start, block in _id_blocks(layout):
        for offset in np.flatnonzero(np.isin(block, repeated)):
            row, value = start + int(offset), int(block[offset])
            if value in seen:
                raise _repeat_error(layout, row, seen[value])
            seen[value] = row


def _id_blocks(layout: Plan) -> Iterator[tuple[int, np.ndarray]]:
    """(first grid row, scenario ids) of each block of the grid, normalised a block at a time."""
    for start, stop in _blocks(layout, BLOCK_ROWS):
        yield start, _prepared_block(layout, start, stop)["scenario_id"].to_numpy()


def chunk_scenarios(config: Mapping[str, Any], chunk: int) -> pd.DataFrame:
    """The raw scenarios of one chunk (for :func:`sweep.api.simulate`), built from the config."""
    return plan(config).chunk_rows(chunk)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the sweep sections of a config (canonical JSON), 16 hex digits."""
    sweep = {k: config[k] for k in SECTIONS if k in config}
    text = json.dumps(sweep, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

"""Exact statistics per group over data read in pieces, in memory that does not grow with it.

The report's figures need order statistics per group (the median time of a phase-map cell,
the 5-95 % box of a downtime limit).  Holding a million-row summary to take them costs
hundreds of MB, and a grid ten times larger would not fit a 1 GiB job.  Here the data comes as
a re-readable stream of pieces (``pieces()`` yields ``(codes, values)``: a group number per
row, -1 to leave the row out, and its value), and every statistic is exact:

* counts and sums are added up piece by piece;
* quantiles: a first pass counts the rows of each group; groups are then packed into parts
  of at most ``budget`` rows, and each part is one more pass that keeps only its groups'
  values and sorts them.  Groups larger than ``budget`` are found by radix selection
  instead, all in the same six passes, each narrowing the wanted ranks by the next 11 bits of
  the values' order-preserving integer keys.  Memory is bounded by ``budget`` values and
  ``2^11`` counters per wanted rank, whatever the number of rows.

Quantiles interpolate as :func:`numpy.quantile`'s default ("linear") does, bit for bit; a
median is the mean of the two middle values, as :func:`numpy.median` and pandas take it.
NaN values must be left out by the caller (code -1), as pandas' group-bys skip them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "BUDGET",
    "Pieces",
    "as_pieces",
    "group_counts",
    "group_quantiles",
    "group_sums",
    "median",
]

#: Values held at once by :func:`group_quantiles` (8 bytes each, twice while sorting).
BUDGET = 2_000_000

#: A re-readable stream: every call yields the same (codes, values) pieces again.
Pieces = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]

#: Digits of the 64-bit keys, most significant first: one pass each, 2^11 counters a rank.
_DIGITS = (11, 11, 11, 11, 11, 9)
_SIGN = np.uint64(1 << 63)


def group_counts(pieces: Pieces, n_groups: int) -> np.ndarray:
    """Rows per group (code -1 rows are not counted)."""
    counts = np.zeros(n_groups, dtype=np.int64)
    for codes, _ in pieces():
        keep = codes >= 0
        counts += np.bincount(codes[keep], minlength=n_groups)
    return counts


def group_sums(pieces: Pieces, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, sum) per group, sums accumulated piece by piece in float64.

    `values` may hold k rows of values per row of codes (shape (k, rows)): the sums then have
    shape (k, n_groups), all taken in the same pass.
    """
    counts = np.zeros(n_groups, dtype=np.int64)
    sums = np.zeros(n_groups, dtype=float)
    for codes, values in pieces():
        keep = codes >= 0
        kept = codes[keep]
        counts += np.bincount(kept, minlength=n_groups)
        values = np.asarray(values, dtype=float)[..., keep]
        if values.ndim > 1 and sums.ndim == 1:
            sums = np.zeros((len(values), n_groups))
        sums += np.array([np.bincount(kept, weights=v, minlength=n_groups)
                          for v in np.atleast_2d(values)]).reshape(sums.shape)  # fmt: skip
    return counts, sums


def _ranks(n: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's linear method: the two ranks around (n - 1) q and the weight of the upper.

    At the last rank numpy reads the last value twice, indexed as -1, so its weight is
    (n - 1) q + 1, not 0: the same value, but for the sign of a zero (-0.0 alone in a group
    is -0.0 at every quantile, as numpy.quantile gives it)."""
    virtual = (n - 1) * q
    below = np.floor(virtual)
    last = virtual >= n - 1
    gamma = virtual - np.where(last, -1.0, below)
    below = np.where(last, n - 1, below).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    return below, above, gamma


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy.quantile's interpolation, operation for operation (so results are identical)."""
    diff = b - a
    out = a + diff * t
    upper = t >= 0.5
    out[upper] = (b - diff * (1 - t))[upper]
    return out


def _interpolate(a: np.ndarray, b: np.ndarray, gamma: np.ndarray, q: float, is_median: bool):
    if is_median and q == 0.5:  # numpy.median: the middle value, or the mean of the two
        out = np.array(a, dtype=float)
        two = gamma == 0.5  # an even count: (n - 1) / 2 lies between two ranks
        out[two] = (a[two] + b[two]) / 2.0
        return out
    return _lerp(a, b, gamma)


def _order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort as the float64 values do (negative values bit-flipped)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def _from_keys(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint64)
    positive = (keys & _SIGN) != 0
    bits = np.where(positive, keys & ~_SIGN, ~keys)
    return bits.view(np.float64)


def _select(pieces: Pieces, groups: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The value at rank ``ranks[t]`` (0-based, ascending) of group ``groups[t]``, for every
    t at once: a pass per digit of the values' order-preserving keys, most significant
    first, each counting the next digit of the rows that match a target's digits so far."""
    prefix = np.zeros(len(ranks), dtype=np.uint64)
    left = ranks.astype(np.int64).copy()  # rank still to find among rows matching the prefix
    fixed = 0  # bits of every prefix found so far
    for width in _DIGITS:
        shift = np.uint64(64 - fixed - width)
        hist = np.zeros((len(ranks), 1 << width), dtype=np.int64)
        for codes, values in pieces():
            for g in np.unique(groups):
                keys = _order_keys(values[codes == g])
                digits = ((keys >> shift) & np.uint64((1 << width) - 1)).astype(np.int64)
                for t in np.flatnonzero(groups == g):
                    if fixed:
                        above = np.uint64(64 - fixed)
                        match = digits[(keys >> above) == (prefix[t] >> above)]
                    else:
                        match = digits
                    hist[t] += np.bincount(match, minlength=1 << width)
        for t in range(len(ranks)):
            cum = np.cumsum(hist[t])
            d = int(np.searchsorted(cum, left[t], side="right"))
            left[t] -= cum[d - 1] if d else 0
            prefix[t] |= np.uint64(d) << shift
        fixed += width
    return _from_keys(prefix)


def group_quantiles(
    pieces: Pieces,
    n_groups: int,
    qs: Sequence[float],
    *,
    median: bool = False,
    budget: int | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Quantiles `qs` of every group: an (n_groups, len(qs)) array, NaN for empty groups.

    ``median=True`` takes q = 0.5 as numpy.median does (mean of the two middle values);
    otherwise every q interpolates as numpy.quantile.  `counts` (from
    :func:`group_counts`) saves the counting pass when the caller has it.
    """
    budget = BUDGET if budget is None else budget
    if counts is None:
        counts = group_counts(pieces, n_groups)
    out = np.full((n_groups, len(qs)), np.nan)
    big = np.flatnonzero(counts > budget)
    small = np.flatnonzero((counts > 0) & (counts <= budget))
    # parts: consecutive small groups adding up to at most `budget` rows
    part_of = np.full(n_groups, -1, dtype=np.int64)
    if len(small):
        part, used = 0, 0
        for g in small:
            if used + counts[g] > budget:
                part, used = part + 1, 0
            part_of[g] = part
            used += counts[g]
        for p in range(part + 1):
            _quantiles_in_memory(pieces, part_of == p, counts, qs, median, out)
    if len(big):  # all groups over the budget in the same passes: two ranks per quantile
        n = counts[big]
        bounds = [_ranks(n, q) for q in qs]
        groups = np.concatenate([big for _ in qs for _ in "ab"])
        ranks = np.concatenate([r for below, above, _ in bounds for r in (below, above)])
        found = _select(pieces, groups, ranks).reshape(len(qs), 2, len(big))
        for k, (q, (_, _, gamma)) in enumerate(zip(qs, bounds, strict=True)):
            out[big, k] = _interpolate(found[k, 0], found[k, 1], gamma, q, median)
    return out


def _quantiles_in_memory(
    pieces: Pieces,
    member: np.ndarray,
    counts: np.ndarray,
    qs: Sequence[float],
    median: bool,
    out: np.ndarray,
) -> None:
    """One pass keeping the rows of the `member` groups; sort by (group, value), read off."""
    kept_codes, kept_values = [], []
    for codes, values in pieces():
        keep = codes >= 0
        keep[keep] = member[codes[keep]]
        kept_codes.append(codes[keep])
        kept_values.append(values[keep])
    codes = np.concatenate(kept_codes)
    values = np.concatenate(kept_values).astype(float, copy=False)
    del kept_codes, kept_values
    groups = np.flatnonzero(member)
    n = counts[groups]
    if len(values) != n.sum():
        raise ValueError(f"counts given for {n.sum()} rows, the pieces hold {len(values)}")
    order = np.lexsort((values, codes))
    values = values[order]
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    for k, q in enumerate(qs):
        below, above, gamma = _ranks(n, q)
        a, b = values[start + below], values[start + above]
        out[groups, k] = _interpolate(a, b, gamma, q, median)


def median(pieces: Pieces, n_groups: int, **kw) -> np.ndarray:
    """The median of every group (NaN when empty), as numpy.median takes it."""
    return group_quantiles(pieces, n_groups, [0.5], median=True, **kw)[:, 0]


def as_pieces(items: Iterable[tuple[np.ndarray, np.ndarray]]) -> Pieces:
    """A stream from pieces already in memory (tests, small frames)."""
    held = list(items)
    return lambda: iter(held)

"""How many distinct pages a guest dirties in an interval: the plug-in point for workloads.

The model never tracks individual pages.  At a dirty-bitmap sync it asks a workload for
``distinct(interval, rate, working_set)``: the expected number of distinct pages written
during ``interval`` seconds at ``rate`` page writes per second, spread over a working set of
``working_set`` pages.  Adding a workload shape (a measured curve, a mix) means adding one
function here and its name to :data:`WORKLOADS`.

Every function takes numpy arrays (or scalars) and broadcasts, so the scalar reference and the
vectorised engine call the very same code.

Assumption, stated once for all shapes (docs/model.md, "Dirtying"): which pages the guest
writes is independent of where QEMU's scan cursor is, so a write hits a page that is still
queued for sending with probability (queued hot pages / working set).  For ``uniform`` this is
exact in expectation.  For ``sequential`` it ignores the geometry of a ring chasing an
address-order scan (real QEMU sends a ring's pages in address order, so the overlap depends
on where the writer started).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["WORKLOADS", "distinct_pages", "pattern_code"]

ArrayLike = np.ndarray | float


def uniform(interval_s: ArrayLike, rate: ArrayLike, working_set: ArrayLike) -> np.ndarray:
    """Random writes: coupon collecting, W * (1 - exp(-rate * t / W))."""
    interval_s, rate, working_set = np.broadcast_arrays(
        np.asarray(interval_s, dtype=float),
        np.asarray(rate, dtype=float),
        np.asarray(working_set, dtype=float),
    )
    out = np.zeros(interval_s.shape)
    live = working_set > 0
    out[live] = -working_set[live] * np.expm1(-rate[live] * interval_s[live] / working_set[live])
    return out


def sequential(interval_s: ArrayLike, rate: ArrayLike, working_set: ArrayLike) -> np.ndarray:
    """A ring rewritten in order: linear until the whole working set is covered."""
    return np.minimum(np.asarray(working_set, dtype=float), np.multiply(rate, interval_s))


WORKLOADS: dict[str, Callable[..., np.ndarray]] = {"uniform": uniform, "sequential": sequential}
PATTERNS = tuple(WORKLOADS)


def pattern_code(names: np.ndarray | list[str]) -> np.ndarray:
    """Small integer codes for pattern names, in the order of :data:`PATTERNS`."""
    lookup = {name: code for code, name in enumerate(PATTERNS)}
    return np.array([lookup[str(n)] for n in names], dtype=np.int8)


def distinct_pages(
    code: np.ndarray, interval_s: np.ndarray, rate: np.ndarray, working_set: np.ndarray
) -> np.ndarray:
    """Distinct pages dirtied, choosing each scenario's workload by its pattern code."""
    code, interval_s, rate, working_set = np.broadcast_arrays(
        np.asarray(code), np.asarray(interval_s, dtype=float), np.asarray(rate, dtype=float),
        np.asarray(working_set, dtype=float),
    )  # fmt: skip
    out = np.empty(interval_s.shape)
    for number, function in enumerate(WORKLOADS.values()):
        rows = code == number
        if np.any(rows):
            out[rows] = function(interval_s[rows], rate[rows], working_set[rows])
    return out

"""The noise-proof comparisons every decision of both models goes through (sweep.numerics)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from sweep import numerics as num

ANY = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)


def near(x: float) -> st.SearchStrategy[float]:
    """x, or x moved by a few relative units of 1e-9: the pairs whose answer the tolerance
    decides."""
    return st.sampled_from([-3e-9, -1e-9, -0.99e-9, 0.0, 0.99e-9, 1e-9, 3e-9]).map(
        lambda r: x * (1.0 + r)
    )


@st.composite
def pairs(draw: st.DrawFn) -> tuple[float, float]:
    a = draw(ANY)
    b = draw(st.one_of(ANY, near(a) if np.isfinite(a) else ANY))
    return (a, b) if draw(st.booleans()) else (b, a)


def by_definition(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """below and at_most with EPS scaled by max(|a|, |b|), as written in the module doc."""
    tolerance = num.EPS * np.maximum(np.abs(a), np.abs(b))
    return a < b - tolerance, a <= b + tolerance


@given(st.lists(pairs(), min_size=1, max_size=50))
@example([(-np.inf, np.inf)])  # found by a long random search: at_most said false
def test_below_and_at_most_equal_their_definition(values: list[tuple[float, float]]) -> None:
    """below (written with one call less) and at_most give the definition's answer for every
    pair: either sign, zeros of both signs, subnormals, infinities, NaN, pairs a hair apart."""
    a, b = (np.array(side, dtype=float) for side in zip(*values, strict=True))
    with np.errstate(all="ignore"):
        below, at_most = by_definition(a, b)
        np.testing.assert_array_equal(num.below(a, b), below)
        np.testing.assert_array_equal(num.at_most(a, b), at_most)
        for x, y, lt, le in zip(a, b, below, at_most, strict=True):  # scalars take them too
            assert num.below(x, y) == lt and num.at_most(x, y) == le


def test_a_hair_counts_as_equal_either_way() -> None:
    for b in (1.0, -1.0, 4e9, -4e9):
        hair = abs(b) * 1e-10
        assert num.at_most(b + hair, b) and not num.below(b - hair, b)
        assert not num.at_most(b + abs(b) * 1e-8, b) and num.below(b - abs(b) * 1e-8, b)

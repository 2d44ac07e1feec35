"""Group statistics read a piece at a time (sweep.aggregate) against numpy on the whole data.

The report's figures take their medians, boxes and bands from these, so they must equal
numpy's results bit for bit, whether a group is sorted in memory, shares a part with others,
or is larger than the budget and found by radix selection.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sweep import aggregate

QS = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def grouped(draw):
    """(codes, values, groups, piece size): some rows left out (-1), some groups empty."""
    groups = draw(st.integers(1, 6))
    n = draw(st.integers(0, 120))
    codes = np.array(draw(st.lists(st.integers(-1, groups - 1), min_size=n, max_size=n)),
                     dtype=np.int64)  # fmt: skip
    pool = draw(st.lists(finite, min_size=1, max_size=12))  # repeats are common in sweeps
    values = np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)), dtype=float)
    return codes, values, groups, draw(st.integers(1, 50))


def stream(codes: np.ndarray, values: np.ndarray, size: int) -> aggregate.Pieces:
    return aggregate.as_pieces(
        (codes[i : i + size], values[i : i + size]) for i in range(0, len(codes), size)
    )


# floats near the largest overflow in the interpolation, numpy's and ours alike (same inf)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(grouped(), st.sampled_from([1, 3, 10, 1000]))
# found by the random search: numpy reads a group's last value as index -1 (weight 1, not 0),
# which keeps a lone -0.0 negative; and a lone value's median is itself, not (x + x) / 2
@example((np.array([0]), np.array([-0.0]), 1, 1), 1)
@example((np.array([0]), np.array([8.98846567e307]), 1, 1), 1)
# found by a CI run (2026-11-27): a group of -0.0, 0.0, -0.0, whose 25 % quantile numpy gives
# as 0.0 and the sort by bits as -0.0
@example((np.array([0, 0, 0]), np.array([-0.0, 0.0, -0.0]), 1, 1), 1)
def test_quantiles_equal_numpy_bit_for_bit(case, budget):
    codes, values, groups, size = case
    pieces = stream(codes, values, size)
    got = aggregate.group_quantiles(pieces, groups, QS, budget=budget)
    medians = aggregate.median(pieces, groups, budget=budget)
    for g in range(groups):
        v = values[codes == g]
        if len(v) == 0:
            assert np.isnan(got[g]).all() and np.isnan(medians[g])
            continue
        want = np.quantile(v, QS)
        zeros = v[v == 0]
        if np.signbit(zeros).any() and not np.signbit(zeros).all():
            # -0.0 == 0.0, so numpy's partition leaves the two in an order of its own, and an
            # interpolated zero takes the sign of whichever it put first: the sign is numpy's
            # pick, the value is not.  Every other value must match to the bit.
            other = want != 0
            assert np.array_equal(got[g] == 0, ~other), (g, got[g], want)
            assert got[g][other].tobytes() == want[other].tobytes(), (g, got[g], want)
        else:
            assert got[g].tobytes() == want.tobytes(), (g, got[g], want)
        assert medians[g] == np.median(v)


def test_a_group_over_the_budget_is_selected_not_held():
    """Radix selection keeps counters, not values: no piece's values outlive its pass."""
    rng = np.random.default_rng(7)
    values = rng.lognormal(3, 4, 10_000) * rng.choice([-1.0, 1.0], 10_000)
    codes = np.zeros(len(values), dtype=np.int64)
    codes[::3] = 1
    pieces = stream(codes, values, 999)
    got = aggregate.group_quantiles(pieces, 2, QS, budget=100)  # both groups over the budget
    for g in (0, 1):
        assert got[g].tobytes() == np.quantile(values[codes == g], QS).tobytes()


def test_sums_and_counts_skip_left_out_rows():
    codes = np.array([0, 1, -1, 1, 2, 2, 2])
    values = np.array([1.0, 2.0, 100.0, 3.0, 0.5, 0.5, 1.0])
    n, total = aggregate.group_sums(stream(codes, values, 2), 4)
    assert n.tolist() == [1, 2, 3, 0]
    assert total.tolist() == [1.0, 5.0, 2.0, 0.0]
    assert aggregate.group_counts(stream(codes, values, 3), 4).tolist() == [1, 2, 3, 0]


@pytest.mark.parametrize("budget", [1, 4, 100])
def test_groups_are_packed_into_parts_by_the_budget(budget, monkeypatch):
    """Each in-memory pass holds at most `budget` values; a larger group goes to selection."""
    held = []
    original = aggregate._quantiles_in_memory

    def spy(pieces, member, counts, qs, median, out):
        held.append(int(counts[member].sum()))
        return original(pieces, member, counts, qs, median, out)

    monkeypatch.setattr(aggregate, "_quantiles_in_memory", spy)
    codes = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 0])
    values = np.arange(len(codes), dtype=float)
    got = aggregate.group_quantiles(stream(codes, values, 4), 6, [0.5], budget=budget)
    assert all(h <= budget for h in held)
    assert sum(held) == sum(c for c in (1, 2, 3, 4, 5) if c <= budget)
    for g, c in enumerate((1, 2, 3, 4, 5)):
        assert got[g, 0] == np.quantile(values[codes == g], 0.5), c


@pytest.mark.parametrize("shift", [9, 11, 16, 20, 22, 31])
def test_selection_counts_the_rows_below_at_every_digit(shift):
    """Neighbouring floats (keys that differ in low bits only) are still told apart, with the
    difference at any digit's lowest bits (a target digit of 1 above a populated 0)."""
    base = np.uint64(0x3FF0_0000_0000_0000)  # 1.0; its low 52 bits are zero
    keys = [base + np.uint64((i << shift) + j) for i in range(3) for j in range(5)]
    values = np.array(keys, dtype=np.uint64).view(np.float64)[::-1].copy()
    codes = np.zeros(len(values), dtype=np.int64)
    got = aggregate.group_quantiles(stream(codes, values, 4), 1, QS, budget=2)
    assert got[0].tobytes() == np.quantile(values, QS).tobytes()


def test_counts_that_do_not_match_the_pieces_are_refused():
    codes = np.array([0, 0, 1])
    values = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="counts given for 4 rows, the pieces hold 3"):
        aggregate.group_quantiles(stream(codes, values, 2), 2, [0.5], counts=np.array([3, 1]))


def test_several_sums_in_one_pass_equal_one_sum_each():
    codes = np.array([0, 1, -1, 1, 2, 2])
    values = np.array([[1.0, 2.0, 100.0, 3.0, 0.5, 0.5], [0.0, 1.0, 1.0, 1.0, 0.0, 1.0]])
    pieces = aggregate.as_pieces([(codes[:4], values[:, :4]), (codes[4:], values[:, 4:])])
    n, both = aggregate.group_sums(pieces, 3)
    assert both.shape == (2, 3)
    for k in range(2):
        alone = aggregate.group_sums(stream(codes, values[k], 4), 3)
        assert n.tolist() == alone[0].tolist() and both[k].tolist() == alone[1].tolist()

"""The positional ring model (ring.py) against a page-by-page bitmap of the same working set.

The bitmap is QEMU's migration bitmap in miniature: a scan cursor that sends queued pages in
address order, then the rest of RAM (in the first pass), then wraps; a writer that walks the
ring; a sync that ORs the pages written since the last one into the bitmap and counts those
that were not set.  The model keeps counts and a few arcs instead: with whole pages and no
more arcs than it keeps, it must agree with the bitmap exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import sweep
from sweep.ring import ARCS, Ring, ring_setup, ring_sync


class Bitmap:
    """The working set page by page, the rest of RAM as a count (it is never written)."""

    def __init__(self, W: int, cold: int, position: int) -> None:
        self.W, self.cold, self.position = W, cold, position
        self.queued = np.ones(W, dtype=bool)
        self.cursor = 0  # W: past the working set, in the rest of RAM

    def send(self, pages: int) -> None:
        while pages > 0 and (self.queued.any() or self.cold > 0):
            ahead = np.flatnonzero(self.queued[self.cursor :]) if self.cursor < self.W else []
            if len(ahead):
                page = self.cursor + ahead[0]
                self.queued[page] = False
                self.cursor = page + 1
            elif self.cold > 0:
                self.cold -= 1
                self.cursor = self.W
            else:  # the end of RAM: wrap
                self.cursor = 0
                continue
            pages -= 1

    def sync(self, written: int) -> int:
        pages = (self.position + np.arange(min(written, self.W))) % self.W
        new = int(np.count_nonzero(~self.queued[pages]))
        self.queued[pages] = True
        self.position = (self.position + written) % self.W
        return new

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        ahead = self.queued.copy()
        ahead[: min(self.cursor, self.W)] = False
        return ahead, self.queued & ~ahead


def intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def as_intervals(start: np.ndarray, end: np.ndarray) -> list[tuple[int, int]]:
    return sorted((int(s), int(e)) for s, e in zip(start[0], end[0], strict=True) if e > s)


def one(x: float) -> np.ndarray:
    return np.array([float(x)])


@given(
    st.integers(1, 48),
    st.integers(0, 30),
    st.data(),
    st.lists(st.tuples(st.integers(0, 70), st.integers(0, 90)), min_size=1, max_size=8),
)
def test_the_model_keeps_the_bitmap_s_counts_and_pages(W, cold, data, steps) -> None:
    position = data.draw(st.integers(0, W - 1))
    pages = Bitmap(W, cold, position)
    ring = ring_setup(one(W), one(position), one(0.0))
    R_h, R_n, R_cold = float(W), 0.0, float(cold)
    for send, written in steps:
        pages.send(send)
        # the model's counts drain in scan order: ahead of the cursor, the rest, behind it
        for take in ("ahead", "cold", "behind"):
            queue = {"ahead": R_h, "cold": R_cold, "behind": R_n}[take]
            sent = min(send, queue)
            send -= sent
            if take == "ahead":
                R_h -= sent
            elif take == "cold":
                R_cold -= sent
            else:
                R_n -= sent
        new, R_h, R_n, ring = ring_sync(ring, one(R_h), one(R_n), one(written), one(W))
        assert new[0] == pages.sync(written)
        ahead, behind = pages.split()
        assert (R_h[0], R_n[0]) == (ahead.sum(), behind.sum())
        R_h, R_n = float(R_h[0]), float(R_n[0])
        if len(intervals(ahead)) > ARCS or len(intervals(behind)) > ARCS:
            break  # past ARCS arcs the model merges the first (a superset: ring.py)
        assert as_intervals(ring.ahead_start, ring.ahead_end) == intervals(ahead)
        assert as_intervals(ring.behind_start, ring.behind_end) == intervals(behind)


def test_a_sync_in_the_second_pass_adds_the_written_arc_behind_the_cursor() -> None:
    """validation run seq-20k's sync 3, by hand (docs/validation.md, miss 2): the whole ring
    queued behind the cursor at sync 2, the cursor 6,350 pages into it since, the writer
    10,000 pages on from 12,400.  The queue is [6350, W); the writer's arc, 12,400 round
    the end to 6,016, meets it in W - 12,400 pages; what it adds lies behind the cursor."""
    W = 16384.0
    ring = Ring(one(12400.0), one(W), one(0.0), one(W), np.zeros((1, ARCS)),
                np.zeros((1, ARCS)), np.zeros((1, ARCS)), np.zeros((1, ARCS)))  # fmt: skip
    ring.behind_end[0, 0] = W
    new, R_h, R_n, ring = ring_sync(ring, one(0.0), one(W - 6350.0), one(10000.0), one(W))
    assert new[0] == 10000.0 - (W - 12400.0)
    assert ring.cursor[0] == 6350.0
    assert R_h[0] == W - 6350.0 and R_n[0] == new[0]
    assert ring.position[0] == 12400.0 + 10000.0 - W


def test_a_ring_at_the_start_of_ram_is_modelled_by_position() -> None:
    """The same guest with its ring at two positions: the model without positions gives one
    answer, the positional one two (docs/model.md, "Dirtying")."""
    base = {"ram_size": "512MiB", "working_set_size": "64MiB", "write_pattern": "sequential",
            "dirty_rate": 20000, "max_bandwidth": "128MiB/s", "link_bandwidth": "1.67GB/s",
            "qemu_version": "7.2"}  # fmt: skip
    rows = [{**base, "working_set_layout": layout, "ring_position": at}
            for layout in ("mixed", "start") for at in (0, 8192)]  # fmt: skip
    syncs = sweep.simulate(rows).iterations.groupby("scenario_id", sort=False)
    added = [tuple(g["new_dirty_pages"].round(3)) for _, g in syncs]
    assert added[0] == added[1]  # mixed: where the writer is does not enter
    assert added[2] != added[3]  # start: it does

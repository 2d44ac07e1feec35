"""Where a sequential ring's queued pages lie: the positional model (validation miss 2).

A guest that rewrites its working set in order (``write_pattern: sequential``) dirties an arc
just behind its writer, and how many of those pages a sync finds new depends on where the
queued pages lie: ahead of the scan cursor (the cursor meets them later in this pass),
behind it (after the cursor wraps), or nowhere near the arc.  No count captures that: at
the same queue length a sync may add every page written or hardly any.  With
``working_set_layout: start`` the working set is the start of RAM, so the scan walks it in
address order at the start of every pass, and a page's position in the working set
(0 <= x < W) is its place in the scan.

The model keeps, for such a scenario, the writer's position and the queued working-set
pages as a few arcs (intervals of [0, W), at most :data:`ARCS` per set), split at the
cursor into ``ahead`` and ``behind``.  Between syncs it tracks only the counts (``R_h``
ahead, ``R_n`` behind, as every scenario does): the scan sends queued pages in address
order, so at the next sync the pages still queued are the *last* ``R_h`` pages of ``ahead``
and the last ``R_n`` of ``behind``, and the cursor stands just after the last page it sent
(where the last sync left it if it sent none).  The sync then ORs the arc written since the
last sync into the queue, exactly as QEMU ORs the dirty log into the migration bitmap: a
written page counts as new unless it is still queued.

Assumptions (docs/model.md, "Dirtying"): the writer moves at the scenario's effective rate,
constant between syncs, and wraps at the working set's end; the working set is contiguous
and sent before the other data in the first pass; page positions are expected values
(floats), like every page count of the model; a queue of more than ``ARCS`` arcs keeps its
last ones apart and merges the first into one, which counts the gaps between those as
queued: positions then blur, the counts stay exact.  Checked page by page against QEMU's
own sync counts (docs/validation.md, miss 2).

Every function takes (n, k) arrays of interval starts and ends, one row per scenario, an
empty interval having ``end == start``; the scalar reference calls them with n = 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import numerics as num

__all__ = ["ARCS", "Ring", "ring_setup", "ring_sync"]

ARCS = 4

Arcs = tuple[np.ndarray, np.ndarray]  # (starts, ends), each (n, k)


class Ring(NamedTuple):
    """What a ring's last sync left, one row per scenario."""

    position: np.ndarray  # the writer's page, 0 <= x < W
    cursor: np.ndarray  # the scan's place in the working set; W: past it, in the rest of RAM
    ahead_pages: np.ndarray  # R_h and R_n as the sync left them (the arcs may hold more)
    behind_pages: np.ndarray
    ahead_start: np.ndarray  # the queued pages ahead of the cursor, (n, ARCS) intervals
    ahead_end: np.ndarray
    behind_start: np.ndarray  # ... and behind it (the scan meets them after it wraps)
    behind_end: np.ndarray


def ring_setup(W: np.ndarray, page: np.ndarray, written: np.ndarray) -> Ring:
    """The setup sync's queue: every page of the working set, ahead of the cursor at 0; the
    writer at `page` when migrate started, `written` pages on (during setup)."""
    n = len(W)
    position = np.fmod(page + written, np.where(W > 0, W, 1.0))
    ahead_end = np.zeros((n, ARCS))
    ahead_end[:, 0] = W
    zeros, empty = np.zeros(n), np.zeros((n, ARCS))
    return Ring(position, zeros, W.copy(), zeros.copy(), empty, ahead_end, empty.copy(),
                empty.copy())  # fmt: skip


def measure(arcs: Arcs) -> np.ndarray:
    """Pages in each set."""
    start, end = arcs
    return np.add.reduce(end - start, axis=1)


def clip(arcs: Arcs, lo: np.ndarray, hi: np.ndarray) -> Arcs:
    """Each set's pages in [lo, hi)."""
    start = np.maximum(arcs[0], lo[:, None])
    end = np.minimum(arcs[1], hi[:, None])
    return start, np.maximum(end, start)


def last_pages(arcs: Arcs, keep: np.ndarray) -> Arcs:
    """The last `keep` pages of each set in address order: those the scan has not sent
    (the set's intervals sorted by start, as :func:`union` leaves them)."""
    start, end = arcs
    length = end - start
    before = np.cumsum(length, axis=1) - length
    drop = np.maximum(np.add.reduce(length, axis=1) - keep, 0.0)
    cut = np.minimum(np.maximum(drop[:, None] - before, 0.0), length)
    return start + cut, end


def sent_end(arcs: Arcs, keep: np.ndarray) -> np.ndarray:
    """Where the scan stands once it has sent all but the last `keep` pages of each set:
    just after the last page it sent (-inf where it sent none: callers ask only where it
    did)."""
    start = arcs[0]
    cut = last_pages(arcs, keep)[0] - start
    return np.max(np.where(cut > 0.0, start + cut, -np.inf), axis=1, initial=-np.inf)


def written_arc(position: np.ndarray, pages: np.ndarray, W: np.ndarray) -> Arcs:
    """The pages a writer at `position` writes in `pages` steps round a ring of W: one
    interval, or two where it passes the end."""
    end = position + np.minimum(pages, W)
    start = np.stack([position, np.zeros_like(position)], axis=1)
    stop = np.stack([np.minimum(end, W), np.maximum(end - W, 0.0)], axis=1)
    return start, np.maximum(stop, start)


def overlap(a: Arcs, b: Arcs) -> np.ndarray:
    """Pages in both sets (each a union of disjoint intervals)."""
    lo = np.maximum(a[0][:, :, None], b[0][:, None, :])
    hi = np.minimum(a[1][:, :, None], b[1][:, None, :])
    return np.add.reduce(np.maximum(hi - lo, 0.0).reshape(len(lo), -1), axis=1)


def union(a: Arcs, b: Arcs, most: int) -> Arcs:
    """Both sets as at most `most` disjoint intervals sorted by start, empty ones last;
    past `most`, the first intervals merge into one (a superset: see the module's text)."""
    start = np.concatenate([a[0], b[0]], axis=1)
    end = np.concatenate([a[1], b[1]], axis=1)
    empty = end <= start
    start, end = np.where(empty, np.inf, start), np.where(empty, -np.inf, end)
    order = np.argsort(start, axis=1, kind="stable")
    start, end = np.take_along_axis(start, order, 1), np.take_along_axis(end, order, 1)
    reach = np.maximum.accumulate(end, axis=1)
    before = np.concatenate([np.full((len(start), 1), -np.inf), reach[:, :-1]], axis=1)
    opens = (start > before) & np.isfinite(start)  # a gap before it: a new interval
    group = np.cumsum(opens, axis=1) - 1
    # more than `most`: keep the last most - 1 apart, merge the first ones into one
    count = group[:, -1:] + 1
    group = np.maximum(group - np.maximum(count - most, 0), 0)
    out_start, out_end = np.zeros((len(start), most)), np.zeros((len(start), most))
    for g in range(most):
        member = (group == g) & np.isfinite(start)
        lo = np.min(np.where(member, start, np.inf), axis=1)
        hi = np.max(np.where(member, end, -np.inf), axis=1)
        found = np.isfinite(lo)
        out_start[:, g] = np.where(found, lo, 0.0)
        out_end[:, g] = np.where(found, hi, 0.0)
    return out_start, out_end


def capped(arcs: Arcs, most: int = ARCS) -> Arcs:
    """The set as at most `most` intervals (see union)."""
    return union(arcs, (arcs[0][:, :0], arcs[1][:, :0]), most)


def ring_sync(
    ring: Ring, R_h: np.ndarray, R_n: np.ndarray, written: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Ring]:
    """A sync for ring scenarios: the pages it adds, the new R_h and R_n (the queue split at
    the cursor again) and what the model keeps of the ring.

    `R_h`/`R_n` are how many of the pages ahead of and behind the cursor at the last sync
    are still queued, `written` the page writes since the last sync."""
    ahead, behind = (ring.ahead_start, ring.ahead_end), (ring.behind_start, ring.behind_end)
    # Where the scan stands: just after the last page it sent since the last sync.  It sends
    # the pages ahead of it, then (in the first pass) the rest of RAM, then wraps into
    # `behind`.  In the rest of RAM it is at W: in the first pass the pages ahead are the
    # whole working set, which ends there, and the rest of RAM is not queued again.
    cursor = np.where(num.below(R_h, ring.ahead_pages), sent_end(ahead, R_h), ring.cursor)
    cursor = np.where(num.below(R_n, ring.behind_pages), sent_end(behind, R_n), cursor)
    queued = union(last_pages(ahead, R_h), last_pages(behind, R_n), 2 * ARCS)
    arc = written_arc(ring.position, written, W)
    new = np.maximum(measure(arc) - overlap(arc, queued), 0.0)
    queued = union(queued, arc, 2 * ARCS + 2)
    ahead, behind = clip(queued, cursor, W), clip(queued, np.zeros_like(W), cursor)
    R_h, R_n = measure(ahead), measure(behind)
    ahead, behind = capped(ahead), capped(behind)
    position = np.mod(ring.position + written, W)
    return new, R_h, R_n, Ring(position, cursor, R_h, R_n, *ahead, *behind)

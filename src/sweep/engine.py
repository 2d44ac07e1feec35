"""The vectorised engine: QEMU's pre-copy loop for a whole chunk of scenarios at once.

It runs the algorithm of :mod:`sweep.reference` (read that first: same names, same order of
operations) with every quantity a numpy array over the scenarios still running.  One pass of
:func:`run_chunk`'s loop is one pass of ``migration_thread``'s loop for every scenario; masks
and index sets replace the reference's branches.

What makes it fast is :func:`jump_quiet_windows`.  Between two syncs, a counter window that
starts with a fresh rate budget and meets no decision is *regular*: it sends the same bytes
(two 50 ms slices at link speed, or the budget), lasts exactly 100 ms, and only moves counters
linearly.  The jump computes how many regular windows lie ahead before anything can happen
(a decision point within float noise of the threshold, the time cap, the 5 s timer) and takes
them in one step.  The jump is conservative: it stops early, and the ordinary passes make
every decision exactly as the reference does.

Finished scenarios are masked out of every event and compacted away once they are a fifth of
the arrays, so the cost follows the scenarios still running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import numerics as num
from .params import label_codes, version_flags
from .reference import (
    CANCELLED_ITERATIONS,
    CANCELLED_TIME,
    COMPLETED,
    FINISHED,
    PAUSED,
    POSTCOPY,
    SYNC_EXACT,
    SYNC_FINAL,
    SYNC_POSTCOPY,
    SYNC_SETUP,
    SYNC_TIMER,
    C,
)
from .ring import Ring, ring_setup, ring_sync
from .workloads import distinct_pages, newly_dirty, pattern_code

__all__ = ["ChunkResult", "run_chunk"]

# Per-scenario constants (set once) and state (changed by the loop); compaction moves both.
CONSTANTS = (
    "idx", "P", "wire_normal", "W", "pattern", "w", "L", "budget", "DL", "Bsw",
    "S_dev", "setup_us", "sync_us", "stop_us", "max_time_us", "postcopy_time_us", "horizon_us",
    "max_iterations", "auto_converge",
    "dirty_limit", "quota", "periodic", "sync_le", "complete_le", "device_in_transferred",
    "trigger_pct", "ac_initial", "ac_increment", "ac_max", "tailslow", "zero_last", "hot_first",
    "L_first",
    "postcopy_at", "postcopy_first", "manager_at", "L_post", "pause_at", "pause_delay_us",
)  # fmt: skip
STATE = (
    "t", "R_z", "R_c", "R_h", "R_n", "X", "precopy_bytes", "normal_pages", "zero_pages",
    "sync_count",
    "win_start", "win_bytes", "win_pages", "budget_spent", "threshold", "bandwidth",
    "expected_downtime", "mbps", "pages_per_second", "dirty_pages_rate",
    "dirty_bytes_last_sync", "num_dirty_pages_period", "bytes_xfer_prev", "period_start",
    "time_last_bitmap_sync", "dirty_rate_high_cnt", "throttle", "dirty_limit_active",
    "prev_sync_cnt", "next_tick", "ring_lapped", "first_pass", "live", "stopping",
    "paused_at",  # when the manager stopped the guest (NEVER: running)
    # the slices' rate (first_touch: still first_pass_bandwidth) and a regular window at it,
    # constant but for one change when the first pass ends (Engine.first_touch_ends)
    "first_touch", "slice_rate", "slice_bytes", "one_slice", "cap1", "window_bytes",
    "regular_threshold", "regular_bandwidth", "regular_bw_per_ms", "regular_mbps",
)  # fmt: skip
# A ring modelled by position (ring.py): which scenarios are such rings, their writers and
# their queued pages as arcs split at the cursor; only in chunks that hold one
# (Engine.positional), None elsewhere.
RING_STATE = tuple(f"ring_{name}" for name in Ring._fields)
OPTIONAL = ("positional", *RING_STATE)

ITERATION_FIELDS = (
    "dirty_sync_count", "sync_reason", "time_us", "transferred_bytes", "remaining_bytes",
    "new_dirty_pages", "dirty_pages_rate", "bandwidth_bytes_per_ms", "threshold_bytes",
    "expected_downtime_ms", "throttle_pct",
)  # fmt: skip
SAMPLE_FIELDS = (
    "time_us", "transferred_bytes", "remaining_bytes", "mbps", "pages_per_second",
    "threshold_bytes", "expected_downtime_ms", "dirty_pages_rate", "dirty_sync_count",
    "throttle_pct",
)  # fmt: skip
SUMMARY_FIELDS = (
    "status", "total_time_ms", "setup_time_ms", "downtime_ms", "dirty_sync_count",
    "transferred_bytes", "precopy_bytes", "downtime_bytes", "postcopy_bytes",
    "postcopy_time_ms", "paused_time_ms", "normal_pages", "zero_pages", "threshold_bytes",
    "expected_downtime_ms", "throttle_pct", "dirty_pages_rate",
)  # fmt: skip

NEVER = np.iinfo(np.int64).max // 4  # a time no scenario reaches
# How far above the threshold a decision point must provably be for a jump to pass it, as a
# share of the queue: ten times the tolerance of the decisions (num.EPS, against a threshold
# below the queue), 10^5 times the float noise between a jump and the reference's steps.
# A guard of one page made the jump stop at points a fraction of a page above the
# threshold, cycle after cycle: two passes per sync (docs/performance.md, eleventh session).
GUARD = 10 * num.EPS


def flat(mask: np.ndarray) -> np.ndarray:
    """Indices of the true entries (np.flatnonzero without its Python-level overhead).

    Arrays are gathered with these, not with the mask: boolean indexing branches on every
    entry, and in a chunk that mixes behaviours the masks are unpredictable, which made it
    4-8 times slower than an integer gather (docs/performance.md, step 8)."""
    return mask.nonzero()[0]


class State:
    """Every array of the chunk, one attribute each; rows are the scenarios still in the loop."""

    def compact(self) -> None:
        keep = flat(self.live | self.stopping)
        for name in CONSTANTS + STATE + OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[keep])

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class ChunkResult:
    """Raw engine output: one summary row per scenario, event rows keyed by scenario position."""

    summary: dict[str, np.ndarray]
    iterations: dict[str, np.ndarray]
    samples: dict[str, np.ndarray] | None
    # passes of the loop: a chunk costs about passes x a fixed cost per pass (numpy calls)
    # plus a cost per scenario and pass; its slowest scenario sets the count
    passes: int = 0


class _Recorder:
    """Collects event rows (syncs, samples) as lists of arrays, concatenated once at the end."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = ("row", *fields)
        self.parts: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}

    def add(self, **columns: np.ndarray) -> None:
        for name in self.fields:
            self.parts[name].append(np.asarray(columns[name]))

    def table(self) -> dict[str, np.ndarray]:
        """Rows grouped by scenario; a stable sort keeps each scenario's rows in the order
        they happened (every pass appends its events in time order)."""
        cols = {f: np.concatenate(p) if p else np.empty(0) for f, p in self.parts.items()}
        order = np.argsort(cols["row"], kind="stable")
        return {f: c[order] for f, c in cols.items()}


def _init(frame: pd.DataFrame) -> State:
    """Scenario columns -> engine arrays, then QEMU's setup (ram_init_bitmaps + first sync)."""
    st = State()
    n = len(frame)
    f8 = lambda name: frame[name].to_numpy().astype(np.float64)  # noqa: E731
    i8 = lambda name: frame[name].to_numpy().astype(np.int64)  # noqa: E731

    st.idx = np.arange(n)
    st.P = f8("page_size_bytes")
    st.wire_normal = st.P + C.PAGE_HEADER_BYTES
    N = f8("ram_size_bytes") / st.P
    st.W = f8("working_set_size_bytes") / st.P
    zero = N - f8("nonzero_size_bytes") / st.P
    pattern_of, patterns = label_codes(frame["write_pattern"])
    st.pattern = pattern_code([str(p) for p in patterns])[pattern_of]
    st.w = f8("dirty_rate_pages_per_s")
    st.L = f8("link_bandwidth_bytes_per_s") / 1e6
    first = f8("first_copy_bandwidth_bytes_per_s") / 1e6
    st.L_first = np.where(first != 0, first, st.L)
    st.L_post = f8("postcopy_bandwidth_bytes_per_s") / 1e6  # 0: as the final copy
    # reference.slice_rate: the old queue starts as every page, all in their first pass,
    # sent at first_pass_bandwidth (0: as first_copy_bandwidth)
    first_pass = f8("first_pass_bandwidth_bytes_per_s") / 1e6
    st.slice_rate = np.where(first_pass != 0, first_pass, st.L_first)
    st.first_touch = st.slice_rate != st.L
    st.budget = (i8("max_bandwidth_bytes_per_s") // C.XFER_LIMIT_RATIO).astype(np.float64)
    st.DL = f8("downtime_limit_ms")
    st.Bsw = f8("switchover_bandwidth_bytes_per_s")
    st.S_dev = f8("device_state_size_bytes")
    to_us = lambda ms: np.round(ms * 1000.0).astype(np.int64)  # noqa: E731  (reference.us)
    st.setup_us = to_us(f8("setup_time_ms"))
    st.sync_us = to_us(f8("sync_time_ms"))
    st.stop_us = to_us(f8("stop_time_ms"))
    st.max_time_us = to_us(f8("max_time_s") * 1000.0)
    st.max_iterations = i8("max_iterations")
    # the manager's rules, 0 (never) as NEVER: a sync count or a time each
    never = lambda values: np.where(values > 0, values, NEVER)  # noqa: E731
    # the sync count at which the manager asks for postcopy, and at which it acts at a loop
    # top at all (asks, or cancels after max_iterations): a jump never crosses that loop top
    st.postcopy_at = never(i8("postcopy_after_iterations"))
    st.manager_at = np.minimum(st.postcopy_at, _capped_at(st))
    # ... and the time at which it asks (libvirt's --timeout-postcopy); a jump passes no
    # decision point at or after it, nor after max_time
    st.postcopy_time_us = never(to_us(f8("postcopy_after_time_s") * 1000.0))
    st.horizon_us = np.minimum(st.max_time_us, st.postcopy_time_us)
    # the sync whose event makes the manager stop the guest (bitmap_sync), and when it does:
    # at a set time (libvirt's --timeout) or as that sync ends, whichever comes first
    st.pause_at = never(i8("pause_after_iterations"))
    st.paused_at = never(to_us(f8("pause_after_time_s") * 1000.0))
    st.pause_delay_us = to_us(f8("pause_delay_ms"))
    st.auto_converge = frame["auto_converge"].to_numpy().astype(bool)
    st.dirty_limit = frame["dirty_limit"].to_numpy().astype(bool)
    st.quota = f8("vcpus") * f8("vcpu_dirty_limit_mib_per_s") * 2**20 / st.P
    periodic, st.device_in_transferred, st.sync_le, st.complete_le, st.postcopy_first = (
        version_flags(
            frame["qemu_version"], "periodic_sync", "device_state_in_transferred",
            "sync_when_equal", "complete_when_equal", "postcopy_first",
        )
    )  # fmt: skip
    st.periodic = periodic & st.auto_converge
    st.trigger_pct = f8("throttle_trigger_threshold_pct")
    st.ac_initial = i8("cpu_throttle_initial_pct")
    st.ac_increment = i8("cpu_throttle_increment_pct")
    st.ac_max = i8("max_cpu_throttle_pct")
    st.tailslow = frame["cpu_throttle_tailslow"].to_numpy().astype(bool)

    st.one_slice = np.zeros(n, dtype=bool)
    for name in ("slice_bytes", "cap1", "window_bytes", "regular_threshold",
                 "regular_bandwidth", "regular_bw_per_ms", "regular_mbps"):  # fmt: skip
        setattr(st, name, np.zeros(n))
    regular_window(st, slice(None))

    zeros = lambda: np.zeros(n)  # noqa: E731
    st.R_z, st.R_c, st.R_h = zero, N - zero - st.W, st.W.copy()
    st.R_n = zeros()  # added by the last sync: behind the scan cursor
    layout_of, layouts = label_codes(frame["zero_page_layout"])
    st.zero_last = np.array([str(v) == "end" for v in layouts], dtype=bool)[layout_of]
    layout_of, layouts = label_codes(frame["working_set_layout"])
    st.hot_first = np.array([str(v) == "start" for v in layouts], dtype=bool)[layout_of]
    # reference.positional: a ring at the start of RAM, modelled by position (ring.py)
    positional = (st.pattern == pattern_code(["sequential"])[0]) & st.hot_first & (st.W > 0)
    st.positional = ring = None
    if np.count_nonzero(positional):
        st.positional = positional
        ring = ring_setup(st.W, f8("ring_position_pages"), st.w * st.setup_us / 1e6)
    for name in Ring._fields:
        setattr(st, f"ring_{name}", None if ring is None else getattr(ring, name))
    st.X, st.precopy_bytes, st.normal_pages, st.zero_pages = zeros(), zeros(), zeros(), zeros()
    st.sync_count = np.zeros(n, dtype=np.int64)
    st.win_start = np.zeros(n, dtype=np.int64)
    st.win_bytes, st.win_pages = zeros(), zeros()
    st.budget_spent = np.zeros(n, dtype=bool)
    st.threshold, st.bandwidth = zeros(), zeros()
    st.expected_downtime = st.DL.copy()
    st.mbps, st.pages_per_second = zeros(), zeros()
    st.dirty_pages_rate, st.dirty_bytes_last_sync = zeros(), zeros()
    st.num_dirty_pages_period, st.bytes_xfer_prev = zeros(), zeros()
    st.dirty_rate_high_cnt = np.zeros(n, dtype=np.int64)
    st.throttle = np.zeros(n, dtype=np.int64)
    st.dirty_limit_active = np.zeros(n, dtype=bool)
    st.prev_sync_cnt = np.full(n, 2, dtype=np.int64)
    st.next_tick = np.where(st.periodic, C.PERIODIC_SYNC_US, NEVER).astype(np.int64)
    st.ring_lapped = np.ones(n, dtype=bool)  # the setup queue is the whole working set
    st.first_pass = np.ones(n, dtype=bool)  # the old queue holds pages never sent
    st.live = np.ones(n, dtype=bool)
    st.stopping = np.zeros(n, dtype=bool)  # switched over, completion pending (Engine.run)
    st.t = st.setup_us.copy()
    st.time_last_bitmap_sync = st.t.copy()
    st.period_start = st.t.copy()
    return st


def _capped_at(st: State, i: np.ndarray | slice = slice(None)) -> np.ndarray:
    """The sync count at which the manager cancels (more than max_iterations), or NEVER."""
    cap = st.max_iterations[i]
    return np.where(cap > 0, cap + 1, NEVER)


def switchover_threshold(
    bandwidth: np.ndarray, Bsw: np.ndarray, DL: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """migration_update_counters: expected_bw_per_ms (avail-switchover-bandwidth when set,
    else the window's bandwidth) and threshold_size = expected_bw_per_ms * downtime_limit."""
    expected_bw_per_ms = np.where(Bsw != 0, Bsw / 1000.0, bandwidth)
    return expected_bw_per_ms, num.floor(expected_bw_per_ms * DL)


def window_rates(
    win_bytes: np.ndarray, elapsed_ms: np.ndarray | float, Bsw: np.ndarray, DL: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """migration_update_counters' rates of one window: bandwidth (bytes/ms),
    expected_bw_per_ms, threshold_size and Mbit/s."""
    bandwidth = win_bytes / elapsed_ms
    expected_bw_per_ms, threshold = switchover_threshold(bandwidth, Bsw, DL)
    return bandwidth, expected_bw_per_ms, threshold, win_bytes * 8.0 / (elapsed_ms / 1000.0) / 1e6


def expected_downtime_due(dirty_pages_rate: np.ndarray, win_bytes: np.ndarray) -> np.ndarray:
    """migration_update_counters recomputes expected-downtime only once a dirty rate is known
    and the window sent more than EXPECTED_DOWNTIME_MIN_BYTES."""
    return (dirty_pages_rate != 0) & (win_bytes > C.EXPECTED_DOWNTIME_MIN_BYTES)


def tick_syncs(sync_count: np.ndarray, prev_sync_cnt: np.ndarray) -> np.ndarray:
    """cpu_throttle_dirty_sync_timer_tick syncs only if no sync happened since the previous
    tick (and not in the first pass)."""
    return (sync_count > 1) & (sync_count == prev_sync_cnt)


def regular_window(st: State, i: np.ndarray | slice) -> None:
    """What a window that starts with a fresh budget and decides nothing does at the slices'
    rate, for the scenarios `i`: computed exactly as ram_save_iterate and update_counters
    would."""
    st.slice_bytes[i] = slice_bytes = st.slice_rate[i] * C.MAX_WAIT_US
    budget = st.budget[i]
    limited = budget != 0
    left1 = np.where(limited, budget, np.inf)
    st.one_slice[i] = one_slice = limited & num.at_most(left1, slice_bytes)
    st.cap1[i] = cap1 = np.where(one_slice, left1, slice_bytes)
    left2 = np.where(limited, budget - cap1, np.inf)
    second_bound = limited & num.at_most(left2, slice_bytes)
    cap2 = np.where(one_slice, 0.0, np.where(second_bound, left2, slice_bytes))
    st.window_bytes[i] = window_bytes = np.where(one_slice, cap1, cap1 + cap2)
    # its counters, but for its pages and expected downtime
    (
        st.regular_bandwidth[i], st.regular_bw_per_ms[i], st.regular_threshold[i],
        st.regular_mbps[i],
    ) = window_rates(window_bytes, C.BUFFER_DELAY_US / 1000.0, st.Bsw[i], st.DL[i])  # fmt: skip


def old_data(
    cold: np.ndarray, hot: np.ndarray, hot_first: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The old queue's data pages in two parts: those the scan meets first (the working
    set, for working_set_layout "start"), then the rest.  Only chunks that hold such a
    scenario keep the first part as a segment of its own (Engine.ahead)."""
    return np.where(hot_first, hot, 0.0), cold + np.where(hot_first, 0.0, hot)


def scan_order(
    zero: np.ndarray, data: np.ndarray, new: np.ndarray, zero_last: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The queues as the scan meets them (reference.segments, but for the working set that
    old_data puts ahead): old pages with the zero pages among them (or after them, for
    zero_page_layout "end"), then the zero pages, then the last sync's."""
    return np.where(zero_last, data, zero + data), np.where(zero_last, zero, 0.0), new


def wire_order(
    zero: np.ndarray, data: np.ndarray, new: np.ndarray, wire_normal: np.ndarray,
    zero_last: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Wire bytes of the queues (in pages) in scan order: a zero page costs ZERO_PAGE_BYTES,
    any other page and its header wire_normal."""
    return scan_order(zero * C.ZERO_PAGE_BYTES, data * wire_normal, new * wire_normal, zero_last)


class Scan:
    """The queue in scan order: three or four segments (wire bytes, pages), each of one cost
    per page (Engine.segments).

    Pages sent are then a piecewise-linear function of bytes sent, which is what lets a jump
    cross from the pages left at a sync to the pages it added.  Arrays are (k, n): one row
    per segment.  Queries take positions of shape (n,) or a stack (q, n) of several, so that
    one set of numpy calls answers them all (the jump's cost is mostly calls, not elements).
    """

    def __init__(
        self, wire: np.ndarray, pages: np.ndarray, start: np.ndarray | None = None,
        before: np.ndarray | None = None, per_byte: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.wire, self.pages = wire, pages
        if start is None:
            start, before = np.empty_like(wire), np.empty_like(pages)  # before each segment
            # the running sums written out: np.cumsum along the first axis takes one element
            # at a time, 50 times slower than two whole-row additions (same sums, same order)
            for total, rows in ((start, wire), (before, pages)):
                total[0] = 0.0
                total[1] = rows[0]
                for k in range(2, len(rows)):
                    np.add(total[k - 1], rows[k - 1], out=total[k])
            live = wire > 0
            per_byte = np.where(live, pages / np.where(live, wire, 1.0), 0.0)
        self.start, self.before, self.per_byte = start, before, per_byte

    def take(self, rows: np.ndarray) -> Scan:
        pick = lambda a: a.take(rows, axis=1)  # noqa: E731  (a[:, rows] is several times slower)
        return Scan(
            pick(self.wire), pick(self.pages), pick(self.start), pick(self.before),
            pick(self.per_byte),
        )  # fmt: skip

    def pages_sent(self, sent: np.ndarray) -> np.ndarray:
        """Pages gone after `sent` bytes, for each position (shape of `sent`)."""
        sent = sent[..., None, :]
        part = np.minimum(np.maximum(sent - self.start, 0.0), self.wire)
        return np.add.reduce(part * self.per_byte, axis=-2)

    def bytes_for(self, pages: np.ndarray) -> np.ndarray:
        """Bytes to send until `pages` pages have gone (the inverse of pages_sent, for
        0 <= pages <= all; -inf below 0)."""
        want = pages[..., None, :]
        part = np.minimum(np.maximum(want - self.before, 0.0), self.pages)
        some = self.pages > 0
        cost = np.where(some, self.wire / np.where(some, self.pages, 1.0), 0.0)
        return np.where(pages < 0, -np.inf, np.add.reduce(part * cost, axis=-2))

    def left(self, sent: np.ndarray) -> np.ndarray:
        """The share of each segment still queued after `sent` bytes (exactly 0 when sent)."""
        part = np.minimum(np.maximum(sent - self.start, 0.0), self.wire)
        gone = num.at_most(self.wire, part)
        return np.where(gone, 0.0, (self.wire - part) / np.where(self.wire > 0, self.wire, 1.0))


class Engine:
    """The loop of :mod:`sweep.reference`, one method per QEMU function, over index sets."""

    def __init__(self, frame: pd.DataFrame, record_samples: bool = False) -> None:
        self.st = _init(frame)
        n = len(self.st)
        self.out = {name: np.full(n, np.nan) for name in SUMMARY_FIELDS}
        self.out["status"] = np.zeros(n, dtype=np.int8)
        self.out["dirty_sync_count"] = np.zeros(n, dtype=np.int64)
        self.out["throttle_pct"] = np.zeros(n, dtype=np.int64)
        self.out["postcopy_bytes"] = np.zeros(n)
        self.downtime_ms = np.full(n, np.nan)
        self.downtime_bytes = np.zeros(n)
        self.total_time_ms = np.full(n, np.nan)
        self.syncs = _Recorder(ITERATION_FIELDS)
        self.samples = _Recorder(SAMPLE_FIELDS) if record_samples else None
        st = self.st
        # any slice still at first_pass_bandwidth (none unless it differs from the link)
        self.touching = bool(np.count_nonzero(st.first_touch))
        # any manager that asks for postcopy at a set time
        self.timed_postcopy = bool(np.count_nonzero(st.postcopy_time_us != NEVER))
        # any guest the manager may stop (after a sync count, or at a set time)
        self.pausing = bool(np.count_nonzero((st.pause_at != NEVER) | (st.paused_at != NEVER)))
        # any working set the first pass sends ahead of the other data: a fourth segment
        # (segments, scan), which costs some 9 % where no scenario needs it
        self.ahead = bool(np.count_nonzero(st.hot_first))
        # any ring modelled by position (ring.py): its syncs count by arcs
        self.positional = st.positional is not None
        self.bitmap_sync(np.arange(n), SYNC_SETUP, cost=False)

    # --- helpers --------------------------------------------------------------------------
    def remaining(self, i: np.ndarray | slice) -> np.ndarray:
        st = self.st
        return st.R_z[i] + st.R_c[i] + st.R_h[i] + st.R_n[i]

    def wire_bytes(self, i: np.ndarray | slice) -> np.ndarray:
        st = self.st
        return (
            st.R_z[i] * C.ZERO_PAGE_BYTES + (st.R_c[i] + st.R_h[i] + st.R_n[i]) * st.wire_normal[i]
        )

    def segments(self, i: np.ndarray | slice) -> tuple[np.ndarray, ...]:
        """Wire bytes of the queues in scan order (reference.segments): the working set
        first if the chunk has any that goes first (Engine.ahead), then the old data with the
        zero pages among them, the zero pages (zero_page_layout "end"), the last sync's."""
        st = self.st
        wire_normal, zero_last = st.wire_normal[i], st.zero_last[i]
        if not self.ahead:
            data = st.R_c[i] + st.R_h[i]
            return wire_order(st.R_z[i], data, st.R_n[i], wire_normal, zero_last)
        ahead, data = old_data(st.R_c[i], st.R_h[i], st.hot_first[i])
        return ahead * wire_normal, *wire_order(st.R_z[i], data, st.R_n[i], wire_normal, zero_last)

    def queue_shares(
        self, shares: np.ndarray | Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each queue's share (hot, data, zero, new) from one share per segment (in the order
        of segments): the zero pages go with the data unless they lie at the end, the working
        set with the data unless it goes first."""
        st = self.st
        if self.ahead:
            hot, data, zero, new = shares
            hot = np.where(st.hot_first, hot, data)
        else:
            data, zero, new = shares
            hot = data
        return hot, data, np.where(st.zero_last, zero, data), new

    def first_touch_ends(self) -> None:
        """reference.slice_rate: once the old queue holds no first-pass page (it emptied, or
        a sync found it empty and ended the first pass) slices go at the link's rate, and a
        regular window changes with them.  Run before each slice is costed."""
        if not self.touching:
            return
        st = self.st
        old = st.R_z + st.R_c + st.R_h
        j = flat(st.first_touch & ((old == 0.0) | ~st.first_pass))
        if j.size:
            st.first_touch[j] = False
            st.slice_rate[j] = st.L[j]
            regular_window(st, j)
            self.touching = bool(np.count_nonzero(st.first_touch & st.live))

    def effective_rate(self, i: np.ndarray) -> np.ndarray:
        st = self.st
        rate = st.w[i] * (1.0 - st.throttle[i] / 100.0)
        return np.where(st.dirty_limit_active[i], np.minimum(rate, st.quota[i]), rate)

    # --- ram.c ------------------------------------------------------------------------------
    def bitmap_sync(self, i: np.ndarray, reason: int | np.ndarray, cost: bool = True) -> None:
        """migration_bitmap_sync for the scenarios `i` (a reason for all, or one each)."""
        if i.size == 0:
            return
        st = self.st
        sync_count = st.sync_count[i] + 1
        st.sync_count[i] = sync_count
        t = st.t[i]
        writing_us = t - st.time_last_bitmap_sync[i]
        if self.pausing:  # reference.writing_us: or until the manager stopped the guest
            writing_us = np.maximum(np.minimum(t, st.paused_at[i]) - st.time_last_bitmap_sync[i], 0)
        interval_s = writing_us / 1e6
        rate = self.effective_rate(i)
        pattern, W = st.pattern[i], st.W[i]
        logged = distinct_pages(pattern, interval_s, rate, W)
        R_z, R_c, R_h, R_n = st.R_z[i], st.R_c[i], st.R_h[i], st.R_n[i]
        send_rate = st.bandwidth[i] * 1000.0 / st.wire_normal[i]  # pages/s, the last window
        lapped = st.ring_lapped[i] | ~num.below(rate, send_rate)
        new = newly_dirty(pattern, logged, R_h + R_n, W, lapped)
        st.ring_lapped[i] = num.at_most(W, logged)
        # the cursor has wrapped into the last sync's pages: they are ahead of it now
        wrapped = R_z + R_c + R_h == 0.0
        st.first_pass[i] &= ~wrapped
        R_h, R_n = np.where(wrapped, R_n, R_h), np.where(wrapped, new, R_n + new)
        if self.positional:
            k = flat(st.positional[i])
            if k.size:
                new[k], R_h[k], R_n[k] = self.ring_sync(i[k], rate[k] * interval_s[k])
        st.R_h[i], st.R_n[i] = R_h, R_n
        st.num_dirty_pages_period[i] += new
        st.time_last_bitmap_sync[i] = t
        queued_bytes = (R_z + R_c + R_h + R_n) * st.P[i]  # remaining(i), from the gathered queues
        st.dirty_bytes_last_sync[i] = queued_bytes
        j = i[flat(t > st.period_start[i] + C.RATE_PERIOD_US)]  # rate periods that close
        if j.size:
            self.trigger_throttle(j)
            tj = st.t[j]
            st.dirty_pages_rate[j] = num.floor(
                st.num_dirty_pages_period[j] * 1e6 / (tj - st.period_start[j])
            )
            st.period_start[j] = tj
            st.num_dirty_pages_period[j] = 0.0
            st.bytes_xfer_prev[j] = st.X[j]
        self.syncs.add(
            row=st.idx[i],
            dirty_sync_count=sync_count,
            sync_reason=np.full(i.size, reason, dtype=np.int8),
            time_us=t,
            transferred_bytes=st.X[i],
            remaining_bytes=queued_bytes,
            new_dirty_pages=new,
            dirty_pages_rate=st.dirty_pages_rate[i],
            bandwidth_bytes_per_ms=st.bandwidth[i],
            threshold_bytes=st.threshold[i],
            expected_downtime_ms=st.expected_downtime[i],
            throttle_pct=st.throttle[i],
        )
        if cost:
            st.t[i] = t + st.sync_us[i]
        # the manager stops the guest on this sync's event, pause_delay after it ends
        # (reference.bitmap_sync); an array of reasons holds timer and exact syncs only
        ending = not isinstance(reason, np.ndarray) and reason in (SYNC_FINAL, SYNC_POSTCOPY)
        if self.pausing and not ending:
            j = i[sync_count == st.pause_at[i]]
            st.paused_at[j] = np.minimum(st.paused_at[j], st.t[j] + st.pause_delay_us[j])

    def ring_sync(self, j: np.ndarray, written: np.ndarray) -> tuple[np.ndarray, ...]:
        """reference.ring_sync for the rings `j` of a sync: the pages it adds and the new
        R_h, R_n (the rest of what ring_sync returns is kept in the state)."""
        st = self.st
        ring = Ring(*(getattr(st, name)[j] for name in RING_STATE))
        new, R_h, R_n, ring = ring_sync(ring, st.R_h[j], st.R_n[j], written, st.W[j])
        for name, value in zip(RING_STATE, ring, strict=True):
            getattr(st, name)[j] = value
        return new, R_h, R_n

    def trigger_throttle(self, i: np.ndarray) -> None:
        """migration_trigger_throttle for scenarios closing a rate period."""
        st = self.st
        aid = st.auto_converge[i] | st.dirty_limit[i]
        i = i[aid]
        if i.size == 0:
            return
        bytes_xfer_period = st.X[i] - st.bytes_xfer_prev[i]
        bytes_dirty_period = st.num_dirty_pages_period[i] * st.P[i]
        bytes_dirty_threshold = bytes_xfer_period * st.trigger_pct[i] / 100.0
        high = num.below(bytes_dirty_threshold, bytes_dirty_period)
        st.dirty_rate_high_cnt[i[high]] += 1
        fire = high & (st.dirty_rate_high_cnt[i] >= 2)
        j = i[fire]
        if j.size == 0:
            return
        st.dirty_rate_high_cnt[j] = 0
        ac = st.auto_converge[j]
        self.throttle_guest_down(
            j[ac], bytes_dirty_period[fire][ac], bytes_dirty_threshold[fire][ac]
        )
        st.dirty_limit_active[j[~ac]] = True

    def throttle_guest_down(self, i: np.ndarray, dirty: np.ndarray, threshold: np.ndarray) -> None:
        """mig_throttle_guest_down with integer percentages."""
        st = self.st
        now = st.throttle[i]
        step = st.ac_increment[i].copy()
        slow = st.tailslow[i] & (now > 0)
        if slow.any():
            cpu_now = 100 - now[slow]
            ideal = num.floor(cpu_now * (threshold[slow] / dirty[slow])).astype(np.int64)
            step[slow] = np.minimum(cpu_now - ideal, step[slow])
        new = np.where(now == 0, st.ac_initial[i], np.minimum(now + step, st.ac_max[i]))
        st.throttle[i] = np.minimum(np.maximum(new, 1), 99)  # np.clip: slow on small arrays

    # --- migration.c ---------------------------------------------------------------------------
    def update_counters(self, i: np.ndarray) -> None:
        """migration_update_counters for the scenarios `i`, whose window is at least 100 ms old."""
        st = self.st
        if i.size == 0:
            return
        elapsed_ms = (st.t[i] - st.win_start[i]) / 1000.0
        self.window_counters(i, st.win_bytes[i], st.win_pages[i], elapsed_ms)
        if self.samples is not None:
            self.record_sample(i, st.t[i], st.X[i], self.remaining(i), st.pages_per_second[i])
        st.win_start[i] = st.t[i]
        st.win_bytes[i] = 0.0
        st.win_pages[i] = 0.0
        st.budget_spent[i] = False

    def window_counters(
        self, i: np.ndarray, win_bytes: np.ndarray, win_pages: np.ndarray, elapsed_ms: object
    ) -> None:
        """What migration_update_counters derives from one window's bytes and length."""
        if i.size == 0:
            return
        st = self.st
        st.bandwidth[i], expected_bw_per_ms, st.threshold[i], st.mbps[i] = window_rates(
            win_bytes, elapsed_ms, st.Bsw[i], st.DL[i]
        )
        st.pages_per_second[i] = win_pages / (elapsed_ms / 1000.0)
        update = flat(expected_downtime_due(st.dirty_pages_rate[i], win_bytes))
        st.expected_downtime[i[update]] = num.floor(
            st.dirty_bytes_last_sync[i[update]] / expected_bw_per_ms[update]
        )

    def record_sample(
        self, i: np.ndarray, t: np.ndarray, x: np.ndarray, pages: np.ndarray,
        pages_per_second: np.ndarray,
    ) -> None:  # fmt: skip
        """One sample per entry of `i` (entries may repeat): what update_counters polls when a
        window closes at time t with x bytes sent and `pages` queued; the other counters as
        they stand."""
        st = self.st
        self.samples.add(
            row=st.idx[i], time_us=t, transferred_bytes=x, remaining_bytes=pages * st.P[i],
            mbps=st.mbps[i], pages_per_second=pages_per_second,
            threshold_bytes=st.threshold[i], expected_downtime_ms=st.expected_downtime[i],
            dirty_pages_rate=st.dirty_pages_rate[i], dirty_sync_count=st.sync_count[i],
            throttle_pct=st.throttle[i],
        )  # fmt: skip

    def iteration_run(self, active: np.ndarray, timer: np.ndarray, asked: np.ndarray) -> None:
        """migration_iteration_run: maybe sync, maybe switch over or start postcopy, else one
        iterate slice.

        `timer`: the scenarios whose 5 s tick syncs first (timer_tick); their syncs join
        this pass's, and the queue they leave is judged after them.  `asked`: the scenarios
        whose manager asked for postcopy at this loop top (manager_cancels)."""
        st = self.st
        pending = self.remaining(slice(None)) * st.P
        threshold = st.threshold
        want = active & self.sync_wanted(pending, threshold, st.sync_le)
        if timer.size:
            want[timer] = False  # judged below, after the timer's sync
            exact = flat(want)
            i = np.concatenate([timer, exact])
            reason = np.repeat(np.array([SYNC_TIMER, SYNC_EXACT]), [timer.size, exact.size])
        else:
            i, reason = flat(want), SYNC_EXACT
        if i.size:
            self.bitmap_sync(i, reason)
            pending[i] = self.remaining(i) * st.P[i]
        if timer.size:
            again = timer[self.sync_wanted(pending[timer], threshold[timer], st.sync_le[timer])]
            if again.size:
                self.bitmap_sync(again, SYNC_EXACT)
                pending[again] = self.remaining(again) * st.P[again]
        switch = active & np.where(
            st.complete_le,
            num.at_most(pending, threshold),
            (pending == 0) | num.below(pending, threshold),
        )
        go = active & ~switch
        if asked.size:  # postcopy, at a decision that does not switch over (10.1+: first)
            postcopy = np.zeros_like(active)
            postcopy[asked] = True
            postcopy &= active & (st.postcopy_first | ~switch)
            switch &= ~postcopy
            go &= ~postcopy
            self.postcopy_start(flat(postcopy))
        # migration_completion reads only the scenario's own state and ends it, so the
        # scenarios that switch over leave the loop now and complete in batches (run).
        st.live &= ~switch
        st.stopping |= switch
        self.ram_save_iterate(go)

    @staticmethod
    def sync_wanted(pending: np.ndarray, threshold: np.ndarray, sync_le: np.ndarray) -> np.ndarray:
        """The migration thread syncs when pending is below the threshold (at most, 10.1+)."""
        return np.where(sync_le, num.at_most(pending, threshold), num.below(pending, threshold))

    def ram_save_iterate(self, go: np.ndarray) -> None:
        """One slice for every scenario in `go` (the common path: no index sets)."""
        self.first_touch_ends()
        st = self.st
        limited = st.budget != 0
        budget_left = np.where(limited, st.budget - st.win_bytes, np.inf)
        budget_bound = limited & num.at_most(budget_left, st.slice_bytes)
        cap = np.where(budget_bound, budget_left, st.slice_bytes)
        need = self.wire_bytes(slice(None))
        empties = num.at_most(need, cap)
        sent = np.where(empties, need, cap)
        # what the slice takes of each queue, in scan order (reference.shares)
        left = cap
        shares = []
        for wire in self.segments(slice(None)):
            whole = num.at_most(wire, left)
            shares.append(np.where(whole, 1.0, left / np.where(wire > 0, wire, 1.0)))
            left = np.where(whole, left - wire, 0.0)
        partial, whole_or_none = go & ~empties, np.where(go, 1.0, 0.0)
        shares = [np.where(partial, share, whole_or_none) for share in shares]
        hot_share, data_share, zero_share, new_share = self.queue_shares(shares)
        rate = st.slice_rate
        duration = np.where(
            empties,
            num.ceil(need / rate),
            np.where(budget_bound, np.minimum(num.ceil(cap / rate), C.MAX_WAIT_US), C.MAX_WAIT_US),
        ).astype(np.int64)
        spent = np.where(empties, budget_bound & num.same(need, cap), budget_bound)
        sent = np.where(go, sent, 0.0)  # scenarios not in `go` move by zero
        zero = st.R_z * zero_share
        normal = (st.R_c + st.R_h) * data_share + st.R_n * new_share
        if self.ahead:  # the working set's own share where it went first (0 elsewhere)
            normal += st.R_h * (hot_share - data_share)
        st.R_z -= zero
        st.R_c -= st.R_c * data_share
        st.R_h -= st.R_h * hot_share
        st.R_n -= st.R_n * new_share
        st.zero_pages += zero
        st.normal_pages += normal
        st.X += sent
        st.precopy_bytes += sent
        st.win_bytes += sent
        st.win_pages += zero + normal
        st.t += np.where(go, duration, 0)
        st.budget_spent = np.where(go, spent, st.budget_spent)

    def completion(self, i: np.ndarray) -> None:
        """migration_completion: stop, final sync, copy the rest and the devices at link speed
        (pages still in their first pass at first_copy_bandwidth)."""
        st = self.st
        downtime_start = st.t[i].copy()
        st.t[i] += st.stop_us[i]
        self.bitmap_sync(i, SYNC_FINAL)
        final_bytes, first_bytes = self.send_all(i)
        st.X[i] += final_bytes + st.S_dev[i]
        copy_us = first_bytes / st.L_first[i] + (final_bytes - first_bytes + st.S_dev[i]) / st.L[i]
        downtime_ms = (st.t[i] - downtime_start) / 1000.0 + copy_us / 1000.0
        rows = st.idx[i]
        self.downtime_ms[rows] = downtime_ms
        self.downtime_bytes[rows] = final_bytes
        self.total_time_ms[rows] = downtime_start / 1000.0 + downtime_ms
        # QEMU's downtime starts at its own stop; a guest the manager stopped stood still since
        paused = st.paused_at[i] < downtime_start
        stood = (downtime_start - st.paused_at[i]) / 1000.0
        self.out["paused_time_ms"][rows[paused]] = stood[paused]
        self.finish(i[~paused], COMPLETED)
        self.finish(i[paused], PAUSED)

    def send_all(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count every queued page of scenarios `i` as sent; their wire bytes, and how many
        of those are still in the first pass (sent at first_copy_bandwidth)."""
        st = self.st
        wire = self.wire_bytes(i)
        *old, _ = self.segments(i)  # all but the last sync's pages
        first_bytes = np.where(st.first_pass[i], sum(old[1:], old[0]), 0.0)
        st.zero_pages[i] += st.R_z[i]
        st.normal_pages[i] += st.R_c[i] + st.R_h[i] + st.R_n[i]
        st.R_z[i] = st.R_c[i] = st.R_h[i] = st.R_n[i] = 0.0
        return wire, first_bytes

    def postcopy_start(self, i: np.ndarray) -> None:
        """postcopy_start and the postcopy phase in closed form (reference.postcopy_start)."""
        st = self.st
        downtime_start = st.t[i].copy()
        st.t[i] += st.stop_us[i]
        self.bitmap_sync(i, SYNC_POSTCOPY)
        st.X[i] += st.S_dev[i]
        downtime_ms = (st.t[i] - downtime_start) / 1000.0 + st.S_dev[i] / st.L[i] / 1000.0
        postcopy_bytes, first_bytes = self.send_all(i)
        st.X[i] += postcopy_bytes
        L_post = st.L_post[i]
        copy_us = np.where(
            L_post > 0,
            postcopy_bytes / np.where(L_post > 0, L_post, 1.0),
            first_bytes / st.L_first[i] + (postcopy_bytes - first_bytes) / st.L[i],
        )
        rows = st.idx[i]
        self.downtime_ms[rows] = downtime_ms
        self.out["postcopy_bytes"][rows] = postcopy_bytes
        self.out["postcopy_time_ms"][rows] = copy_us / 1000.0
        self.total_time_ms[rows] = downtime_start / 1000.0 + downtime_ms + copy_us / 1000.0
        self.finish(i, POSTCOPY)

    def timer_tick(self) -> np.ndarray:
        """cpu_throttle_dirty_sync_timer_tick for scenarios whose 5 s tick is due; returns
        those whose tick syncs now.

        The tick and the migration thread's next step happen at the same time t, so
        iteration_run runs these syncs in one batch with its own, each scenario's timer sync
        first: one bitmap_sync per pass instead of two, which a pass's fixed cost feels
        (docs/performance.md, step 15).  A tick that comes due again right after its sync
        (a sync longer than the 5 s period) must sync before the migration thread runs: then
        every due tick is taken here, one at a time, as the reference does."""
        st = self.st
        i = flat(st.live & (st.t >= st.next_tick))
        if i.size == 0:
            return i
        sync_count = st.sync_count[i]
        stale = tick_syncs(sync_count, st.prev_sync_cnt[i])
        synced_at = st.t[i] + np.where(stale, st.sync_us[i], 0)
        if np.count_nonzero(synced_at >= st.next_tick[i] + C.PERIODIC_SYNC_US):
            self.ticks_in_turn(i)
            return i[:0]
        st.prev_sync_cnt[i] = sync_count + stale  # the count after the sync
        st.next_tick[i] += C.PERIODIC_SYNC_US
        return i[stale]

    def ticks_in_turn(self, i: np.ndarray) -> None:
        """Every due tick of the scenarios `i`, each tick's sync at once."""
        st = self.st
        while i.size:
            stale = tick_syncs(st.sync_count[i], st.prev_sync_cnt[i])
            self.bitmap_sync(i[stale], SYNC_TIMER)  # charged like the reference's
            st.prev_sync_cnt[i] = st.sync_count[i]
            st.next_tick[i] += C.PERIODIC_SYNC_US
            i = flat(st.live & (st.t >= st.next_tick))

    def manager_cancels(self) -> np.ndarray:
        """guestperf's policy: cancel after max_time or more than max_iterations syncs; ask
        for postcopy from postcopy_after_iterations syncs or postcopy_after_time (libvirt's
        --timeout-postcopy).  Returns who is asked."""
        st = self.st
        self.cancel(flat(st.live & (st.t >= st.max_time_us)), CANCELLED_TIME)
        due = st.sync_count >= st.manager_at
        if self.timed_postcopy:
            due |= st.t >= st.postcopy_time_us
        due = flat(st.live & due)  # few rows, if any
        if due.size == 0:
            return due
        count = st.sync_count[due]
        many = count >= _capped_at(st, due)
        self.cancel(due[many], CANCELLED_ITERATIONS)
        asked = (count >= st.postcopy_at[due]) | (st.t[due] >= st.postcopy_time_us[due])
        return due[~many & asked]

    def cancel(self, i: np.ndarray, status: int) -> None:
        if i.size:
            self.total_time_ms[self.st.idx[i]] = self.st.t[i] / 1000.0
            self.finish(i, status)

    def finish(self, i: np.ndarray, status: int) -> None:
        """Copy the summary of scenarios `i` out and mask them from every later event."""
        st = self.st
        rows = st.idx[i]
        out = self.out
        out["status"][rows] = status
        out["setup_time_ms"][rows] = st.setup_us[i] / 1000.0
        out["dirty_sync_count"][rows] = st.sync_count[i]
        transferred = st.X[i]
        if status in FINISHED:
            transferred = np.where(
                st.device_in_transferred[i], transferred, transferred - st.S_dev[i]
            )
        out["transferred_bytes"][rows] = transferred
        out["precopy_bytes"][rows] = st.precopy_bytes[i]
        out["normal_pages"][rows] = st.normal_pages[i]
        out["zero_pages"][rows] = st.zero_pages[i]
        out["threshold_bytes"][rows] = st.threshold[i]
        out["expected_downtime_ms"][rows] = st.expected_downtime[i]
        out["throttle_pct"][rows] = st.throttle[i]
        out["dirty_pages_rate"][rows] = st.dirty_pages_rate[i]
        st.live[i] = False

    # --- the shortcut ----------------------------------------------------------------------------
    def jump_quiet_windows(self) -> None:
        """Take every run of slices and regular windows that nothing can interrupt.

        A window is regular when it starts with a fresh budget (t == win_start): it then sends
        ``cap1 + cap2`` bytes in exactly 100 ms, the same as every following one, so the queue,
        the counters and the clock move linearly.  Without a rate limit a window already
        started (after a sync, say) is finished the same way: its remaining slices are full
        50 ms slices.  The jump passes every decision point (the start of each slice) at which
        the queue is provably (by GUARD of it) above the threshold of every window it
        crosses, and lands on the first one that is not: there the ordinary pass decides
        exactly as the reference does.  When the slice from there would empty the queue (so
        that the next loop top syncs), it takes that slice too, also inside a window already
        started (which then closes after it if its 100 ms are up).  It passes only decision
        points before max_time and before the next timer tick that would sync, so it may land
        on the first one at or after them: the manager and the timer then act at that loop
        top, as in the reference.
        """
        self.first_touch_ends()
        st = self.st
        fresh = (st.t == st.win_start) & (st.win_bytes == 0)
        ready = st.live & (fresh | (st.budget == 0)) & (st.sync_count < st.manager_at)
        if np.count_nonzero(ready):
            self.jump(ready, fresh)

    def jump(self, ready: np.ndarray, fresh: np.ndarray) -> None:
        """The closed-form jump for the scenarios `ready` (see jump_quiet_windows).

        Bytes from here: the started window's last `m` slices (m = 0 for a fresh window),
        then regular windows of ``window_bytes``, the first slice of each being ``cap1``.

        It works on whole arrays, every row, and masks the rows that do not jump: nearly
        every scenario still running jumps in every pass, and a gather and a scatter per
        field cost more numpy calls than the arithmetic on the few rows that do not
        (docs/performance.md, step 14).  A row that does not jump sends 0 bytes, which
        leaves its queues exactly as they are (a share of 1.0, a change of 0.0).
        """
        st = self.st
        one_slice, cap1, window_bytes = st.one_slice, st.cap1, st.window_bytes

        # The queue as the scan meets it: up to three segments of different wire cost per
        # page, so pages sent are a piecewise-linear function of bytes sent (`Scan`).
        scan, pages = self.scan()
        t, slice_bytes, sync_count = st.t, st.slice_bytes, st.sync_count
        elapsed = t - st.win_start
        m = np.where(fresh, 0, -((elapsed - C.BUFFER_DELAY_US) // C.MAX_WAIT_US))
        base = m * slice_bytes
        # A decision point after b bytes is quiet while the queue then stays above the guard
        # (threshold / P pages, plus GUARD of the queue now), i.e. b < limit.  Each window's
        # points are judged against the threshold of the window before it: until the current
        # window closes (after `closes` bytes) the current one; in the next window the
        # threshold the current one sets when it closes (a started window's, computed as
        # window_counters will, or a regular window's); after that a regular window's.  The
        # GUARD margin absorbs float noise; `room` keeps a page queued (a slice that empties
        # the queue ends early: an ordinary pass takes it).
        close_ms = (elapsed + m * C.MAX_WAIT_US) / 1000.0
        _, closing = switchover_threshold((st.win_bytes + base) / close_ms, st.Bsw, st.DL)
        regular_threshold = st.regular_threshold
        closing = np.where(fresh, regular_threshold, closing)
        P = st.P
        guard = pages * GUARD
        now, after_close, regular, room = scan.bytes_for(
            np.array([pages - st.threshold / P - guard, pages - closing / P - guard,
                      pages - regular_threshold / P - guard, pages - 1.0])
        )  # fmt: skip
        # Zones and limits are counted from `base` (the end of the started window), so that
        # a limit on a zone's edge gives a whole number of windows exactly.
        now, after_close, regular = now - base, after_close - base, regular - base
        closes = np.where(fresh, window_bytes, 0.0)
        next_closes = closes + window_bytes
        # A zone is quiet when its last decision point is: the current window's last point is
        # its second slice (a started window's, the slice before `closes`); the next one's, its
        # second slice.  The first point at or past the limit of the first zone that is not
        # quiet ends the jump.
        second_point = np.where(one_slice, 0.0, cap1)
        last_now = np.where(fresh, second_point, -slice_bytes)
        last_after = closes + second_point
        limit = np.where(
            now <= last_now,
            now,
            np.where(
                after_close <= last_after,
                np.maximum(closes, after_close),
                np.maximum(next_closes, regular),
            ),
        )
        queued = np.add.reduce(scan.wire, axis=0)
        if self.touching:
            # At first_pass_bandwidth only while the old queue holds first-pass pages: every
            # slice passed must start before its end (where the last segment, the last
            # sync's pages, starts), by GUARD of the queue.
            old_end = scan.start[-1] - queued * GUARD
            limit = np.where(st.first_touch, np.minimum(limit, old_end - base), limit)
        # Regular decision points: window j's first slice starts base + j windows' bytes in,
        # its second cap1 later.  Count the quiet ones of each kind.
        x = limit / window_bytes
        first = np.maximum(np.ceil(x), 0.0)
        second = np.where(one_slice, first, np.maximum(np.ceil(x - cap1 / window_bytes), 0.0))
        # The 5 s timer: a tick syncs only if no sync happened since the previous tick (and
        # not in the first pass).  No sync happens inside a jump, so the jump may cross ticks
        # up to the first one that would sync.  Every decision point passed lies before
        # min(max_time, that tick): the landing may be one slice (one window, for one-slice
        # windows) after it.
        next_tick = st.next_tick
        synced = sync_count > 1  # not in the first pass
        stale = tick_syncs(sync_count, st.prev_sync_cnt)
        syncing_tick = np.where(
            st.periodic & synced,
            np.where(stale, next_tick, next_tick + C.PERIODIC_SYNC_US),
            NEVER,
        )
        horizon = np.minimum(st.horizon_us, syncing_tick) - t
        step = np.where(one_slice, C.BUFFER_DELAY_US, C.MAX_WAIT_US)
        span = horizon + step - 1 - m * C.MAX_WAIT_US
        # Whole windows, then one more first slice when first == second + 1.
        k = np.minimum(second, np.floor((room - base) / window_bytes))
        k = np.maximum(np.minimum(k, span // C.BUFFER_DELAY_US), 0).astype(np.int64)
        extra = (
            (first > k)
            & ~one_slice
            & (base + k * window_bytes + cap1 <= room)
            & (k * C.BUFFER_DELAY_US + C.MAX_WAIT_US <= span)
        ).astype(np.int64)
        # The slice from the landing point may empty the queue (it ends early; the next loop
        # top syncs).  Without a rate limit, take it too when that point is quiet and before
        # the horizon, and the queue fits the slice with a page to spare.
        whole = base + k * window_bytes  # bytes to the end of the last whole window
        lands = k * window_bytes + extra * cap1  # the landing point, from base (as limit)
        need = queued - (whole + extra * cap1)
        empties = (
            (st.budget == 0)
            & (lands < limit)
            & (need + st.wire_normal <= slice_bytes)
            & ((m + extra) * C.MAX_WAIT_US + k * C.BUFFER_DELAY_US < horizon)
        )
        # A started window is taken whole or not at all: its slices' decision points (the
        # last at base - slice_bytes) must be quiet, its bytes leave a page, it ends in time.
        finishes = (m > 0) & (-slice_bytes < limit) & (base <= room) & (span >= 0)
        take = ready & np.where(fresh, (k >= 1) | (extra == 1) | empties, finishes)
        # Or the queue empties inside it (queued < base): `full` whole slices, then one of
        # `last` bytes that empties it.  Taken when each of their decision points is quiet
        # and before the horizon, and `last` leaves a page to spare either way.  Few rows are
        # such: they are worked on apart, as the index set `d` (the drained windows, below).
        d = flat(ready & (queued < base))
        if d.size:
            slice_d, wire_normal = slice_bytes[d], st.wire_normal[d]
            full = np.floor(queued[d] / slice_d)
            last = queued[d] - full * slice_d
            drains = (
                (full * slice_d - base[d] < now[d])
                & (last >= wire_normal)
                & (last + wire_normal <= slice_d)
                & (full * C.MAX_WAIT_US < horizon[d])
            )
            if self.touching:  # the last slice starts in the first pass, or none does
                drains &= ~st.first_touch[d] | (full * slice_d < old_end[d])
            d, full, last = d[drains], full[drains], last[drains]
            take[d] = True
        if not np.count_nonzero(take):
            return

        # Bytes of the landing window: its lone first slice, then the emptying slice, if any.
        tail = np.where(extra == 1, cap1, 0.0) + np.where(empties, need, 0.0)
        ends = np.where(empties, num.ceil(need / st.slice_rate), 0.0).astype(np.int64)
        sent = np.where(take, whole + tail, 0.0)
        sent[d] = queued[d]
        gone = scan.pages_sent(np.array([sent, whole, whole - window_bytes, base]))
        x0 = None if self.samples is None else st.X.copy()
        self.send_from(scan, sent)
        started = flat(take & finishes)
        if started.size:  # the started window closes: its counters (and sample) first
            b, prefix_pages = base[started], gone[3][started]
            self.window_counters(
                started, st.win_bytes[started] + b, st.win_pages[started] + prefix_pages,
                close_ms[started],
            )  # fmt: skip
            if self.samples is not None:
                self.record_sample(
                    started, t[started] + m[started] * C.MAX_WAIT_US, x0[started] + b,
                    pages[started] - prefix_pages, st.pages_per_second[started],
                )  # fmt: skip
        win_start = t + m * C.MAX_WAIT_US + k * C.BUFFER_DELAY_US
        landed = win_start + extra * C.MAX_WAIT_US + ends
        win_pages = gone[0] - gone[1]
        if d.size:  # a drained window goes on, with the slices' bytes and pages
            rate = st.slice_rate[d]
            landed[d] = t[d] + (full * C.MAX_WAIT_US + num.ceil(last / rate)).astype(np.int64)
            win_start[d] = st.win_start[d]
            tail[d] = st.win_bytes[d] + queued[d]
            win_pages[d] = st.win_pages[d] + gone[0][d]
        st.win_start = np.where(take, win_start, st.win_start)
        st.t = np.where(take, landed, t)
        st.win_bytes = np.where(take, tail, st.win_bytes)
        st.win_pages = np.where(take, win_pages, st.win_pages)
        if d.size:  # ... and closes after the slice that emptied the queue if its time is up
            self.update_counters(d[landed[d] - st.win_start[d] >= C.BUFFER_DELAY_US])
        # Ticks crossed were no-ops: as timer_tick would, note the sync count, move on.
        crossed = take & (next_tick <= landed)
        after = next_tick + ((landed - next_tick) // C.PERIODIC_SYNC_US + 1) * C.PERIODIC_SYNC_US
        st.next_tick = np.where(crossed, np.minimum(after, syncing_tick), next_tick)
        st.prev_sync_cnt = np.where(crossed, sync_count, st.prev_sync_cnt)
        # Counters of the last whole regular window, for those that crossed one: constants of
        # the scenario (regular_window) but for its pages and the expected downtime.
        w = take & (k >= 1)
        st.bandwidth = np.where(w, st.regular_bandwidth, st.bandwidth)
        st.threshold = np.where(w, st.regular_threshold, st.threshold)
        st.mbps = np.where(w, st.regular_mbps, st.mbps)
        window_pages = gone[1] - gone[2]
        pages_per_second = window_pages / (C.BUFFER_DELAY_US / 1000.0 / 1000.0)
        st.pages_per_second = np.where(w, pages_per_second, st.pages_per_second)
        w &= expected_downtime_due(st.dirty_pages_rate, window_bytes)
        expected = num.floor(st.dirty_bytes_last_sync / st.regular_bw_per_ms)
        st.expected_downtime = np.where(w, expected, st.expected_downtime)
        if self.samples is not None:
            i = flat(take)
            t0 = (t + m * C.MAX_WAIT_US)[i]
            self.record_jump_samples(
                i, k[i], t0, (x0 + base)[i], base[i], window_bytes[i], pages[i], scan.take(i)
            )

    def send_from(self, scan: Scan, sent: np.ndarray) -> None:
        """Take `sent` bytes (one entry per row, 0 for none) from the queues in scan order
        (no clock, no window counters)."""
        st = self.st
        hot, data, zero, new = self.queue_shares(scan.left(sent))
        st.zero_pages += st.R_z * (1.0 - zero)
        st.normal_pages += (st.R_c + st.R_h) * (1.0 - data) + st.R_n * (1.0 - new)
        if self.ahead:  # as in ram_save_iterate
            st.normal_pages += st.R_h * (data - hot)
        st.R_z *= zero
        st.R_c *= data
        st.R_h *= hot
        st.R_n *= new
        st.X += sent
        st.precopy_bytes += sent

    def scan(self) -> tuple[Scan, np.ndarray]:
        """Every scenario's queues in scan order, in wire bytes and pages, and the pages
        queued (remaining(), from the same arrays)."""
        st = self.st
        zero, cold, hot, new = st.R_z, st.R_c, st.R_h, st.R_n
        last, wire_normal = st.zero_last, st.wire_normal
        if not self.ahead:
            data = cold + hot
            pages = np.array(scan_order(zero, data, new, last))
            wire = np.array(wire_order(zero, data, new, wire_normal, last))
        else:
            ahead, data = old_data(cold, hot, st.hot_first)
            pages = np.array([ahead, *scan_order(zero, data, new, last)])
            wire = np.array([ahead * wire_normal, *wire_order(zero, data, new, wire_normal, last)])
        return Scan(wire, pages), zero + cold + hot + new

    def record_jump_samples(self, i, k, t0, x0, base, window_bytes, pages, scan) -> None:  # noqa: ANN001
        """One sample per jumped regular window, as the reference would have polled them."""
        rows = np.repeat(np.arange(i.size), k)
        step = np.arange(rows.size) - np.repeat(np.cumsum(k) - k, k) + 1
        ii = i[rows]
        end = base[rows] + step * window_bytes[rows]
        sent, before = scan.take(rows).pages_sent(np.array([end, end - window_bytes[rows]]))
        self.record_sample(
            ii, t0[rows] + step * C.BUFFER_DELAY_US, x0[rows] + step * window_bytes[rows],
            pages[rows] - sent, (sent - before) / (C.BUFFER_DELAY_US / 1e6),
        )  # fmt: skip

    # --- migration_thread ------------------------------------------------------------------------
    def run(self) -> ChunkResult:
        st = self.st
        passes = 0
        with np.errstate(all="ignore"):  # finished rows may hold inf/nan until compaction
            while len(st):
                passes += 1
                self.jump_quiet_windows()
                asked = self.manager_cancels()
                timer = self.timer_tick()
                self.iteration_run(st.live.copy(), timer, asked)
                self.update_counters(flat(st.live & (st.t - st.win_start >= C.BUFFER_DELAY_US)))
                sleepy = st.live & st.budget_spent
                if np.count_nonzero(sleepy):  # .any() costs several times more per call
                    st.t = np.where(
                        sleepy, np.maximum(st.t, st.win_start + C.BUFFER_DELAY_US), st.t
                    )
                    self.update_counters(flat(sleepy))
                stopping = np.count_nonzero(st.stopping)
                if stopping and (stopping * 5 >= len(st) or not st.live.any()):
                    self.completion(flat(st.stopping))
                    st.stopping[:] = False
                if np.count_nonzero(~(st.live | st.stopping)) * 5 >= len(st):
                    st.compact()
        out = dict(self.out)
        out["downtime_ms"] = self.downtime_ms
        out["downtime_bytes"] = self.downtime_bytes
        out["total_time_ms"] = self.total_time_ms
        return ChunkResult(
            summary=out,
            iterations=self.syncs.table(),
            samples=None if self.samples is None else self.samples.table(),
            passes=passes,
        )


def run_chunk(frame: pd.DataFrame, record_samples: bool = False) -> ChunkResult:
    """Simulate every scenario of a canonical frame (see :func:`sweep.params.normalize`)."""
    return Engine(frame.reset_index(drop=True), record_samples).run()

"""The scalar reference model: QEMU's pre-copy loop, one scenario, one step at a time.

This is the oracle.  It follows ``migration_thread`` literally: every pass of the loop runs
``migration_iteration_run`` (pending estimate, maybe a dirty-bitmap sync, the switchover
decision, one iterate slice of at most 50 ms), then ``migration_update_counters`` and the
rate limiter's sleep.  It is slow on purpose (plain Python, no shortcuts), and the vectorised
engine (:mod:`sweep.engine`) must reproduce it: integer counters exactly, floats to 1e-9.

Conventions shared with the engine (docs/model.md has the full list of assumptions):

* Time is an integer number of microseconds since the QMP ``migrate`` command, so window and
  period boundaries (100 ms, 1 s, 5 s) are compared exactly.
* Page counts are expected values (floats): a slice sends ``cap / cost-per-page`` pages, and
  the zero, cold and hot queues drain in proportion to their share (the scan visits them
  mixed, [I] in the spec).
* The dirty log is harvested at the start of a sync; the sync then costs ``sync_time`` on the
  migration thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import numerics as num
from .params import PERIODIC_SYNC_MS, parse_version
from .ring import ring_setup, ring_sync
from .workloads import distinct_pages, newly_dirty, pattern_code

__all__ = ["Constants", "ReferenceMigration", "simulate_reference"]


@dataclass(frozen=True)
class Constants:
    """QEMU's fixed numbers (spec, 'Defaults table'), in the model's units."""

    BUFFER_DELAY_US: int = 100_000  # migration_update_counters window and rate-limit window
    # ram_save_iterate's time slice.  Assumption: exactly 50 ms; QEMU compares whole
    # milliseconds with `> MAX_WAIT` every 64 pages, so its slices last about 51 ms.
    MAX_WAIT_US: int = 50_000
    XFER_LIMIT_RATIO: int = 10  # windows per second: budget = max_bandwidth / 10
    RATE_PERIOD_US: int = 1_000_000  # dirty-pages-rate / throttle period (strictly longer)
    EXPECTED_DOWNTIME_MIN_BYTES: float = 10_000.0
    PERIODIC_SYNC_US: int = PERIODIC_SYNC_MS * 1000  # 9.2+: auto-converge's forced sync
    PAGE_HEADER_BYTES: int = 8  # save_page_header without the block name
    ZERO_PAGE_BYTES: int = 9  # header + one byte


C = Constants()

# Status codes shared with the engine and the summary table.
# New codes go at the end: Parquet files store the names, reports compare codes.
RUNNING, COMPLETED, CANCELLED_TIME, CANCELLED_ITERATIONS, POSTCOPY, PAUSED = 0, 1, 2, 3, 4, 5
STATUS_NAMES = (
    "running", "completed", "cancelled-time", "cancelled-iterations", "completed-postcopy",
    "completed-paused",
)  # fmt: skip
# The migrations that finished: the guest runs on the destination, the device state was sent.
FINISHED = (COMPLETED, POSTCOPY, PAUSED)
# Why a sync ran, for the iterations table.
SYNC_SETUP, SYNC_EXACT, SYNC_TIMER, SYNC_FINAL, SYNC_POSTCOPY = 0, 1, 2, 3, 4
SYNC_REASONS = ("setup", "exact", "timer", "final", "postcopy")


def us(ms: float) -> int:
    """Milliseconds -> whole microseconds, the model's clock tick."""
    return round(ms * 1000.0)


@dataclass
class ReferenceMigration:
    """One migration.  Attribute names follow QEMU's MigrationState / RAMState fields."""

    row: dict[str, Any]
    record_samples: bool = False
    iterations: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.row
        self.version = parse_version(r["qemu_version"])
        self.P = float(r["page_size_bytes"])
        self.wire_normal = self.P + C.PAGE_HEADER_BYTES
        self.N = float(r["ram_size_bytes"]) / self.P
        self.W = float(r["working_set_size_bytes"]) / self.P
        zero = self.N - float(r["nonzero_size_bytes"]) / self.P
        self.pattern = pattern_code([r["write_pattern"]])
        self.w = float(r["dirty_rate_pages_per_s"])
        self.L = float(r["link_bandwidth_bytes_per_s"]) / 1e6  # bytes per microsecond
        first = float(r["first_copy_bandwidth_bytes_per_s"])
        self.L_first = first / 1e6 if first else self.L
        first_pass = float(r["first_pass_bandwidth_bytes_per_s"])  # 0: as first_copy
        self.L_pass = first_pass / 1e6 if first_pass else self.L_first
        self.L_post = float(r["postcopy_bandwidth_bytes_per_s"]) / 1e6  # 0: as the final copy
        self.budget = float(int(r["max_bandwidth_bytes_per_s"]) // C.XFER_LIMIT_RATIO)
        self.DL = float(r["downtime_limit_ms"])
        self.Bsw = float(r["switchover_bandwidth_bytes_per_s"])
        self.S_dev = float(r["device_state_size_bytes"])
        self.setup_us = us(r["setup_time_ms"])
        self.sync_us = us(r["sync_time_ms"])
        self.stop_us = us(r["stop_time_ms"])
        self.max_time_us = us(float(r["max_time_s"]) * 1000.0)
        self.max_iterations = int(r["max_iterations"])
        self.postcopy_after = int(r["postcopy_after_iterations"])
        self.postcopy_requested = False  # migrate-start-postcopy has been sent
        postcopy_time = float(r["postcopy_after_time_s"])  # libvirt's --timeout-postcopy
        self.postcopy_time_us = us(postcopy_time * 1000.0) if postcopy_time else None
        self.pause_after = int(r["pause_after_iterations"])
        # when the manager stops the guest: at a set time (libvirt's --timeout), or as the
        # pause_after_iterations-th sync ends (bitmap_sync), whichever comes first
        pause_time = float(r["pause_after_time_s"])
        self.paused_at: int | None = us(pause_time * 1000.0) if pause_time else None
        self.pause_delay_us = us(r["pause_delay_ms"])
        self.auto_converge = bool(r["auto_converge"])
        self.dirty_limit = bool(r["dirty_limit"])
        self.quota = float(r["vcpus"]) * float(r["vcpu_dirty_limit_mib_per_s"]) * 2**20 / self.P
        self.periodic = self.version.periodic_sync and self.auto_converge

        # qemu_savevm_state_setup -> ram_init_bitmaps: every page dirty, one sync.
        # Assumption: zero pages are the memory never written; the working set is non-zero.
        self.R_z, self.R_c, self.R_h = zero, self.N - zero - self.W, self.W
        # Pages the last sync added: behind the scan cursor, so sent after the others.
        self.R_n = 0.0
        self.zero_last = r["zero_page_layout"] == "end"
        # working_set_layout 'start': the working set lies at the start of RAM, so the first
        # pass's scan meets it before the other data
        self.hot_first = r["working_set_layout"] == "start"
        # ... and a ring there is modelled by position (ring.py): where its writer is and
        # where its queued pages lie, split at the scan cursor.  The writer starts at
        # ring_position and moves during setup at the guest's rate.
        self.positional = r["write_pattern"] == "sequential" and self.hot_first and self.W > 0
        if self.positional:
            self.ring = ring_setup(
                np.array([self.W]), np.array([float(r["ring_position_pages"])]),
                np.array([self.w * self.setup_us / 1e6]),
            )  # fmt: skip
        # The old queue still holds the first pass: pages the destination never received.
        self.first_pass = True
        # The writer's last arc covered the whole working set (true of the setup queue).
        self.ring_lapped = True
        self.t = 0
        self.X = 0.0  # migration_transferred_bytes: every byte on the wire
        self.precopy_bytes = self.downtime_bytes = self.postcopy_bytes = 0.0
        self.normal_pages = self.zero_pages = 0.0
        self.sync_count = 0
        self.status = RUNNING
        # migration_update_counters' window (update_iteration_initial_status at thread start)
        self.win_start, self.win_bytes, self.win_pages = 0, 0.0, 0.0
        self.budget_spent = False
        self.threshold = 0.0
        self.bandwidth = 0.0  # bytes per ms, the last window's estimate
        self.expected_downtime = self.DL  # migrate_fd_connect
        self.mbps = self.pages_per_second = 0.0
        # RAMState's rate period and the dirty log
        self.dirty_pages_rate = 0.0
        self.dirty_bytes_last_sync = 0.0
        self.num_dirty_pages_period = 0.0
        self.bytes_xfer_prev = 0.0
        self.dirty_rate_high_cnt = 0
        self.throttle = 0  # cpu-throttle-percentage
        self.dirty_limit_active = False
        self.prev_sync_cnt = 2  # cpu_throttle_dirty_sync_timer_tick's static
        self.next_tick = C.PERIODIC_SYNC_US
        self.downtime_ms = math.nan
        self.total_time_ms = math.nan
        self.postcopy_time_ms = math.nan
        self.paused_time_ms = math.nan

        self.t = self.setup_us
        self.time_last_bitmap_sync = self.period_start = self.t
        self.bitmap_sync(SYNC_SETUP, cost=False)

    # --- helpers ------------------------------------------------------------------------------
    @property
    def remaining(self) -> float:
        return self.R_z + self.R_c + self.R_h + self.R_n

    def wire_bytes(self) -> float:
        """Bytes on the wire to send every queued page."""
        return self.R_z * C.ZERO_PAGE_BYTES + (self.R_c + self.R_h + self.R_n) * self.wire_normal

    def segments(self) -> tuple[float, float, float, float]:
        """Wire bytes of the queues in the order the scan meets them.

        QEMU scans RAM in address order from a cursor that survives syncs, and a sync can
        only add pages the cursor has passed (pages ahead of it are still queued): so the
        pages queued before the last sync go first (the working set's ahead of the rest with
        working_set_layout 'start'; zero pages among them, or after them with
        zero_page_layout 'end'), then the pages the last sync added.  The old queue holds
        cold pages only in the first pass, so the working set's place matters only there.
        """
        hot = self.R_h * self.wire_normal if self.hot_first else 0.0
        data = (self.R_c + (0.0 if self.hot_first else self.R_h)) * self.wire_normal
        zero = self.R_z * C.ZERO_PAGE_BYTES
        new = self.R_n * self.wire_normal
        if self.zero_last:
            return hot, data, zero, new
        return hot, zero + data, 0.0, new

    def writing_us(self) -> int:
        """How long the guest ran since the last sync: until now, or until the manager
        stopped it."""
        end = self.t if self.paused_at is None else min(self.t, self.paused_at)
        return max(end - self.time_last_bitmap_sync, 0)

    def effective_rate(self) -> float:
        """Guest page writes per second after auto-converge's throttle and dirty-limit.

        Assumption: both act at once and exactly (a CPU-bound guest at throttle p runs and
        dirties a fraction 1 - p of the time; dirty-limit without measurement lag).
        """
        rate = self.w * (1.0 - self.throttle / 100.0)
        if self.dirty_limit_active:
            rate = min(rate, self.quota)
        return rate

    # --- ram.c ----------------------------------------------------------------------------------
    def bitmap_sync(self, reason: int, cost: bool = True) -> None:
        """migration_bitmap_sync: harvest the dirty log, count only newly dirty pages.

        Assumptions: the log is harvested at the start of the sync and cleared (TCG, or KVM
        without manual protection); how many written pages were still queued follows
        `workloads.newly_dirty` (independence, or a ring's geometry), or for a ring at the
        start of RAM its positions (`ring.py`).
        """
        self.sync_count += 1
        interval_s = self.writing_us() / 1e6
        rate = self.effective_rate()
        logged = float(distinct_pages(self.pattern, interval_s, rate, self.W)[0])
        send_rate = self.bandwidth * 1000.0 / self.wire_normal  # pages/s, the last window
        lapped = self.ring_lapped or not num.below(rate, send_rate)
        new = float(newly_dirty(self.pattern, logged, self.R_h + self.R_n, self.W, lapped)[0])
        self.ring_lapped = bool(num.at_most(self.W, logged))
        if self.positional:
            new = self.ring_sync(rate * interval_s)
        elif self.R_z + self.R_c + self.R_h == 0.0:
            # the cursor has wrapped into the last sync's pages: they are ahead of it now
            self.first_pass = False
            self.R_h, self.R_n = self.R_n, new
        else:
            self.R_n += new
        self.num_dirty_pages_period += new
        self.time_last_bitmap_sync = self.t
        self.dirty_bytes_last_sync = self.remaining * self.P
        if self.t > self.period_start + C.RATE_PERIOD_US:
            self.trigger_throttle()
            # ram_counters.dirty_pages_rate is an integer (uint64 division in QEMU)
            self.dirty_pages_rate = float(
                num.floor(self.num_dirty_pages_period * 1e6 / (self.t - self.period_start))
            )
            self.period_start = self.t
            self.num_dirty_pages_period = 0.0
            self.bytes_xfer_prev = self.X
        self.iterations.append(
            {
                "dirty_sync_count": self.sync_count,
                "sync_reason": reason,
                "time_us": self.t,
                "transferred_bytes": self.X,
                "remaining_bytes": self.remaining * self.P,
                "new_dirty_pages": new,
                "dirty_pages_rate": self.dirty_pages_rate,
                "bandwidth_bytes_per_ms": self.bandwidth,
                "threshold_bytes": self.threshold,
                "expected_downtime_ms": self.expected_downtime,
                "throttle_pct": self.throttle,
            }
        )
        if cost:
            self.t += self.sync_us
        if self.sync_count == self.pause_after and reason in (SYNC_SETUP, SYNC_EXACT, SYNC_TIMER):
            # the manager stops the guest on this sync's MIGRATION_PASS event (QMP stop),
            # pause_delay after the sync ends (the guest writes until then); the stop does not
            # wait for the migration thread
            stop = self.t + self.pause_delay_us
            self.paused_at = stop if self.paused_at is None else min(self.paused_at, stop)

    def ring_sync(self, written: float) -> float:
        """bitmap_sync's count for a ring modelled by position (ring.py): the pages it adds,
        with the queue split at the cursor again."""
        one = lambda x: np.array([x])  # noqa: E731  (ring.py works on rows of scenarios)
        if self.R_z + self.R_c + self.R_h == 0.0:
            self.first_pass = False  # the cursor has wrapped (as below)
        new, R_h, R_n, self.ring = ring_sync(
            self.ring, one(self.R_h), one(self.R_n), one(written), one(self.W)
        )  # fmt: skip
        self.R_h, self.R_n = float(R_h[0]), float(R_n[0])
        return float(new[0])

    def trigger_throttle(self) -> None:
        """migration_trigger_throttle: every 2nd period that dirtied > 50 % of what was sent."""
        if not (self.auto_converge or self.dirty_limit):
            return
        bytes_xfer_period = self.X - self.bytes_xfer_prev
        bytes_dirty_period = self.num_dirty_pages_period * self.P
        bytes_dirty_threshold = (
            bytes_xfer_period * float(self.row["throttle_trigger_threshold_pct"]) / 100.0
        )
        if num.below(bytes_dirty_threshold, bytes_dirty_period):
            self.dirty_rate_high_cnt += 1
            if self.dirty_rate_high_cnt >= 2:
                self.dirty_rate_high_cnt = 0
                if self.auto_converge:
                    self.throttle_guest_down(bytes_dirty_period, bytes_dirty_threshold)
                else:
                    self.dirty_limit_active = True  # migration_dirty_limit_guest

    def throttle_guest_down(self, bytes_dirty: float, bytes_threshold: float) -> None:
        """mig_throttle_guest_down: 20 %, then +10 % per trigger up to 99 % (integers)."""
        initial = int(self.row["cpu_throttle_initial_pct"])
        increment = int(self.row["cpu_throttle_increment_pct"])
        ceiling = int(self.row["max_cpu_throttle_pct"])
        if self.throttle == 0:
            new = initial
        else:
            step = increment
            if bool(self.row["cpu_throttle_tailslow"]):
                cpu_now = 100 - self.throttle
                cpu_ideal = int(num.floor(cpu_now * (bytes_threshold / bytes_dirty)))
                step = min(cpu_now - cpu_ideal, increment)
            new = min(self.throttle + step, ceiling)
        self.throttle = min(max(new, 1), 99)  # cpu_throttle_set clamps

    # --- migration.c ---------------------------------------------------------------------------
    def update_counters(self) -> None:
        """migration_update_counters: bandwidth, threshold_size, expected-downtime per window."""
        elapsed = self.t - self.win_start
        if elapsed < C.BUFFER_DELAY_US:
            return
        elapsed_ms = elapsed / 1000.0
        self.bandwidth = self.win_bytes / elapsed_ms
        expected_bw_per_ms = self.Bsw / 1000.0 if self.Bsw else self.bandwidth
        # threshold_size is a uint64 in QEMU
        self.threshold = float(num.floor(expected_bw_per_ms * self.DL))
        self.mbps = self.win_bytes * 8.0 / (elapsed_ms / 1000.0) / 1e6
        self.pages_per_second = self.win_pages / (elapsed_ms / 1000.0)
        if self.dirty_pages_rate and self.win_bytes > C.EXPECTED_DOWNTIME_MIN_BYTES:
            # expected_downtime is an int64 of milliseconds
            self.expected_downtime = float(
                num.floor(self.dirty_bytes_last_sync / expected_bw_per_ms)
            )
        if self.record_samples:
            self.samples.append(
                {
                    "time_us": self.t,
                    "transferred_bytes": self.X,
                    "remaining_bytes": self.remaining * self.P,
                    "mbps": self.mbps,
                    "pages_per_second": self.pages_per_second,
                    "threshold_bytes": self.threshold,
                    "expected_downtime_ms": self.expected_downtime,
                    "dirty_pages_rate": self.dirty_pages_rate,
                    "dirty_sync_count": self.sync_count,
                    "throttle_pct": self.throttle,
                }
            )
        self.win_start, self.win_bytes, self.win_pages = self.t, 0.0, 0.0
        self.budget_spent = False

    def sync_wanted(self, pending: float) -> bool:
        """The exact pending (a sync) runs below the threshold (8.0-8.2: at or below)."""
        if self.version.sync_when_equal:
            return bool(num.at_most(pending, self.threshold))
        return bool(num.below(pending, self.threshold))

    def switchover_now(self, pending: float) -> bool:
        """7.2-10.0: pending == 0 or pending < threshold; 10.1+: pending <= threshold."""
        if self.version.complete_when_equal:
            return bool(num.at_most(pending, self.threshold))
        return pending == 0 or bool(num.below(pending, self.threshold))

    def iteration_run(self) -> bool:
        """migration_iteration_run; True when the migration completed.

        A requested postcopy starts at the first decision that does not switch over (10.1+:
        before the switchover check).  Its must_precopy <= threshold holds always: RAM is
        all postcopiable and the model has no other iterable device."""
        pending = self.remaining * self.P
        if self.sync_wanted(pending):
            self.bitmap_sync(SYNC_EXACT)
            pending = self.remaining * self.P
        postcopy_first = self.postcopy_requested and self.version.postcopy_first
        if not postcopy_first and self.switchover_now(pending):
            self.completion()
            return True
        if self.postcopy_requested:
            self.postcopy_start()
            return True
        self.ram_save_iterate()
        return False

    def shares(self, sent: float) -> tuple[float, float, float, float]:
        """Which part of each queue `sent` wire bytes take, in scan order."""
        out = []
        left = sent
        for wire in self.segments():
            if num.at_most(wire, left):
                out.append(1.0)
                left -= wire
            else:
                out.append(left / wire)
                left = 0.0
        return out[0], out[1], out[2], out[3]

    def slice_rate(self) -> float:
        """The rate of the next iterate slice: first_pass_bandwidth (by default
        first_copy_bandwidth) while the old queue holds pages of the first pass (the
        destination allocates their memory as they arrive and sets the pace), else
        link_bandwidth.

        Assumption: the page at the slice's start sets the rate of the whole slice; a slice
        that crosses from the first pass to re-sent pages runs at the first-pass rate
        (at most one 50 ms slice a migration)."""
        if self.first_pass and self.R_z + self.R_c + self.R_h > 0.0:
            return self.L_pass
        return self.L

    def ram_save_iterate(self) -> None:
        """Send queued pages for at most 50 ms, until the window's budget is spent, or all.

        Assumptions: pages are expected values; the queues drain in scan order (see
        `segments`), and within one segment in proportion to their share; the budget is met
        exactly (QEMU overshoots by up to one page); end-of-section markers are not counted;
        the slice runs at `slice_rate`.
        """
        rate = self.slice_rate()
        slice_bytes = rate * C.MAX_WAIT_US
        budget_left = self.budget - self.win_bytes if self.budget else math.inf
        budget_bound = bool(self.budget) and bool(num.at_most(budget_left, slice_bytes))
        cap = budget_left if budget_bound else slice_bytes
        need = self.wire_bytes()
        if num.at_most(need, cap):  # the queue empties inside this slice
            sent, duration = need, int(num.ceil(need / rate))
            hot_share = data_share = zero_share = new_share = 1.0
            self.budget_spent = budget_bound and bool(num.same(need, cap))
        else:
            sent = cap
            hot_share, data_share, zero_share, new_share = self.shares(cap)
            duration = C.MAX_WAIT_US
            if budget_bound:
                duration = min(int(num.ceil(cap / rate)), C.MAX_WAIT_US)
            self.budget_spent = budget_bound
        if not self.zero_last:
            zero_share = data_share
        if not self.hot_first:
            hot_share = data_share
        zero = self.R_z * zero_share
        normal = self.R_c * data_share + self.R_h * hot_share + self.R_n * new_share
        self.R_z -= zero
        self.R_c -= self.R_c * data_share
        self.R_h -= self.R_h * hot_share
        self.R_n -= self.R_n * new_share
        self.zero_pages += zero
        self.normal_pages += normal
        self.X += sent
        self.precopy_bytes += sent
        self.win_bytes += sent
        self.win_pages += zero + normal
        self.t += duration

    def completion(self) -> None:
        """migration_completion: stop the VM, final sync, send the rest at link speed.

        Pages still in their first pass go at first_copy_bandwidth (the destination
        allocates their memory as they arrive).  Assumption: the downtime ends with the last
        byte; destination load and resume are not included (as in QEMU's own `downtime`).
        """
        downtime_start = self.t
        self.t += self.stop_us  # the guest keeps writing until its vCPUs are stopped
        self.bitmap_sync(SYNC_FINAL)
        final_bytes, first_bytes = self.send_all()
        self.downtime_bytes = final_bytes
        self.X += final_bytes + self.S_dev
        copy_us = first_bytes / self.L_first + (final_bytes - first_bytes + self.S_dev) / self.L
        self.downtime_ms = (self.t - downtime_start) / 1000.0 + copy_us / 1000.0
        self.total_time_ms = downtime_start / 1000.0 + self.downtime_ms
        self.status = COMPLETED
        if self.paused_at is not None and self.paused_at < downtime_start:
            # QEMU's downtime starts at its own stop; the guest stood still from the pause
            self.status = PAUSED
            self.paused_time_ms = (downtime_start - self.paused_at) / 1000.0

    def send_all(self) -> tuple[float, float]:
        """Count every queued page as sent: their wire bytes, and how many of those are
        still in the first pass (sent at first_copy_bandwidth)."""
        wire = self.wire_bytes()
        hot, old, zero, _ = self.segments()
        first_bytes = hot + old + zero if self.first_pass else 0.0
        self.zero_pages += self.R_z
        self.normal_pages += self.R_c + self.R_h + self.R_n
        self.R_z = self.R_c = self.R_h = self.R_n = 0.0
        return wire, first_bytes

    def postcopy_start(self) -> None:
        """postcopy_start, and the postcopy phase in closed form.

        The VM stops; the discard-bitmap step runs a sync; the device state goes at link
        speed, and the downtime ends.  The destination then runs while every page still
        queued is sent once (max-postcopy-bandwidth 0) at postcopy_bandwidth, or else as the
        final copy would be (link speed, first-pass pages at first_copy_bandwidth), and the
        migration completes when none is left.  Assumptions:
        the pages the destination faults on are among those bytes (requests change their
        order, not their number); no RAM page is sent while the VM is stopped; the guest's
        slowdown from faults is not modelled, only how long the postcopy phase lasts.
        """
        downtime_start = self.t
        self.t += self.stop_us
        self.bitmap_sync(SYNC_POSTCOPY)  # ram_postcopy_send_discard_bitmap
        self.X += self.S_dev
        self.downtime_ms = (self.t - downtime_start) / 1000.0 + self.S_dev / self.L / 1000.0
        postcopy_bytes, first_bytes = self.send_all()
        self.postcopy_bytes = postcopy_bytes
        self.X += postcopy_bytes
        if self.L_post:
            copy_us = postcopy_bytes / self.L_post
        else:
            copy_us = first_bytes / self.L_first + (postcopy_bytes - first_bytes) / self.L
        self.postcopy_time_ms = copy_us / 1000.0
        self.total_time_ms = downtime_start / 1000.0 + self.downtime_ms + self.postcopy_time_ms
        self.status = POSTCOPY

    def timer_tick(self) -> None:
        """cpu_throttle_dirty_sync_timer_tick (9.2+ with auto-converge): sync if none for 5 s."""
        while self.t >= self.next_tick:
            if self.sync_count > 1 and self.sync_count == self.prev_sync_cnt:
                # The timer runs on the main loop but holds the BQL that the migration
                # thread needs for its next step: charge the sync to the migration thread.
                self.bitmap_sync(SYNC_TIMER)
            self.prev_sync_cnt = self.sync_count
            self.next_tick += C.PERIODIC_SYNC_US

    def manager_cancels(self) -> bool:
        """The manager (guestperf, libvirt) gives up after max_time or max_iterations, and
        asks for postcopy once dirty-sync-count reaches postcopy_after_iterations or the
        migration has run postcopy_after_time (it stops the guest in bitmap_sync).

        Assumption: the manager acts at the loop top where the count is reached (guestperf
        polls every 50 ms; QEMU starts postcopy at its next decision)."""
        if self.t >= self.max_time_us:
            self.status = CANCELLED_TIME
        elif self.max_iterations and self.sync_count > self.max_iterations:
            self.status = CANCELLED_ITERATIONS
        else:
            if self.postcopy_after and self.sync_count >= self.postcopy_after:
                self.postcopy_requested = True
            if self.postcopy_time_us is not None and self.t >= self.postcopy_time_us:
                self.postcopy_requested = True
            return False
        self.total_time_ms = self.t / 1000.0
        return True

    def run(self) -> ReferenceMigration:
        """migration_thread's loop."""
        while not self.manager_cancels():
            if self.periodic:
                self.timer_tick()
            if self.iteration_run():
                break
            self.update_counters()
            if self.budget_spent:  # migration_rate_limit: sleep until the window ends
                self.t = max(self.t, self.win_start + C.BUFFER_DELAY_US)
                self.update_counters()
        return self

    def summary(self) -> dict[str, Any]:
        transferred = self.X
        if not self.version.device_state_in_transferred and self.status in FINISHED:
            transferred -= self.S_dev  # 7.2's ram.transferred counts RAM bytes only
        return {
            "status": self.status,
            "total_time_ms": self.total_time_ms,
            "setup_time_ms": self.setup_us / 1000.0,
            "downtime_ms": self.downtime_ms,
            "dirty_sync_count": self.sync_count,
            "transferred_bytes": transferred,
            "precopy_bytes": self.precopy_bytes,
            "downtime_bytes": self.downtime_bytes,
            "postcopy_bytes": self.postcopy_bytes,
            "postcopy_time_ms": self.postcopy_time_ms,
            "paused_time_ms": self.paused_time_ms,
            "normal_pages": self.normal_pages,
            "zero_pages": self.zero_pages,
            "threshold_bytes": self.threshold,
            "expected_downtime_ms": self.expected_downtime,
            "throttle_pct": self.throttle,
            "dirty_pages_rate": self.dirty_pages_rate,
        }


def simulate_reference(row: dict[str, Any], record_samples: bool = False) -> ReferenceMigration:
    """Run one canonical scenario row (see :func:`sweep.params.normalize`) to its end."""
    return ReferenceMigration(dict(row), record_samples=record_samples).run()

"""The counters schema: every output column once, with its type, unit and QEMU counterpart.

The Arrow schemas written to Parquet, the pandas dtypes of :class:`sweep.api.Result` and the
column reference in the README (``python -m sweep columns``) all come from these tables.
Units are in the names; ``qemu`` names the ``query-migrate`` field a column mirrors.
Byte and page counters are the model's expected values rounded to whole units, as QEMU
reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["ITERATIONS", "SAMPLES", "SUMMARY", "Column", "arrow_schema", "markdown_table"]


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    qemu: str = ""


STATUS = pa.dictionary(pa.int8(), pa.string())
ID = pa.int64()

SUMMARY: tuple[Column, ...] = (
    Column("scenario_id", ID, "Stable id: a hash of the scenario's canonical parameters."),
    Column("status", STATUS, "completed, cancelled-time (max_time), cancelled-iterations "
           "(max_iterations), completed-postcopy (postcopy_after_iterations or _time) or "
           "completed-paused (pause_after_iterations or _time: completed after the manager "
           "stopped the guest).", "status"),
    Column("converged", pa.bool_(), "QEMU switched over on its own (status completed)."),
    Column("total_time_ms", pa.float64(), "From migrate to completion (or to the cancel); "
           "with postcopy, to the last page.", "total-time"),
    Column("downtime_ms", pa.float64(), "VM stopped: stop + final sync + final copy and "
           "device state at link speed (postcopy: stop + sync + device state); null when "
           "cancelled.  QEMU's own: a guest the manager stopped stood still paused_time_ms "
           "longer.", "downtime"),
    Column("downtime_exceeded", pa.bool_(), "downtime_ms > downtime_limit_ms; null when "
           "cancelled."),
    Column("dirty_sync_count", pa.int32(), "Dirty-bitmap syncs: 1 after setup, +1 per exact "
           "or timer sync, +1 at completion or postcopy start.", "ram.dirty-sync-count"),
    Column("transferred_bytes", pa.int64(), "Bytes sent (7.2: RAM only; 8.1+: every channel, "
           "device state included).", "ram.transferred"),
    Column("precopy_bytes", pa.int64(), "RAM bytes sent in pre-copy (before the switchover).",
           "ram.precopy-bytes"),
    Column("downtime_bytes", pa.int64(), "RAM bytes sent while the VM was stopped.",
           "ram.downtime-bytes"),
    Column("postcopy_bytes", pa.int64(), "RAM bytes sent after postcopy started (the "
           "destination running); 0 without postcopy.", "ram.postcopy-bytes"),
    Column("postcopy_time_ms", pa.float64(), "How long the destination ran with pages still "
           "on the source (faults served remotely); null without postcopy."),
    Column("paused_time_ms", pa.float64(), "How long the guest stood stopped by the manager "
           "before QEMU's downtime began (pause_after_iterations or _time); null unless "
           "completed-paused.  The guest's whole stop is paused_time_ms + downtime_ms."),
    Column("normal_pages", pa.int64(), "Pages sent in full (page size + 8 bytes each).",
           "ram.normal"),
    Column("zero_pages", pa.int64(), "Zero pages sent as a 9-byte marker.", "ram.duplicate"),
    Column("threshold_bytes", pa.int64(), "The last threshold_size (bandwidth x limit)."),
    Column("expected_downtime_ms", pa.int64(), "The last expected-downtime QEMU reported.",
           "expected-downtime"),
    Column("throttle_pct", pa.int8(), "Final auto-converge throttle.",
           "cpu-throttle-percentage"),
    Column("dirty_pages_rate_pages_per_s", pa.int64(), "Last dirty-pages-rate (new dirty "
           "pages per second over the last period > 1 s).", "ram.dirty-pages-rate"),
    Column("mbps", pa.float64(), "Average throughput QEMU reports at completion: "
           "transferred x 8 / (total - setup) in Mbit/s; null when cancelled.", "ram.mbps"),
)  # fmt: skip

SYNC_REASON = pa.dictionary(pa.int8(), pa.string())

ITERATIONS: tuple[Column, ...] = (
    Column("scenario_id", ID, "The scenario (dictionary-encoded in Parquet)."),
    Column("dirty_sync_count", pa.int32(), "This sync's number.", "ram.dirty-sync-count"),
    Column("sync_reason", SYNC_REASON, "setup, exact (remaining < threshold), timer (9.2+ "
           "auto-converge 5 s sync), final (at switchover) or postcopy (at postcopy start)."),
    Column("time_ms", pa.float64(), "When the sync harvested the dirty log, from migrate."),
    Column("transferred_bytes", pa.int64(), "Bytes sent so far.", "ram.transferred"),
    Column("transferred_since_prev_bytes", pa.int64(), "Bytes sent since the previous sync."),
    Column("remaining_bytes", pa.int64(), "Dirty bytes queued right after the sync.",
           "ram.remaining"),
    Column("new_dirty_pages", pa.int64(), "Pages newly dirty at this sync (already-queued "
           "pages do not count)."),
    Column("dirty_pages_rate_pages_per_s", pa.int64(), "dirty-pages-rate after this sync.",
           "ram.dirty-pages-rate"),
    Column("bandwidth_bytes_per_s", pa.float64(), "The last window's bandwidth estimate."),
    Column("threshold_bytes", pa.int64(), "threshold_size in force at the sync."),
    Column("expected_downtime_ms", pa.int64(), "expected-downtime in force at the sync.",
           "expected-downtime"),
    Column("throttle_pct", pa.int8(), "Auto-converge throttle after the sync.",
           "cpu-throttle-percentage"),
)  # fmt: skip

SAMPLES: tuple[Column, ...] = (
    Column("scenario_id", ID, "The scenario."),
    Column("time_ms", pa.float64(), "End of a 100 ms counter window, from migrate."),
    Column("transferred_bytes", pa.int64(), "Bytes sent so far.", "ram.transferred"),
    Column("remaining_bytes", pa.int64(), "Dirty bytes queued.", "ram.remaining"),
    Column("mbps", pa.float64(), "Last window's throughput, Mbit/s.", "ram.mbps"),
    Column("pages_per_second", pa.float64(), "Last window's pages per second.",
           "ram.pages-per-second"),
    Column("threshold_bytes", pa.int64(), "threshold_size from this window."),
    Column("expected_downtime_ms", pa.int64(), "expected-downtime.", "expected-downtime"),
    Column("dirty_pages_rate_pages_per_s", pa.int64(), "dirty-pages-rate.",
           "ram.dirty-pages-rate"),
    Column("dirty_sync_count", pa.int32(), "Syncs so far.", "ram.dirty-sync-count"),
    Column("throttle_pct", pa.int8(), "Auto-converge throttle.", "cpu-throttle-percentage"),
)  # fmt: skip


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    """The Arrow schema, each field carrying its description and QEMU name as metadata."""
    return pa.schema(
        [pa.field(c.name, c.type, metadata={"doc": c.doc, "qemu": c.qemu}) for c in columns]
    )


def markdown_table(columns: tuple[Column, ...]) -> str:
    """A Markdown column reference for the README."""
    lines = ["| column | type | query-migrate | meaning |", "|---|---|---|---|"]
    for c in columns:
        kind = "string" if pa.types.is_dictionary(c.type) else str(c.type)
        qemu = f"`{c.qemu}`" if c.qemu else ""
        lines.append(f"| `{c.name}` | {kind} | {qemu} | {c.doc} |")
    return "\n".join(lines)

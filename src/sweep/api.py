"""The notebook API: ``sweep.simulate(scenarios) -> Result``.

>>> import sweep
>>> r = sweep.simulate([{"ram_size": "4GiB", "link_bandwidth": "1Gbit/s",
...                      "max_bandwidth": 0, "dirty_rate": "50MB/s"}])
>>> r.summary[["status", "total_time_ms", "downtime_ms", "dirty_sync_count"]]

Scenarios are validated in full before the first one runs (:func:`sweep.params.normalize`),
then simulated in chunks by the vectorised engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from .engine import ChunkResult, run_chunk
from .params import PARAMETERS, ParameterError, normalize
from .reference import COMPLETED, FINISHED, STATUS_NAMES, SYNC_REASONS

__all__ = ["Result", "scenario_ids", "simulate", "tables_from_chunk"]

DEFAULT_CHUNK_SIZE = 50_000
PARAMETER_COLUMNS = tuple(p.column for p in PARAMETERS)


@dataclass
class Result:
    """Outputs of a simulation, as pandas frames with units in the column names.

    ``summary``: one row per scenario (its parameters, then the outcome columns of
    :data:`sweep.schema.SUMMARY`).  ``iterations``: one row per dirty sync.  ``samples``: one
    row per 100 ms counter window, only when asked for.
    """

    summary: pd.DataFrame
    iterations: pd.DataFrame
    samples: pd.DataFrame | None = None


def scenario_ids(canonical: pd.DataFrame) -> np.ndarray:
    """Stable ids: a 63-bit hash of each row's canonical parameters (column order fixed).

    Labels are hashed by value (pandas hashes a categorical's categories, then takes them by
    code), so an id does not depend on which other scenarios share the table.
    """
    values = canonical[list(PARAMETER_COLUMNS)]
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy(dtype=np.uint64)
    return (hashed & np.uint64(2**63 - 1)).astype(np.int64)


def _rounded(values: np.ndarray, dtype: str = "int64") -> np.ndarray:
    return np.rint(values).astype(dtype)


def tables_from_chunk(
    scenarios: pd.DataFrame, raw: ChunkResult
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Engine arrays -> the summary, iterations and samples frames of :mod:`sweep.schema`."""
    s = raw.summary
    ids = scenarios["scenario_id"].to_numpy()
    status = pd.Categorical.from_codes(s["status"].astype(np.int8) - 1, list(STATUS_NAMES[1:]))
    completed = s["status"] == COMPLETED
    finished = np.isin(s["status"], FINISHED)
    exceeded = pd.array(
        s["downtime_ms"] > scenarios["downtime_limit_ms"].to_numpy(), dtype="boolean"
    )
    exceeded[~finished] = pd.NA
    transferred = _rounded(s["transferred_bytes"])
    busy_ms = s["total_time_ms"] - s["setup_time_ms"]
    outcome = pd.DataFrame(
        {
            "status": status,
            "converged": completed,
            "total_time_ms": s["total_time_ms"],
            "downtime_ms": s["downtime_ms"],
            "downtime_exceeded": exceeded,
            "dirty_sync_count": s["dirty_sync_count"].astype(np.int32),
            "transferred_bytes": transferred,
            "precopy_bytes": _rounded(s["precopy_bytes"]),
            "downtime_bytes": _rounded(s["downtime_bytes"]),
            "postcopy_bytes": _rounded(s["postcopy_bytes"]),
            "postcopy_time_ms": s["postcopy_time_ms"],
            "paused_time_ms": s["paused_time_ms"],
            "normal_pages": _rounded(s["normal_pages"]),
            "zero_pages": _rounded(s["zero_pages"]),
            "threshold_bytes": _rounded(s["threshold_bytes"]),
            "expected_downtime_ms": _rounded(s["expected_downtime_ms"]),
            "throttle_pct": s["throttle_pct"].astype(np.int8),
            "dirty_pages_rate_pages_per_s": _rounded(s["dirty_pages_rate"]),
            "mbps": np.where(finished, transferred * 8.0 / busy_ms / 1000.0, np.nan),
        }
    )
    outcome = outcome[[c.name for c in schema.SUMMARY if c.name != "scenario_id"]]
    summary = pd.concat([scenarios.reset_index(drop=True), outcome], axis=1)

    it = raw.iterations
    rows = it["row"].astype(np.int64)
    transferred_at = it["transferred_bytes"]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    since = np.where(first, transferred_at, np.diff(transferred_at, prepend=0.0))
    iterations = pd.DataFrame(
        {
            "scenario_id": ids[rows],
            "dirty_sync_count": it["dirty_sync_count"].astype(np.int32),
            "sync_reason": pd.Categorical.from_codes(
                it["sync_reason"].astype(np.int8), list(SYNC_REASONS)
            ),
            "time_ms": it["time_us"] / 1000.0,
            "transferred_bytes": _rounded(transferred_at),
            "transferred_since_prev_bytes": _rounded(since),
            "remaining_bytes": _rounded(it["remaining_bytes"]),
            "new_dirty_pages": _rounded(it["new_dirty_pages"]),
            "dirty_pages_rate_pages_per_s": _rounded(it["dirty_pages_rate"]),
            "bandwidth_bytes_per_s": it["bandwidth_bytes_per_ms"] * 1000.0,
            "threshold_bytes": _rounded(it["threshold_bytes"]),
            "expected_downtime_ms": _rounded(it["expected_downtime_ms"]),
            "throttle_pct": it["throttle_pct"].astype(np.int8),
        }
    )
    iterations = iterations[[c.name for c in schema.ITERATIONS]]
    samples = None
    if raw.samples is not None:
        sm = raw.samples
        samples = pd.DataFrame(
            {
                "scenario_id": ids[sm["row"].astype(np.int64)],
                "time_ms": sm["time_us"] / 1000.0,
                "transferred_bytes": _rounded(sm["transferred_bytes"]),
                "remaining_bytes": _rounded(sm["remaining_bytes"]),
                "mbps": sm["mbps"],
                "pages_per_second": sm["pages_per_second"],
                "threshold_bytes": _rounded(sm["threshold_bytes"]),
                "expected_downtime_ms": _rounded(sm["expected_downtime_ms"]),
                "dirty_pages_rate_pages_per_s": _rounded(sm["dirty_pages_rate"]),
                "dirty_sync_count": sm["dirty_sync_count"].astype(np.int32),
                "throttle_pct": sm["throttle_pct"].astype(np.int8),
            }
        )
    return summary, iterations, samples


def prepare(scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Validate and canonicalise scenarios; add stable ids; refuse duplicates."""
    canonical = normalize(scenarios)
    if canonical.empty:
        raise ParameterError("scenarios", "an empty table", "at least one scenario")
    if "scenario_id" not in canonical.columns:
        canonical.insert(0, "scenario_id", scenario_ids(canonical))
    else:
        canonical.insert(0, "scenario_id", canonical.pop("scenario_id").astype(np.int64))
    duplicated = canonical["scenario_id"].duplicated()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        ids = canonical["scenario_id"].to_numpy()
        earlier = int(np.flatnonzero(ids == ids[first])[0])
        raise ParameterError(
            "scenarios", f"row {first} repeats row {earlier}",
            "distinct scenarios (the model is deterministic: a repeat adds nothing); "
            "give a scenario_id column to keep repeats",
        )  # fmt: skip
    return canonical


def simulate(
    scenarios: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    samples: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Result:
    """Simulate QEMU pre-copy migration for every scenario (see docs/model.md).

    ``scenarios`` holds one row per scenario with any subset of the parameters of
    :data:`sweep.params.PARAMETERS` (config names such as ``ram_size`` with units, or
    canonical columns such as ``ram_size_bytes``); the rest take their defaults.
    """
    if chunk_size < 1:
        raise ParameterError("chunk_size", chunk_size, "a positive number of scenarios")
    canonical = prepare(scenarios)
    parts = []
    for start in range(0, len(canonical), chunk_size):
        chunk = canonical.iloc[start : start + chunk_size].reset_index(drop=True)
        parts.append(tables_from_chunk(chunk, run_chunk(chunk, record_samples=samples)))
    summary = pd.concat([p[0] for p in parts], ignore_index=True)
    iterations = pd.concat([p[1] for p in parts], ignore_index=True)
    sample_frame = pd.concat([p[2] for p in parts], ignore_index=True) if samples else None
    return Result(summary=summary, iterations=iterations, samples=sample_frame)

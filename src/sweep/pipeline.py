"""The steps of the Snakemake workflow as plain functions (the workflow's scripts are thin).

* :func:`write_grid`: config -> ``results/grid.parquet`` (every scenario, its id and chunk);
* :func:`simulate_chunk`: config + chunk number -> that chunk's summary and iterations files,
  rebuilt from the config alone (:meth:`sweep.grid.Plan.chunk_rows`), so a chunk job depends
  on exactly its own scenarios;
* :func:`collect`: chunk files -> ``results/summary.parquet`` (one table, copied a chunk at a
  time: it is small), ``results/iterations/`` (a hive-partitioned dataset,
  ``chunk=N/part-0.parquet``, whose files are hard links to the chunk files: the big table is
  never rewritten), and ``results/manifest.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__, api, grid, io

__all__ = ["chunk_name", "collect", "job", "simulate_chunk", "write_grid"]

log = logging.getLogger("sweep.pipeline")
PARTITION = "chunk"
PART_FILE = "part-0.parquet"
# Parquet dictionary encoding for the iterations table: ids repeat ~15 times, reasons 4 values;
# the float and counter columns do better without (smaller and 4x faster to write).
ITERATION_DICTIONARY = ("scenario_id", "sync_reason")


def chunk_name(chunk: int) -> str:
    """``00042``: chunk numbers in file names, zero-padded so they sort."""
    return f"{chunk:05d}"


@contextlib.contextmanager
def job(
    log_path: str | os.PathLike[str], threads: int = 1, tmpdir: str | None = None
) -> Iterator[logging.Logger]:
    """Run a workflow step: log to `log_path`, cap Arrow's threads, use the job's tmpdir.

    Python warnings go to the log as well: a job re-reads the config, and what the grid warns
    of (values dropped as repeats) the workflow has already said once, before the jobs."""
    logging.basicConfig(
        filename=log_path,
        filemode="w",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    pa.set_cpu_count(max(1, int(threads)))
    if tmpdir:
        Path(tmpdir).mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(tmpdir)
    started = time.perf_counter()
    try:
        yield log
    except BaseException:
        log.exception("failed")
        raise
    finally:
        log.info("done in %.2f s", time.perf_counter() - started)
        logging.captureWarnings(False)
        logging.shutdown()


def write_grid(
    config: Mapping[str, Any], path: str | os.PathLike[str], checked: str | None = None
) -> str:
    """Write the whole grid (scenario_id, chunk, parameters) a block of chunks at a time, so
    that the job's memory does not grow with the grid; returns its digest.

    The file's metadata holds the grid digest, which needs every id before the first row
    is written.  `checked`: the digest of a grid.build of this config (the workflow's main
    process builds the grid to check it): the rows are then normalised once, as they are
    written, and their digest must match it before the file takes its place.  Without it the
    grid is built (checked) first, and its rows normalised twice."""
    layout = grid.plan(config)
    log.info("%s", layout.describe())
    expected = checked if checked is not None else grid.build(config).digest
    target = io.with_metadata(
        io.grid_schema(),
        "grid",
        config_hash=grid.config_hash(config),
        grid_digest=expected,
        code_hash=io.code_hash(),
        scenarios=layout.size,
    )
    with io.table_writer(path, target) as writer:

        def written_ids() -> Iterator[np.ndarray]:  # hashed as written: no id is kept
            for block in grid.prepared_blocks(layout):
                writer.write_table(io.table_from_frame(block, target))
                yield block["scenario_id"].to_numpy()

        written = grid.grid_digest(written_ids(), layout.bounds)
        if written != expected:
            raise RuntimeError(
                f"grid: its scenarios hash to {written}, but the workflow checked {expected}; "
                "the config or the package changed while the workflow ran"
            )
    log.info("wrote %s (%d scenarios)", path, layout.size)
    return written


def simulate_chunk(
    config: Mapping[str, Any],
    chunk: int,
    summary_path: str | os.PathLike[str],
    iterations_path: str | os.PathLike[str],
    expected_digest: str | None = None,
) -> dict[str, Any]:
    """Simulate one chunk of the grid and write its summary and iterations files."""
    layout = grid.plan(config)
    start, stop = layout.chunk_range(chunk)
    rows = layout.rows(start, stop)
    log.info("chunk %d: grid rows %d-%d (%d scenarios)", chunk, start, stop - 1, len(rows))
    started = time.perf_counter()
    result = api.simulate(rows, chunk_size=max(1, len(rows)))
    seconds = time.perf_counter() - started
    found = grid.digest(result.summary["scenario_id"])
    if expected_digest is not None and found != expected_digest:
        raise RuntimeError(
            f"chunk {chunk}: its scenarios hash to {found}, but the workflow planned "
            f"{expected_digest}; the config or the package changed while the workflow ran"
        )
    provenance = {
        "chunk": chunk,
        "chunk_digest": found,
        "code_hash": io.code_hash(),
        "scenarios": len(rows),
    }
    summary = io.table_from_frame(result.summary, io.summary_schema())
    io.write_table(io.with_metadata(summary, "summary", **provenance), summary_path)
    iterations = io.table_from_frame(result.iterations, io.iterations_schema())
    io.write_table(
        io.with_metadata(iterations, "iterations", **provenance),
        iterations_path,
        dictionary=ITERATION_DICTIONARY,
    )
    log.info(
        "simulated %d scenarios in %.2f s (%.0f per s); %d iteration rows",
        len(rows),
        seconds,
        len(rows) / max(seconds, 1e-9),
        iterations.num_rows,
    )
    return {"scenarios": len(rows), "iteration_rows": iterations.num_rows, "seconds": seconds}


def _strip(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links: copy
        shutil.copy2(source, target)


@contextlib.contextmanager
def _fresh_directory(path: Path) -> Iterator[Path]:
    """Build a directory beside `path` and swap it in at the end (no half-built dataset)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    building.chmod(0o777 & ~io.umask())
    try:
        yield building
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(building, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if building.exists():
            shutil.rmtree(building)


def collect(
    config: Mapping[str, Any],
    summary_paths: Sequence[str | os.PathLike[str]],
    iterations_paths: Sequence[str | os.PathLike[str]],
    summary_out: str | os.PathLike[str],
    iterations_out: str | os.PathLike[str],
    manifest_out: str | os.PathLike[str],
    digests: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Chunk files (in chunk order) -> summary table, iterations dataset and manifest."""
    if len(summary_paths) != len(iterations_paths):
        raise ValueError("one summary file and one iterations file per chunk")
    layout = grid.plan(config)
    if len(summary_paths) != layout.n_chunks:
        raise ValueError(f"the grid has {layout.n_chunks} chunks, got {len(summary_paths)} files")
    provenance = {
        "config_hash": grid.config_hash(config),
        "code_hash": io.code_hash(),
    }
    # Pass 1: every chunk file is the right one (metadata only, and the ids for the digest).
    chunk_digests, chunk_sizes = [], []
    for chunk, path in enumerate(summary_paths):
        file = pq.ParquetFile(path)
        meta = io.read_metadata(file.schema_arrow)
        if meta.get("chunk") != chunk:
            raise ValueError(f"{path}: written for chunk {meta.get('chunk')}, not {chunk}")
        if meta.get("code_hash") != provenance["code_hash"]:
            raise ValueError(
                f"{path}: simulated by another version of the model (code hash "
                f"{meta.get('code_hash')}, now {provenance['code_hash']}): the sources changed "
                "during the run; run the workflow again to re-simulate the chunks concerned"
            )
        if digests is not None and meta.get("chunk_digest") != digests[chunk]:
            raise ValueError(f"{path}: holds other scenarios than chunk {chunk} of this grid")
        chunk_digests.append(meta["chunk_digest"])
        chunk_sizes.append(file.metadata.num_rows)
    ids = (pq.read_table(path, columns=["scenario_id"])["scenario_id"] for path in summary_paths)
    provenance["grid_digest"] = grid.grid_digest(ids, layout.bounds)

    # Pass 2: the chunks, one at a time, into one table (memory: one chunk).
    target = io.with_metadata(
        io.summary_schema(), "summary", scenarios=sum(chunk_sizes), **provenance
    )
    status: dict[str, int] = {}
    with io.table_writer(summary_out, target) as writer:
        for path in summary_paths:
            table = _strip(pq.read_table(path)).cast(target)
            writer.write_table(table)
            counts = pc.value_counts(table["status"].combine_chunks().dictionary_decode())
            for entry in counts.to_pylist():
                status[entry["values"]] = status.get(entry["values"], 0) + entry["counts"]
    log.info("wrote %s (%d scenarios)", summary_out, sum(chunk_sizes))

    iterations_out = Path(iterations_out)
    chunks = []
    with _fresh_directory(iterations_out) as building:
        for chunk, path in enumerate(iterations_paths):
            relative = Path(f"{PARTITION}={chunk}") / PART_FILE
            _link_or_copy(Path(path), building / relative)
            rows = pq.ParquetFile(path).metadata.num_rows
            chunks.append(
                {
                    "chunk": chunk,
                    "digest": chunk_digests[chunk],
                    "scenarios": chunk_sizes[chunk],
                    "iteration_rows": rows,
                    "iterations": (Path(iterations_out.name) / relative).as_posix(),
                }
            )
        common = io.with_metadata(
            io.iterations_schema(), "iterations", partitioning=PARTITION, **provenance
        )
        io.write_metadata_file(common, building / "_common_metadata")
    log.info("linked %d chunk files into %s", len(chunks), iterations_out)

    manifest = {
        "table": "manifest",
        "version": __version__,
        **provenance,
        "grid": layout.describe(),
        "aligned_factors": list(layout.aligned_factors),
        "scenarios": sum(chunk_sizes),
        "iteration_rows": sum(c["iteration_rows"] for c in chunks),
        "status": status,
        "summary": Path(summary_out).name,
        "iterations": iterations_out.name,
        "chunks": chunks,
    }
    io.write_json(manifest, manifest_out)
    log.info("wrote %s", manifest_out)
    return manifest

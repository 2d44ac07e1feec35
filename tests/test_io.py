"""sweep.io and sweep.pipeline: schemas, metadata, atomic writes, the steps without Snakemake."""

from __future__ import annotations

import ast
import json
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import sweep
from sweep import api, grid, io, pipeline
from sweep.params import PARAMETERS

SRC = Path(sweep.__file__).parent
CONFIG = {
    "chunk_size": 2,
    "fixed": {"max_bandwidth": 0, "link_bandwidth": "1Gbit/s", "max_time": "20s"},
    "axes": {"ram_size": ["256MiB", "512MiB"], "dirty_rate": [0, "1GB/s"]},
}


def test_units_come_from_parameters_and_name_suffixes():
    assert io.unit_of("ram_size_bytes") == "bytes"
    assert io.unit_of("link_bandwidth_bytes_per_s") == "bytes/s"
    assert io.unit_of("dirty_rate_pages_per_s") == "pages/s"
    assert io.unit_of("vcpu_dirty_limit_mib_per_s") == "MiB/s"
    assert io.unit_of("max_time_s") == "s"
    assert io.unit_of("downtime_ms") == "ms"
    assert io.unit_of("throttle_pct") == "%"
    assert io.unit_of("mbps") == "Mbit/s"
    assert io.unit_of("status") == "" and io.unit_of("scenario_id") == ""


def test_summary_schema_has_unique_names_units_and_docs():
    schema = io.summary_schema()
    assert len(set(schema.names)) == len(schema.names)
    assert schema.names[0] == "scenario_id"
    assert schema.names[1 : 1 + len(PARAMETERS)] == [p.column for p in PARAMETERS]
    # QEMU's setup-time is the parameter setup_time_ms (the model takes it as given)
    assert schema.names.count("setup_time_ms") == 1
    assert schema.field("setup_time_ms").metadata[b"qemu"] == b"setup-time"
    ram = schema.field("ram_size_bytes").metadata
    assert ram[b"unit"] == b"bytes" and ram[b"parameter"] == b"ram_size" and ram[b"doc"]
    assert schema.field("total_time_ms").metadata[b"qemu"] == b"total-time"


def test_simulated_frames_convert_to_the_schemas():
    result = api.simulate(grid.plan(CONFIG).rows())
    summary = io.table_from_frame(result.summary, io.summary_schema())
    assert summary.num_rows == 4 and summary.schema.equals(io.summary_schema())
    assert summary["status"].type == pa.dictionary(pa.int8(), pa.string())
    # cancelled scenarios have no downtime and no mbps: null, not NaN
    cancelled = [s != "completed" for s in summary["status"].to_pylist()]
    assert any(cancelled)
    for flag, down in zip(cancelled, summary["downtime_ms"].to_pylist(), strict=True):
        assert (down is None) == flag
    iterations = io.table_from_frame(result.iterations, io.iterations_schema())
    assert iterations.num_rows == len(result.iterations) > 0


def test_table_from_frame_refuses_a_different_layout():
    result = api.simulate(grid.plan(CONFIG).rows())
    with pytest.raises(ValueError, match="columns"):
        io.table_from_frame(result.summary.iloc[:, 1:], io.summary_schema())
    with pytest.raises(ValueError, match="expected 'scenario_id'"):
        io.table_from_frame(result.iterations.iloc[:, ::-1], io.iterations_schema())


def test_metadata_round_trip(tmp_path):
    table = pa.table({"downtime_ms": [1.0]}, schema=pa.schema([("downtime_ms", pa.float64())]))
    table = table.cast(pa.schema([pa.field("downtime_ms", pa.float64(), metadata={"unit": "ms"})]))
    path = io.write_table(
        io.with_metadata(table, "summary", config_hash="abc", scenarios=1), tmp_path / "t.parquet"
    )
    meta = io.read_metadata(path)
    assert meta == {
        "table": "summary",
        "version": sweep.__version__,
        "config_hash": "abc",
        "scenarios": 1,
        "units": {"downtime_ms": "ms"},
    }
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.parquet"
    io.write_table(pa.table({"x": [1, 2]}), path)
    os.chmod(path, 0o644)

    def broken(self, table, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_table(pa.table({"x": [3]}), path)
    assert pq.read_table(path)["x"].to_pylist() == [1, 2]  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no temp left


def test_a_file_written_piece_by_piece_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.parquet"
    schema = pa.schema([pa.field("x", pa.int64())])
    with pytest.raises(RuntimeError, match="second piece"), io.table_writer(path, schema) as w:
        w.write_table(pa.table({"x": [1, 2]}, schema=schema))
        assert list(tmp_path.iterdir()) != [] and not path.exists()
        raise RuntimeError("the second piece failed")
    assert list(tmp_path.iterdir()) == []
    with io.table_writer(path, schema) as writer:
        for piece in ([1, 2], [3]):
            writer.write_table(pa.table({"x": piece}, schema=schema))
    assert pq.read_table(path)["x"].to_pylist() == [1, 2, 3]
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = io.write_table(pa.table({"x": [1]}), tmp_path / "x.parquet")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def _imports(module: str) -> set[str]:
    tree = ast.parse((SRC / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_code_hash_covers_every_module_the_model_imports():
    seen, todo = set(), ["api", "io"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(m for m in _imports(module) if (SRC / f"{m}.py").exists())
    listed = {name.removesuffix(".py") for name in io.MODEL_FILES}
    assert seen - {"__init__"} <= listed, f"add to sweep.io.MODEL_FILES: {seen - listed}"


# --- the pipeline steps, without Snakemake ------------------------------------------------------


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    built = grid.build(CONFIG)  # as the workflow's main process checks it
    assert pipeline.write_grid(CONFIG, out / "grid.parquet", checked=built.digest) == built.digest
    summaries, iterations = [], []
    for chunk in range(built.plan.n_chunks):
        name = pipeline.chunk_name(chunk)
        summaries.append(out / f"chunks/chunk-{name}.summary.parquet")
        iterations.append(out / f"chunks/chunk-{name}.iterations.parquet")
        pipeline.simulate_chunk(CONFIG, chunk, summaries[-1], iterations[-1], built.digests[chunk])
    manifest = pipeline.collect(
        CONFIG,
        summaries,
        iterations,
        out / "summary.parquet",
        out / "iterations",
        out / "manifest.json",
        built.digests,
    )
    return out, built, manifest, summaries, iterations


def test_collect_writes_summary_dataset_and_manifest(collected):
    out, built, manifest, _, iterations = collected
    summary = pq.read_table(out / "summary.parquet")
    assert summary["scenario_id"].to_pylist() == built.scenarios["scenario_id"].tolist()
    meta = io.read_metadata(out / "summary.parquet")
    assert meta["config_hash"] == grid.config_hash(CONFIG) == manifest["config_hash"]
    assert meta["grid_digest"] == built.digest and meta["version"] == sweep.__version__
    assert meta["units"]["downtime_ms"] == "ms"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["scenarios"] == 4 and len(manifest["chunks"]) == built.plan.n_chunks == 2
    # written a chunk at a time (the job holds one chunk, whatever the grid size)
    assert pq.ParquetFile(out / "summary.parquet").metadata.num_row_groups == 2
    assert manifest["status"] == dict(Counter(summary["status"].to_pylist()))

    dataset = pads.dataset(out / "iterations", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == manifest["iteration_rows"] > 0
    assert set(table["chunk"].to_pylist()) == {0, 1}
    assert set(table["scenario_id"].to_pylist()) == set(summary["scenario_id"].to_pylist())
    common = io.read_metadata(out / "iterations" / "_common_metadata")
    assert common["config_hash"] == manifest["config_hash"] and common["table"] == "iterations"

    # the dataset's files are the chunk files themselves (hard links), never rewritten
    for chunk, source in enumerate(iterations):
        linked = out / manifest["chunks"][chunk]["iterations"]
        assert linked.samefile(source)


def test_iterations_dictionary_encode_the_scenario_id(collected):
    _, _, _, _, iterations = collected
    column = pq.ParquetFile(iterations[0]).metadata.row_group(0).column(0)
    assert column.path_in_schema == "scenario_id"
    assert column.dictionary_page_offset is not None and "RLE_DICTIONARY" in column.encodings
    assert column.compression == "ZSTD"


def test_collect_refuses_chunk_files_of_another_grid(collected, tmp_path):
    _, built, _, summaries, iterations = collected
    wrong = list(built.digests)
    wrong[1] = "0" * 16
    with pytest.raises(ValueError, match="other scenarios than chunk 1"):
        pipeline.collect(
            CONFIG,
            summaries,
            iterations,
            tmp_path / "s.parquet",
            tmp_path / "it",
            tmp_path / "m.json",
            wrong,
        )
    with pytest.raises(ValueError, match="written for chunk 1, not 0"):
        pipeline.collect(
            CONFIG,
            summaries[::-1],
            iterations[::-1],
            tmp_path / "s.parquet",
            tmp_path / "it",
            tmp_path / "m.json",
        )
    assert not (tmp_path / "it").exists()


def test_collect_refuses_chunks_of_another_model_version(collected, tmp_path, monkeypatch):
    _, built, _, summaries, iterations = collected
    monkeypatch.setattr(io, "code_hash", lambda: "f" * 16)
    with pytest.raises(ValueError, match="another version of the model"):
        pipeline.collect(
            CONFIG,
            summaries,
            iterations,
            tmp_path / "s.parquet",
            tmp_path / "it",
            tmp_path / "m.json",
            built.digests,
        )


def test_simulate_chunk_checks_the_planned_digest(tmp_path):
    with pytest.raises(RuntimeError, match="planned"):
        pipeline.simulate_chunk(CONFIG, 0, tmp_path / "s", tmp_path / "i", "0" * 16)
    assert list(tmp_path.iterdir()) == []


def test_write_grid_checks_the_checked_digest(tmp_path):
    """The grid job normalises the rows once, trusting the main process's check, and writes
    them only if they hash to the grid it checked."""
    with pytest.raises(RuntimeError, match="checked 0000000000000000"):
        pipeline.write_grid(CONFIG, tmp_path / "grid.parquet", checked="0" * 16)
    assert list(tmp_path.iterdir()) == []


def test_checking_and_writing_a_grid_hold_little_per_scenario(tmp_path, monkeypatch):
    """Memory that grows with the grid, from Python's allocation tracer (numpy's buffers
    included): the main process's check keeps the ids (8 bytes a scenario) and a flag each,
    the grid job nothing.  An argsort with its gathers took 33 bytes a scenario, the job
    keeping its ids for the digest 8: 3.6 GB and 0.8 GB at 100 million scenarios."""
    monkeypatch.setattr(grid, "BLOCK_ROWS", 2_000)  # a block: far less than the ids

    def sized(rates: int) -> dict:  # rates x 1,000 scenarios
        return {"chunk_size": 2_000, "axes": {
            "dirty_rate": {"start": 0, "stop": rates - 1, "num": rates},
            "downtime_limit": {"start": "1ms", "stop": "1000ms", "num": 1000}}}  # fmt: skip

    def peak(work: Callable[[], object]) -> int:
        tracemalloc.start()
        try:
            work()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    grid.build(sized(10))  # first calls allocate caches once: not the grid's
    check = [peak(lambda n=n: grid.build(sized(n))) for n in (50, 250)]
    assert (check[1] - check[0]) / 200_000 <= 12, check
    digests = {n: grid.build(sized(n)).digest for n in (50, 250)}
    monkeypatch.setattr(grid, "BLOCK_ROWS", 10_000)  # fewer row groups to write
    write = [
        peak(lambda n=n: pipeline.write_grid(sized(n), tmp_path / f"{n}.parquet", digests[n]))
        for n in (50, 250)
    ]
    assert (write[1] - write[0]) / 200_000 <= 2, write


def test_outputs_are_byte_identical_across_runs(collected, tmp_path):
    out, _, _, summaries, iterations = collected
    pipeline.write_grid(CONFIG, tmp_path / "grid.parquet")
    pipeline.simulate_chunk(CONFIG, 1, tmp_path / "s.parquet", tmp_path / "i.parquet")
    assert (tmp_path / "grid.parquet").read_bytes() == (out / "grid.parquet").read_bytes()
    assert (tmp_path / "s.parquet").read_bytes() == summaries[1].read_bytes()
    assert (tmp_path / "i.parquet").read_bytes() == iterations[1].read_bytes()

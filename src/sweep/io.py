"""Parquet in and out: Arrow schemas with units and docs, provenance metadata, atomic writes.

Every file the pipeline writes carries, in its Arrow schema:

* per field: ``doc``, ``unit`` and ``qemu`` (the ``query-migrate`` field it mirrors), from
  :mod:`sweep.schema` and :data:`sweep.params.PARAMETERS`;
* per file (keys ``precopy_sweep.*``): the table name, the package version, ``units`` (a JSON
  map column -> unit), and provenance: ``config_hash`` and ``grid_digest`` for whole-sweep
  files, ``chunk`` and ``chunk_digest`` for chunk files, ``code_hash`` (the model's sources).

:func:`read_metadata` decodes those keys.  Writes go to a hidden temporary file in the target
directory and are renamed into place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__, schema
from .params import PARAMETERS, unit_of

__all__ = [
    "COMPRESSION",
    "METADATA_PREFIX",
    "code_hash",
    "grid_schema",
    "iterations_schema",
    "read_metadata",
    "summary_schema",
    "table_from_frame",
    "table_writer",
    "unit_of",
    "with_metadata",
    "write_metadata_file",
    "write_table",
    "write_text",
]

COMPRESSION = "zstd"
METADATA_PREFIX = "precopy_sweep."
# Sources whose change changes simulated numbers or files: a change reruns every chunk.
# tests/test_io.py checks that every module sweep.api imports (transitively) is listed.
MODEL_FILES = (
    "engine.py", "reference.py", "workloads.py", "ring.py", "params.py", "units.py", "numerics.py",
    "api.py", "schema.py", "io.py",
)  # fmt: skip

_CATEGORY = pa.dictionary(pa.int8(), pa.string())


def _arrow_type(dtype: str) -> pa.DataType:
    return {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}.get(dtype, _CATEGORY)


def _field(name: str, type_: pa.DataType, doc: str, qemu: str = "", **extra: str) -> pa.Field:
    metadata = {"doc": doc, "unit": unit_of(name), "qemu": qemu, **extra}
    return pa.field(name, type_, metadata=metadata)


def _parameter_fields() -> list[pa.Field]:
    return [
        _field(p.column, _arrow_type(p.dtype), p.doc, p.qemu, parameter=p.name) for p in PARAMETERS
    ]


def _columns_field(column: schema.Column, name: str | None = None) -> pa.Field:
    return _field(name or column.name, column.type, column.doc, column.qemu)


def summary_schema() -> pa.Schema:
    """scenario_id, every parameter's canonical column, then the outcomes of schema.SUMMARY."""
    params = _parameter_fields()
    taken = {f.name for f in params} & {c.name for c in schema.SUMMARY}
    if taken:
        raise ValueError(f"outcome columns repeat parameter columns: {sorted(taken)}")
    outcomes = [_columns_field(column) for column in schema.SUMMARY[1:]]
    return pa.schema([_columns_field(schema.SUMMARY[0]), *params, *outcomes])


def grid_schema() -> pa.Schema:
    """scenario_id, chunk, then every parameter's canonical column."""
    chunk = _field("chunk", pa.int32(), "The simulate job (chunk of the grid) of the scenario.")
    return pa.schema([_columns_field(schema.SUMMARY[0]), chunk, *_parameter_fields()])


def iterations_schema() -> pa.Schema:
    return pa.schema([_columns_field(c) for c in schema.ITERATIONS])


def table_from_frame(frame: pd.DataFrame, target: pa.Schema) -> pa.Table:
    """A pandas frame -> an Arrow table of `target`, column by column and by position.

    Names are checked against the target, in order.
    """
    if frame.shape[1] != len(target):
        raise ValueError(
            f"expected {len(target)} columns ({', '.join(target.names)}), got "
            f"{frame.shape[1]} ({', '.join(map(str, frame.columns))})"
        )
    arrays = []
    for i, field in enumerate(target):
        given = str(frame.columns[i])
        if given != field.name:
            raise ValueError(f"column {i}: expected {field.name!r}, got {given!r}")
        arrays.append(pa.array(frame.iloc[:, i], type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=target.remove_metadata()).cast(target)


def with_metadata(
    table_or_schema: pa.Table | pa.Schema, table: str, **provenance: object
) -> pa.Table | pa.Schema:
    """Attach the file-level metadata: table name, version, units and provenance values."""
    target = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    units = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in target}
    values = {"table": table, "version": __version__, **provenance, "units": units}
    metadata = dict(target.metadata or {})
    metadata.pop(b"pandas", None)
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        metadata[(METADATA_PREFIX + key).encode()] = text.encode()
    if isinstance(table_or_schema, pa.Table):
        return table_or_schema.replace_schema_metadata(metadata)
    return table_or_schema.with_metadata(metadata)


def read_metadata(path: str | os.PathLike[str] | pa.Schema) -> dict[str, Any]:
    """The ``precopy_sweep.*`` metadata of a Parquet file (or schema), decoded."""
    target = path if isinstance(path, pa.Schema) else pq.read_schema(path)
    out: dict[str, Any] = {}
    for key, value in (target.metadata or {}).items():
        name = key.decode()
        if name.startswith(METADATA_PREFIX):
            text = value.decode()
            short = name[len(METADATA_PREFIX) :]
            out[short] = json.loads(text) if short in ("units", "chunk", "scenarios") else text
    return out


def umask() -> int:
    """The process's umask (mkstemp and mkdtemp ignore it: they create 0600 and 0700)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path: Path) -> tuple[Path, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(handle, 0o666 & ~umask())
    os.close(handle)
    return path, Path(tmp)


@contextlib.contextmanager
def table_writer(
    path: str | os.PathLike[str],
    schema_: pa.Schema,
    *,
    dictionary: bool | Sequence[str] = True,
) -> Iterator[pq.ParquetWriter]:
    """A zstd Parquet file written piece by piece (``writer.write_table(piece)``; each piece
    its own row groups) to a temporary file beside `path`, renamed into place only when the
    block ends without an error: a job holds one piece in memory, never half a file on disk."""
    target, tmp = _atomic(Path(path))
    try:
        with pq.ParquetWriter(
            tmp,
            schema_,
            compression=COMPRESSION,
            use_dictionary=dictionary if isinstance(dictionary, bool) else list(dictionary),
        ) as writer:
            yield writer
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    dictionary: bool | Sequence[str] = True,
    row_group_size: int | None = None,
) -> Path:
    """Write zstd Parquet to a temporary file beside `path`, then rename it into place."""
    with table_writer(path, table.schema, dictionary=dictionary) as writer:
        writer.write_table(table, row_group_size=row_group_size)
    return Path(path)


def write_metadata_file(schema_: pa.Schema, path: str | os.PathLike[str]) -> Path:
    """A ``_common_metadata`` file: the dataset's schema and metadata, no rows."""
    target, tmp = _atomic(Path(path))
    try:
        pq.write_metadata(schema_, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """A text file written whole or not at all (a temporary file beside it, then a rename)."""
    target, tmp = _atomic(Path(path))
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_json(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Pretty JSON, atomically (for the manifest)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_text(text, path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def code_hash() -> str:
    """SHA-256 (16 hex digits) of the model's sources and the package version."""
    h = hashlib.sha256(__version__.encode())
    here = Path(__file__).parent
    for name in MODEL_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]

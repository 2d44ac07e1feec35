"""Generated documentation: the parameter and column references, from the code.

``docs/pipeline.md`` holds blocks between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->`` (``# BEGIN GENERATED: name`` in YAML); this module writes
them from :data:`sweep.params.PARAMETERS` and the Arrow schemas of :mod:`sweep.io` (built from
:mod:`sweep.schema`), so nothing is written twice::

    python -m sweep.docs README.md docs/pipeline.md workflow/schemas/config.schema.yaml  # rewrite
    python -m sweep.docs --check README.md docs/pipeline.md workflow/schemas/config.schema.yaml

The schema's list of parameter names is such a block too: after adding a parameter to
:data:`sweep.params.PARAMETERS`, run the first command (``tests/test_workflow.py`` fails until
then).

:func:`parameter_reference` and :func:`column_reference` return the Markdown for other pages.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from . import io
from .params import PARAMETERS, Param
from .units import format_bytes

__all__ = [
    "BLOCKS",
    "column_reference",
    "parameter_enum",
    "parameter_reference",
    "render",
    "table_reference",
]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(param: Param) -> str:
    value = param.default
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def _bound(param: Param, value: float | None) -> str:
    if value is None:
        return ""
    if param.kind == "size":
        return format_bytes(value).replace(".00 ", " ")
    if param.kind == "rate":
        return format_bytes(value).replace(".00 ", " ") + "/s"
    return f"{value:g}"


def _allowed(param: Param) -> str:
    if param.kind in ("choice", "bool", "version"):
        return param.forms
    low, high = _bound(param, param.minimum), _bound(param, param.maximum)
    unit = io.unit_of(param.column)
    unit = f" {unit}" if unit and param.kind not in ("size", "rate") else ""
    if low and high:
        span = f"{low} to {high}{unit}"
    elif low or high:
        span = f"{'>= ' + low if low else '<= ' + high}{unit}"
    else:
        span = ""
    share = "; or a share of ram_size such as `25%`" if param.relative_to_ram else ""
    return f"{span}{share}" if span or share else ""


def parameter_reference() -> str:
    """Markdown: every scenario parameter (config key), its column, unit, default and range."""
    lines = [
        "| config key | column | unit | default | allowed | QEMU | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PARAMETERS:
        qemu = f"`{p.qemu}`" if p.qemu else ""
        lines.append(
            f"| `{p.name}` | `{p.column}` | {io.unit_of(p.column)} | {_default(p)} "
            f"| {_cell(_allowed(p))} "
            f"| {qemu} | {_cell(p.doc)} |"
        )
    return "\n".join(lines)


def _type(field: pa.Field) -> str:
    if pa.types.is_dictionary(field.type):
        return "string (dictionary)"
    return str(field.type)


def table_reference(schema: pa.Schema, parameters: bool = True) -> str:
    """Markdown: one row per column of an Arrow schema, from its field metadata."""
    lines = ["| column | type | unit | query-migrate | meaning |", "|---|---|---|---|---|"]
    for field in schema:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        if "parameter" in meta and not parameters:
            continue
        qemu = f"`{meta['qemu']}`" if meta.get("qemu") else ""
        doc = meta.get("doc", "")
        if "parameter" in meta:
            doc = f"Parameter `{meta['parameter']}`: {doc}"
        lines.append(
            f"| `{field.name}` | {_type(field)} | {meta.get('unit', '')} | {qemu} | {_cell(doc)} |"
        )
    return "\n".join(lines)


def column_reference() -> str:
    """Markdown: the columns of summary.parquet, the iterations dataset and grid.parquet."""
    n_params = len(PARAMETERS)
    return "\n".join(
        [
            "#### `results/summary.parquet`: one row per scenario",
            "",
            f"`scenario_id`, then the {n_params} parameter columns (as in the parameter table "
            "above, in that order), then the outcome:",
            "",
            table_reference(io.summary_schema(), parameters=False),
            "",
            "#### `results/iterations/`: one row per dirty-bitmap sync",
            "",
            "A hive-partitioned dataset, `chunk=N/part-0.parquet` (N = 0, 1, ...): readers add "
            "the partition column `chunk`, an integer (the simulate job).",
            "",
            table_reference(io.iterations_schema()),
            "",
            "#### `results/grid.parquet`: one row per scenario, before simulation",
            "",
            f"`scenario_id`, `chunk` (int32, the simulate job), then the {n_params} parameter "
            "columns.",
        ]
    )


def parameter_enum() -> str:
    """YAML list items: the parameter names, for the config schema's ``parameter`` enum."""
    return "\n".join(f"- {p.name}" for p in PARAMETERS)


BLOCKS: dict[str, Callable[[], str]] = {
    "parameters": parameter_reference,
    "columns": column_reference,
    "parameter_enum": parameter_enum,
}
# A block starts with a line "<!-- BEGIN GENERATED: name -->" (Markdown) or
# "# BEGIN GENERATED: name" (YAML) and ends with the matching END line; the block's lines
# take the indentation of its BEGIN line.
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)(?P<open><!--|#) BEGIN GENERATED: (?P<name>[a-z_]+)\b[^\n]*\n"
    r"(?P<body>.*?)"
    r"^(?P<end>[ \t]*(?:<!--|#) END GENERATED: (?P=name)(?: -->)?)$",
    re.DOTALL | re.MULTILINE,
)


def render(text: str) -> str:
    """`text` with every generated block rewritten."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        begin = match.group(0)[: match.start("body") - match.start(0)]
        body = textwrap.indent(BLOCKS[name]() + "\n", match.group("indent"))
        return f"{begin}{body}{match.group('end')}"

    return _BLOCK.sub(replace, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.docs", description="Rewrite the generated blocks of Markdown files."
    )
    parser.add_argument("files", nargs="+", type=Path, help="Markdown files with generated blocks")
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(
            "out of date: " + ", ".join(map(str, stale)) + " (run: python -m sweep.docs FILE)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rule report_downtime: the downtime figures (sweep.report.downtime)."""

import importlib
import sys
from pathlib import Path


def load(module: str):  # noqa: ANN201
    """A sweep module; with --sdm conda the rule's env lacks the package, so use src/."""
    try:
        return importlib.import_module(module)
    except ImportError:
        sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
        return importlib.import_module(module)


pipeline, report = load("sweep.pipeline"), load("sweep.report")
with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    report.downtime(
        snakemake.input.summary,
        vs_limit=snakemake.output.vs_limit,
        expected=snakemake.output.expected,
        violations=snakemake.output.violations,
    )

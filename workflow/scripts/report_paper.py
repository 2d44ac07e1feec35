"""Rule paper: the paper figures as PDF and SVG (sweep.report.paper)."""

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
    outdir = Path(snakemake.output[0]).parent  # every paper figure sits in paper_dir
    written = report.paper(snakemake.input.summary, snakemake.input.iterations, outdir)
    missing = sorted(set(map(str, snakemake.output)) - {p.as_posix() for p in written})
    if missing:
        raise RuntimeError(f"paper figures not written: {missing}")

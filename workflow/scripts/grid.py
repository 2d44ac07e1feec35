"""Rule grid: the config -> results/grid.parquet (every scenario, its id and chunk)."""

import importlib
import sys
from pathlib import Path


def load_pipeline():  # noqa: ANN201
    """sweep.pipeline; with --sdm conda the rule's env lacks the package, so use src/."""
    try:
        return importlib.import_module("sweep.pipeline")
    except ImportError:
        sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
        return importlib.import_module("sweep.pipeline")


pipeline = load_pipeline()
with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    pipeline.write_grid(snakemake.config, snakemake.output[0])

"""Rule simulate: one chunk of the grid (rebuilt from the config) through the engine."""

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
    pipeline.simulate_chunk(
        snakemake.config,
        int(snakemake.wildcards.chunk),
        summary_path=snakemake.output.summary,
        iterations_path=snakemake.output.iterations,
        expected_digest=snakemake.params.scenarios,
    )

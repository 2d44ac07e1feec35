"""Rule collect: chunk files -> summary.parquet, the iterations dataset and manifest.json."""

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
    pipeline.collect(
        snakemake.config,
        summary_paths=snakemake.input.summaries,
        iterations_paths=snakemake.input.iterations,
        summary_out=snakemake.output.summary,
        iterations_out=snakemake.output.iterations,
        manifest_out=snakemake.output.manifest,
        digests=snakemake.params.digests,
    )

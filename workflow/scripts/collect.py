"""Rule collect: chunk files -> summary.parquet, the iterations dataset and manifest.json."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline

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

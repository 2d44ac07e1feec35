"""Rule simulate: one chunk of the grid (rebuilt from the config) through the engine."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline

with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    pipeline.simulate_chunk(
        snakemake.config,
        int(snakemake.wildcards.chunk),
        summary_path=snakemake.output.summary,
        iterations_path=snakemake.output.iterations,
        expected_digest=snakemake.params.scenarios,
    )

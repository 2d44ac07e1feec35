"""Rule report_convergence: the convergence figures (sweep.report.convergence)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline, report

with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    report.convergence(
        snakemake.input.summary,
        snakemake.input.iterations,
        phase_map=snakemake.output.phase_map,
        syncs=snakemake.output.syncs,
        remaining=snakemake.output.remaining,
    )

"""Rule report_downtime: the downtime figures (sweep.report.downtime)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline, report

with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    report.downtime(
        snakemake.input.summary,
        vs_limit=snakemake.output.vs_limit,
        expected=snakemake.output.expected,
        violations=snakemake.output.violations,
    )

"""Rule report_planner: planner tables and heatmaps (sweep.report.planner)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline, report

out = snakemake.output
with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    report.planner(
        snakemake.input.summary,
        downtime_table=(out.downtime_parquet, out.downtime_csv, out.downtime_html),
        bandwidth_table=(out.bandwidth_parquet, out.bandwidth_csv, out.bandwidth_html),
        downtime_figure=out.downtime_figure,
        bandwidth_figure=out.bandwidth_figure,
        time_cap_s=snakemake.params.time_cap_s,
    )

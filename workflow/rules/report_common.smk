# Helpers of the report rules (report.smk): targets, settings and resources.  Functions only,
# as `snakemake --lint` asks; needs GRID and REPORT_SETTINGS (sweep.report.settings: the
# config's `report:` section, checked) from the Snakefile.


def report_targets():
    """Every figure and table of the report rules: add these to the default targets."""
    return [
        "results/report/convergence/phase_map.png",
        "results/report/convergence/syncs_vs_ratio.png",
        "results/report/convergence/remaining_bytes.png",
        "results/report/downtime/downtime_vs_limit.png",
        "results/report/downtime/expected_vs_actual.png",
        "results/report/downtime/limit_violations.png",
        "results/report/planner/downtime_limit.png",
        "results/report/planner/bandwidth.png",
        "results/report/planner/downtime_limit.parquet",
        "results/report/planner/downtime_limit.csv",
        "results/report/planner/downtime_limit.html",
        "results/report/planner/bandwidth.parquet",
        "results/report/planner/bandwidth.csv",
        "results/report/planner/bandwidth.html",
    ]


def paper_targets():
    """The paper figures (PDF and SVG) of `snakemake --configfile config/paper.yaml paper`."""
    from sweep.report import paper_targets as targets

    return targets(REPORT_SETTINGS.paper_dir)


def report_mem_mb(wildcards):
    """The report steps read the summary a piece at a time: their peak stays under 550 MB
    whatever the grid size (`python -m sweep.bench_reports`, docs/performance.md)."""
    return 800


def report_runtime(wildcards):
    """Minutes; a million scenarios take well under one."""
    return 5 + GRID.plan.size // 500_000

# Helpers of the report rules (report.smk): targets, settings and resources.  Functions only,
# as `snakemake --lint` asks; needs GRID and config from the Snakefile.


def report_setting(key, default=None):
    """A value of the config's `report:` section (the grid ignores that section)."""
    return (config.get("report") or {}).get(key, default)


def planner_time_cap_s():
    """`report: planner_time_cap` ("5min", "300s", or seconds) or None: each scenario's
    own max_time is then the cap."""
    value = report_setting("planner_time_cap")
    if value is None:
        return None
    from sweep.units import parse_duration

    return parse_duration(value, "s") / 1000.0


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


def paper_dir():
    return report_setting("paper_dir", "results/paper")


def paper_targets():
    """The paper figures (PDF and SVG) of `snakemake --configfile config/paper.yaml paper`."""
    from sweep.report import paper_targets as targets

    return targets(paper_dir())


def report_mem_mb(wildcards):
    """The report steps read the summary a piece at a time: their peak stays under 550 MB
    whatever the grid size (`python -m sweep.bench_reports`, docs/performance.md)."""
    return 800


def report_runtime(wildcards):
    """Minutes; a million scenarios take well under one."""
    return 5 + GRID.plan.size // 500_000

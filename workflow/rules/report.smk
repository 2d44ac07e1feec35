# The report: figures and tables of the collected sweep, each flagged for `snakemake --report`
# (docs/reports.md).  Only these few aggregate outputs are flagged, never per-chunk files:
# building a report costs time quadratic in the number of flagged items.
# The Snakefile includes this file after collect.smk; report_targets() lists the outputs and
# they join the default targets through EXTRA_TARGETS (common.smk).


include: "report_common.smk"


EXTRA_TARGETS.extend(report_targets())


rule report_convergence:
    """Phase map, syncs and bytes against the dirty ratio, remaining-bytes curves."""
    input:
        summary="results/summary.parquet",
        iterations="results/iterations",
    output:
        phase_map=report(
            "results/report/convergence/phase_map.png",
            caption="../report/phase_map.rst",
            category="Convergence",
            subcategory="Where it converges",
            labels={"figure": "phase map: converged or not, total time"},
        ),
        syncs=report(
            "results/report/convergence/syncs_vs_ratio.png",
            caption="../report/syncs_vs_ratio.rst",
            category="Convergence",
            subcategory="Cost of converging",
            labels={"figure": "syncs and data sent: against dirty rate / bandwidth"},
        ),
        remaining=report(
            "results/report/convergence/remaining_bytes.png",
            caption="../report/remaining_bytes.rst",
            category="Convergence",
            subcategory="Cost of converging",
            labels={"figure": "remaining bytes: per sync, a few scenarios"},
        ),
    log:
        "results/logs/report/convergence.log",
    benchmark:
        "results/benchmarks/report/convergence.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=report_mem_mb,
        runtime=report_runtime,
    script:
        "../scripts/report_convergence.py"


rule report_downtime:
    """Downtime against the limit, QEMU's expected-downtime against the actual one, and
    where the limit is violated."""
    input:
        summary="results/summary.parquet",
    output:
        vs_limit=report(
            "results/report/downtime/downtime_vs_limit.png",
            caption="../report/downtime_vs_limit.rst",
            category="Downtime",
            subcategory="Is the limit respected?",
            labels={"figure": "downtime vs limit: distribution per limit"},
        ),
        expected=report(
            "results/report/downtime/expected_vs_actual.png",
            caption="../report/expected_vs_actual.rst",
            category="Downtime",
            subcategory="QEMU's estimate",
            labels={"figure": "expected vs actual: expected-downtime vs downtime"},
        ),
        violations=report(
            "results/report/downtime/limit_violations.png",
            caption="../report/limit_violations.rst",
            category="Downtime",
            subcategory="Is the limit respected?",
            labels={"figure": "limit violations: share over the limit, per cell"},
        ),
    log:
        "results/logs/report/downtime.log",
    benchmark:
        "results/benchmarks/report/downtime.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=report_mem_mb,
        runtime=report_runtime,
    script:
        "../scripts/report_downtime.py"


rule report_planner:
    """What settings a guest needs: the smallest downtime limit per (bandwidth, dirty rate)
    and the smallest bandwidth per (downtime limit, dirty rate), as tables and heatmaps.
    """
    input:
        summary="results/summary.parquet",
    output:
        downtime_figure=report(
            "results/report/planner/downtime_limit.png",
            caption="../report/planner_downtime_limit.rst",
            category="Planner",
            subcategory="Downtime limit needed",
            labels={
                "figure": "smallest downtime limit that converges",
                "view": "heatmap",
            },
        ),
        downtime_parquet="results/report/planner/downtime_limit.parquet",
        downtime_csv="results/report/planner/downtime_limit.csv",
        downtime_html=report(
            "results/report/planner/downtime_limit.html",
            caption="../report/planner_downtime_limit_table.rst",
            category="Planner",
            subcategory="Downtime limit needed",
            labels={
                "figure": "smallest downtime limit that converges",
                "view": "table",
            },
        ),
        bandwidth_figure=report(
            "results/report/planner/bandwidth.png",
            caption="../report/planner_bandwidth.rst",
            category="Planner",
            subcategory="Bandwidth needed",
            labels={"figure": "smallest bandwidth that converges", "view": "heatmap"},
        ),
        bandwidth_parquet="results/report/planner/bandwidth.parquet",
        bandwidth_csv="results/report/planner/bandwidth.csv",
        bandwidth_html=report(
            "results/report/planner/bandwidth.html",
            caption="../report/planner_bandwidth_table.rst",
            category="Planner",
            subcategory="Bandwidth needed",
            labels={"figure": "smallest bandwidth that converges", "view": "table"},
        ),
    log:
        "results/logs/report/planner.log",
    benchmark:
        "results/benchmarks/report/planner.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=report_mem_mb,
        runtime=report_runtime,
    params:
        time_cap_s=REPORT_SETTINGS.planner_time_cap_s,
    script:
        "../scripts/report_planner.py"


rule paper:
    """Paper figures, PDF and SVG, byte-identical from run to run:
    `snakemake --configfile config/paper.yaml paper`."""
    input:
        summary="results/summary.parquet",
        iterations="results/iterations",
    output:
        paper_targets(),
    log:
        "results/logs/report/paper.log",
    benchmark:
        "results/benchmarks/report/paper.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=report_mem_mb,
        runtime=report_runtime,
    script:
        "../scripts/report_paper.py"

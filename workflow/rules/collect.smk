rule collect:
    """The chunk files -> results/summary.parquet (one table), results/iterations/ (a hive
    dataset of hard links to the chunk files: never rewritten) and results/manifest.json.
    """
    input:
        summaries=chunk_files(GRID, "summary"),
        iterations=chunk_files(GRID, "iterations"),
    output:
        summary="results/summary.parquet",
        iterations=directory("results/iterations"),
        manifest="results/manifest.json",
    log:
        "results/logs/collect.log",
    benchmark:
        "results/benchmarks/collect.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 2
    resources:
        mem_mb=collect_mem_mb,
        runtime=whole_grid_runtime,
    params:
        digests=list(GRID.digests),
        config=sweep_grid.config_hash(config),
        code=sweep_io.code_hash(),
    script:
        "../scripts/collect.py"

rule grid:
    """Every scenario of the sweep: scenario_id, chunk and canonical parameters."""
    output:
        "results/grid.parquet",
    log:
        "results/logs/grid.log",
    benchmark:
        "results/benchmarks/grid.tsv"
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=grid_mem_mb,
        runtime=whole_grid_runtime,
    params:
        grid=GRID.digest,
        config=sweep_grid.config_hash(config),
        code=sweep_io.code_hash(),
    script:
        "../scripts/grid.py"

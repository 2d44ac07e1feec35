rule simulate:
    """One chunk of the grid through the engine: its summary and iterations tables.

    The job rebuilds its scenarios from the config (sweep.grid), so it has no input file:
    it reruns when `params.scenarios` (what the chunk holds) or `params.code` (the model's
    sources) change, not whenever anything in the config changes."""
    output:
        summary="results/chunks/chunk-{chunk}.summary.parquet",
        iterations="results/chunks/chunk-{chunk}.iterations.parquet",
    log:
        "results/logs/simulate/chunk-{chunk}.log",
    benchmark:
        "results/benchmarks/simulate/chunk-{chunk}.tsv"
    wildcard_constraints:
        chunk=r"\d\d\d\d\d+",
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=simulate_mem_mb,
        runtime=simulate_runtime,
    params:
        scenarios=chunk_digest,
        code=sweep_io.code_hash(),
    script:
        "../scripts/simulate.py"

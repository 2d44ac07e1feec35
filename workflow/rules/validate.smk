# Real-QEMU validation (issue 5): `snakemake --cores 2 validate`.
# Runs the grid of config/validation.yaml as real migrations (QEMU 7.2, TCG, loopback), the
# model on the same scenarios, and renders the "Fidelity" section of the report.  Only this
# target needs qemu-system-x86_64; validate_real stops with the install command without it.


rule validate_real:
    """Every run of the validation grid, one migration at a time (timing-sensitive, so
    the job takes all cores): results/validation/real/<run>.<table>.parquet."""
    input:
        config=VALIDATION_CONFIG,
    output:
        directory("results/validation/real"),
    log:
        "results/logs/validate/real.log",
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: workflow.cores
    resources:
        mem_mb=2048,
        runtime=60,
    script:
        "../scripts/validate_real.py"


rule validate_calibrate:
    """The model's machine-dependent inputs measured on this host (python -m
    sweep.qemu.calibrate), for `calibration_source: measure` in config/validation.yaml.
    """
    output:
        measured="results/validation/calibration.json",
        inputs="results/validation/calibration.yaml",
    log:
        "results/logs/validate/calibrate.log",
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: workflow.cores
    resources:
        mem_mb=2048,
        runtime=10,
    script:
        "../scripts/validate_calibrate.py"


rule validate_compare:
    """The model on the real runs' scenarios: per-run comparison, sync curves, fidelity table."""
    input:
        unpack(validate_compare_inputs),
    output:
        comparison="results/validation/comparison.parquet",
        curves="results/validation/curves.parquet",
        table="results/validation/fidelity.tsv",
        markdown="results/validation/fidelity.md",
    log:
        "results/logs/validate/compare.log",
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/validate_compare.py"


rule validate:
    """Target: the fidelity figures and table, flagged for the report's Fidelity category."""
    input:
        comparison="results/validation/comparison.parquet",
        curves="results/validation/curves.parquet",
        table="results/validation/fidelity.tsv",
    output:
        metrics=report(
            "results/validation/fidelity_metrics.svg",
            caption="../report/fidelity_metrics.rst",
            category="Fidelity",
        ),
        curves=report(
            "results/validation/fidelity_curves.svg",
            caption="../report/fidelity_curves.rst",
            category="Fidelity",
        ),
        table=report(
            "results/validation/fidelity.html",
            caption="../report/fidelity_table.rst",
            category="Fidelity",
        ),
    log:
        "results/logs/validate/figures.log",
    localrule: True
    conda:
        "../envs/sweep.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/validate_figures.py"

"""Rule validate_compare: model versus real runs (logic in sweep.validation)."""

import sys
from pathlib import Path

import yaml

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep.validation import compare_directory, fidelity_markdown, load_config

with open(snakemake.log[0], "w") as log:
    measured = None
    measured_file = snakemake.input.get("calibration")  # calibration_source: measure
    if measured_file:
        measured = yaml.safe_load(Path(measured_file).read_text())
        print(f"this host's calibration: {measured}", file=log)
    comparison, curves, table = compare_directory(
        snakemake.input.real, load_config(snakemake.input.config), measured
    )
    comparison.to_parquet(snakemake.output.comparison, index=False)
    curves.to_parquet(snakemake.output.curves, index=False)
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    Path(snakemake.output.markdown).write_text(fidelity_markdown(table, comparison))
    print(table.to_string(index=False), file=log)

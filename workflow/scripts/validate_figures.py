"""Rule validate: the fidelity figures and HTML table (logic in sweep.validation)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
import pandas as pd

from sweep.validation import plot_curves, plot_metrics, table_html

with open(snakemake.log[0], "w") as log:
    comparison = pd.read_parquet(snakemake.input.comparison)
    plot_metrics(comparison, snakemake.output.metrics)
    plot_curves(pd.read_parquet(snakemake.input.curves), snakemake.output.curves)
    table = pd.read_csv(snakemake.input.table, sep="\t", keep_default_na=False,
                        na_values=[""])  # fmt: skip
    table_html(table, comparison, snakemake.output.table)
    print(f"{len(comparison)} runs", file=log)

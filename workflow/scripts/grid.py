"""Rule grid: the config -> results/grid.parquet (every scenario, its id and chunk)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline

with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    # the main process checked the grid (load_grid): normalise its rows once, as they are written
    pipeline.write_grid(snakemake.config, snakemake.output[0], checked=snakemake.params.grid)

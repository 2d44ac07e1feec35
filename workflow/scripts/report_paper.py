"""Rule paper: the paper figures as PDF and SVG (sweep.report.paper)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep import pipeline, report

with pipeline.job(snakemake.log[0], snakemake.threads, snakemake.resources.tmpdir):
    outdir = Path(snakemake.output[0]).parent  # every paper figure sits in paper_dir
    written = report.paper(snakemake.input.summary, snakemake.input.iterations, outdir)
    missing = sorted(set(map(str, snakemake.output)) - {p.as_posix() for p in written})
    if missing:
        raise RuntimeError(f"paper figures not written: {missing}")

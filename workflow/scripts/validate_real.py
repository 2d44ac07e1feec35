"""Rule validate_real: run the real-QEMU validation grid (logic in sweep.validation)."""

import sys
from pathlib import Path

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep.qemu import QemuNotFoundError
from sweep.validation import load_config, run_grid

with open(snakemake.log[0], "w") as log:
    try:
        run_grid(
            load_config(snakemake.input.config),
            snakemake.output[0],
            log=lambda line: print(line, file=log, flush=True),
        )
    except QemuNotFoundError as error:
        print(error, file=log)
        sys.exit(f"validate: {error}")

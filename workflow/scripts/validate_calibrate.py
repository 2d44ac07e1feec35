"""Rule validate_calibrate: measure the model's inputs on this host (logic in
sweep.qemu.calibrate)."""

import json
import sys
from pathlib import Path

import yaml

# The package of this checkout (under --sdm conda the rule's environment does not have it).
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from sweep.qemu import QemuNotFoundError
from sweep.qemu.calibrate import calibrate, model_inputs

with open(snakemake.log[0], "w") as log:
    try:
        measured = calibrate()
    except QemuNotFoundError as error:
        print(error, file=log)
        sys.exit(f"validate: {error}")
    inputs = model_inputs(measured)
    Path(snakemake.output.measured).write_text(json.dumps(measured, indent=2) + "\n")
    Path(snakemake.output.inputs).write_text(yaml.safe_dump(inputs, sort_keys=False))
    print(yaml.safe_dump(inputs, sort_keys=False), file=log)

# Helpers shared by the rules (no rules here, as `snakemake --lint` asks).
# The logic lives in the package: sweep.grid (config -> grid), sweep.pipeline (the steps).

import warnings

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

try:
    from sweep import ParameterError
    from sweep import grid as sweep_grid
    from sweep import io as sweep_io
    from sweep import report as sweep_report
    from sweep import validation as sweep_validation
    from sweep.pipeline import chunk_name
except ImportError as error:
    raise WorkflowError(
        f"cannot import the sweep package ({error}); install it first: "
        "`make run` does, or `pip install -r requirements.txt -e .`"
    ) from error


# More targets for the default run; a rule file included after this one appends its own,
# e.g. the report's figures, with  EXTRA_TARGETS.extend([...])
EXTRA_TARGETS = []


def validate_config(config, schema):
    """The schema's check, with the package's message where both refuse a value.

    jsonschema's messages name the value but not its key ("0 is less than the minimum of
    1"); the package's own check names the key, where it is, the value and what is allowed
    ("downtime_limit (axes.downtime_limit.num): 0 is not allowed; expected num: a whole
    number >= 1").  So on a schema error the package's checks run too, and their error, if
    they find one, is the one shown.
    """
    try:
        validate(config, schema, set_default=True)
    except WorkflowError:
        # these raise the clearer error, if the package sees the fault too
        load_grid(config)
        load_report_settings(config)
        raise


def load_grid(config):
    """Check every row of the grid now, so a bad value fails before any job runs; what the
    grid warns of (values dropped as repeats) goes to Snakemake's log, before the jobs.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grid = sweep_grid.build(config)
    except ParameterError as error:
        raise WorkflowError(f"bad sweep config: {error}") from None
    for warning in caught:
        if issubclass(warning.category, sweep_grid.RepeatedValues):
            logger.warning(f"sweep config: {warning.message}")
        else:  # not ours: as Python would have shown it
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return grid


def load_report_settings(config):
    """The `report:` section (the grid ignores it), checked now for the same reason."""
    try:
        return sweep_report.settings(config.get("report"))
    except ParameterError as error:
        raise WorkflowError(f"bad sweep config: {error}") from None


def chunks(grid):
    """Chunk numbers as they appear in file names: 00000, 00001, ..."""
    return [chunk_name(i) for i in range(grid.plan.n_chunks)]


def chunk_files(grid, kind):
    """The per-chunk files of one kind (summary or iterations), in chunk order."""
    return expand(
        "results/chunks/chunk-{chunk}.{kind}.parquet", chunk=chunks(grid), kind=kind
    )


def chunk_digest(wildcards):
    """What chunk `wildcards.chunk` holds: a digest of its scenario ids (each a hash of the
    scenario's parameters).  As a `params:` value it makes the chunk rerun exactly when its
    scenarios change."""
    return GRID.digests[int(wildcards.chunk)]


def chunk_scenarios(wildcards):
    """How many scenarios chunk `wildcards.chunk` holds."""
    start, stop = GRID.plan.chunk_range(int(wildcards.chunk))
    return stop - start


def simulate_mem_mb(wildcards):
    """About 10 kB per scenario over a 400 MB interpreter (numpy, pandas, pyarrow)."""
    return 400 + chunk_scenarios(wildcards) // 100


def simulate_runtime(wildcards):
    """Minutes: the engine runs 10-30k scenarios per second; leave a wide margin."""
    return 5 + chunk_scenarios(wildcards) // 20_000


def grid_mem_mb(wildcards):
    """The grid step holds a block of chunks and 8 bytes per scenario (its id): 235 MB for
    1,000,000 and for 2,000,000 scenarios (docs/performance.md)."""
    return 400 + GRID.plan.size // 100_000


def collect_mem_mb(wildcards):
    """The collect step holds one chunk at a time: 226 MB at 1,000,000 scenarios in chunks
    of 50,000, 251 MB at 2,000,000."""
    return 400 + GRID.plan.chunk_size // 200


def whole_grid_runtime(wildcards):
    return 5 + GRID.plan.size // 100_000


def final_targets():
    """What `snakemake` builds by default: the grid, the results, and EXTRA_TARGETS."""
    return [
        "results/grid.parquet",
        "results/summary.parquet",
        "results/iterations",
        "results/manifest.json",
        *EXTRA_TARGETS,
    ]


# --- validation (rules/validate.smk) ---

VALIDATION_CONFIG = "config/validation.yaml"


def validate_compare_inputs(wildcards):
    """The real runs, and this host's calibration when the validation config asks for it."""
    inputs = {"config": VALIDATION_CONFIG, "real": "results/validation/real"}
    source = sweep_validation.load_config(VALIDATION_CONFIG)["calibration_source"]
    if source == "measure":
        inputs["calibration"] = "results/validation/calibration.yaml"
    return inputs

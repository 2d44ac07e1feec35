# precopy-sweep: a parameter sweep of QEMU pre-copy live migration.
# Usage: docs/pipeline.md.  Config: config/config.yaml, described in config/README.md.

from snakemake.utils import min_version

min_version("9.0")


# The default sweep, unless --configfile names another one: a sweep config replaces this
# file rather than merging into it key by key (--config key=value still adjusts it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# Shape and types first (unknown keys, ranges written wrongly), then every value with its
# unit, ranges and relations: load_grid checks every grid row before any job runs.
validate_config(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


GRID = load_grid(config)
REPORT_SETTINGS = load_report_settings(config)


include: "workflow/rules/grid.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/validate.smk"


rule all:
    default_target: True
    input:
        final_targets(),

# Set-up and everyday commands.  On a fresh machine with Python 3.11 (with its venv module)
# and make, these two are all it takes:
#     make run     # create .venv if needed, run the default sweep, write results/report.html
#     make test    # create .venv if needed, run the tests (end-to-end runs included)
# Variables: make run CORES=8 CONFIG=my.yaml REPORT=report.zip PYTHON=python3.11

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
REPORT ?= results/report.html
CONFIG ?=
BIN := $(VENV)/bin
# Reinstall only when the pins or the package metadata change.
STAMP := $(VENV)/.precopy-sweep.stamp
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default \
	$(if $(CONFIG),--configfile $(CONFIG))

.PHONY: run test venv lint dry-run clean

run: $(STAMP)
	$(SNAKEMAKE) --report $(REPORT) --report-after-run

test: $(STAMP)
	$(BIN)/python -m pytest

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "could not create $(VENV): on Debian/Ubuntu, apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -r requirements.txt -e .
	@touch $@

# What would run, and why (nothing is executed).
dry-run: $(STAMP)
	$(SNAKEMAKE) --dry-run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# Remove the results of the default run (keeps .venv).
clean:
	rm -rf results .snakemake

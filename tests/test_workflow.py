"""The Snakemake workflow end to end (subprocesses on a tiny config), reruns, lint, docs, pins."""

from __future__ import annotations

import io as io_module
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml

import sweep
from sweep import docs, grid, io

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "default"
RULE_FILES = ("common", "grid", "simulate", "collect")
MY_RULES = ["Snakefile", *(f"workflow/rules/{name}.smk" for name in RULE_FILES)]
GiB = 2**30

# 2 x 2 x 2 = 8 scenarios in 4 chunks of 2 (one per ram_size and dirty_rate)
TINY = {
    "chunk_size": 2,
    "fixed": {
        "max_bandwidth": 0,
        "link_bandwidth": "1Gbit/s",
        "max_time": "60s",
        "max_iterations": 0,
    },
    "axes": {"ram_size": ["1GiB", "2GiB"], "dirty_rate": [0, "1GB/s"]},
    "zip": {"aid": {"auto_converge": [False, True], "cpu_throttle_initial": [20, 30]}},
}


def write_config(directory: Path, config: dict) -> None:
    (directory / "config").mkdir(parents=True, exist_ok=True)
    (directory / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def snakemake(directory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(directory), "--cores", "2", "--workflow-profile", str(PROFILE), *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if check and done.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def planned_jobs(directory: Path, *args: str) -> dict[str, list[str]]:
    """Rule -> wildcards of the jobs a dry run would run."""
    out = snakemake(directory, "--dry-run", *args)
    text = out.stdout + out.stderr
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", text):
        match = re.match(r"rule (\w+):", block)
        if match:
            wildcards = re.search(r"wildcards: chunk=(\d+)", block)
            jobs.setdefault(match.group(1), []).append(wildcards.group(1) if wildcards else "")
    return jobs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    write_config(directory, TINY)
    done = snakemake(directory, "--report", "report.html", "--report-after-run")  # as make run
    return directory, done


@pytest.mark.slow
def test_outputs(run):
    directory, _ = run
    results = directory / "results"
    built = grid.build(TINY)
    summary = pq.read_table(results / "summary.parquet").to_pandas()
    gridfile = pq.read_table(results / "grid.parquet").to_pandas()
    assert len(summary) == len(gridfile) == 8
    assert summary["scenario_id"].is_unique
    assert summary["scenario_id"].tolist() == gridfile["scenario_id"].tolist()
    assert summary["scenario_id"].tolist() == built.scenarios["scenario_id"].tolist()
    assert gridfile["chunk"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]

    meta = io.read_metadata(results / "summary.parquet")
    assert meta["config_hash"] == grid.config_hash(TINY)
    assert meta["version"] == sweep.__version__ and meta["scenarios"] == 8
    assert meta["units"]["ram_size_bytes"] == "bytes" and meta["units"]["downtime_ms"] == "ms"
    field = pq.read_schema(results / "summary.parquet").field("total_time_ms")
    assert field.metadata[b"unit"] == b"ms" and field.metadata[b"qemu"] == b"total-time"

    def one(ram: int, dirty: float, auto_converge: bool):
        rows = summary[
            (summary["ram_size_bytes"] == ram)
            & (summary["dirty_rate_pages_per_s"] == dirty)
            & (summary["auto_converge"] == auto_converge)
        ]
        assert len(rows) == 1
        return rows.iloc[0]

    idle = one(GiB, 0.0, False)
    assert idle["status"] == "completed" and idle["converged"]
    assert idle["dirty_sync_count"] == 3  # setup, one exact sync, the final sync
    assert 0 < idle["downtime_ms"] < idle["total_time_ms"]
    busy = one(GiB, 1e9 / 4096, False)  # dirtying 8x faster than the 1 Gbit/s link
    assert busy["status"] == "cancelled-time" and not busy["converged"]
    assert busy["total_time_ms"] >= 60_000 and busy["downtime_ms"] != busy["downtime_ms"]


@pytest.mark.slow
def test_iterations_dataset(run):
    directory, _ = run
    results = directory / "results"
    manifest = yaml.safe_load((results / "manifest.json").read_text())
    summary = pq.read_table(results / "summary.parquet").to_pandas()
    dataset = pads.dataset(results / "iterations", format="parquet", partitioning="hive")
    its = dataset.to_table().to_pandas()
    assert len(its) == manifest["iteration_rows"] > 8
    assert set(its["scenario_id"]) == set(summary["scenario_id"])
    assert sorted(set(its["chunk"])) == [0, 1, 2, 3]
    for sid, rows in its.groupby("scenario_id"):
        counts = rows["dirty_sync_count"].tolist()
        assert counts == list(range(1, len(counts) + 1))
        row = summary.loc[summary["scenario_id"] == sid].iloc[0]
        if row["status"] == "completed":
            assert counts[-1] == row["dirty_sync_count"]
    common = io.read_metadata(results / "iterations" / "_common_metadata")
    assert common["config_hash"] == grid.config_hash(TINY)
    assert common["units"]["remaining_bytes"] == "bytes"
    for entry in manifest["chunks"]:
        name = f"chunk-{entry['chunk']:05d}"
        chunk_file = results / "chunks" / f"{name}.iterations.parquet"
        assert (results / entry["iterations"]).samefile(chunk_file)
        assert (results / "logs" / "simulate" / f"{name}.log").read_text()
        assert (results / "benchmarks" / "simulate" / f"{name}.tsv").exists()


@pytest.mark.slow
def test_report_front_page(run):
    directory, _ = run
    page = (directory / "report.html").read_text()
    assert "Each simulate job ran one chunk of at most 2 scenarios" in page
    assert "auto_converge = false, true" in page


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_building_the_report_warns_nothing(run, profile):
    """Both profiles set disk_mb: Snakemake's own default for it is evaluated while the report
    is built and there warns "coroutine ... was never awaited" (snakemake#4280)."""
    directory, done = run
    if profile != "default":  # the report alone, from the results already there
        command = [
            sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(directory), "--workflow-profile",
            str(ROOT / "workflow" / "profiles" / profile), "--report", f"report-{profile}.html",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
        assert (directory / f"report-{profile}.html").stat().st_size > 0
    assert "Warning" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-4000:]


@pytest.mark.parametrize("config", ["default", "tiny", "minimal"])
def test_report_front_page_renders_as_clean_rst(config):
    jinja2 = pytest.importorskip("jinja2")
    from docutils.core import publish_parts

    configs = {
        "default": yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
        "tiny": TINY,
        "minimal": {"chunk_size": 5, "axes": {"vcpus": {"start": 1, "stop": 4, "num": 4}}},
    }

    snakemake_config = {"fixed": {}, "zip": {}, **configs[config]}

    class Snakemake:  # what Snakemake hands the template
        config = snakemake_config

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report
    text = env.from_string((ROOT / "workflow/report/workflow.rst").read_text())
    rst = text.render(snakemake=Snakemake)
    warnings = io_module.StringIO()
    publish_parts(rst, writer="html", settings_overrides={"warning_stream": warnings})
    assert warnings.getvalue() == ""
    for name in snakemake_config["axes"]:
        assert f"- ``{name}``: " in rst
    assert "True" not in rst and "False" not in rst  # YAML spelling: true, false


@pytest.mark.slow
def test_rerun_is_a_no_op(run):
    directory, _ = run
    out = snakemake(directory, "--dry-run")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_docs_reading_examples_run(run):
    directory, _ = run
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reading the results", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 3
    code = "\n".join(blocks)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=directory, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and grid.config_hash(TINY) in done.stdout


@pytest.mark.slow
def test_changing_one_outer_value_reruns_only_its_chunks(tmp_path):
    write_config(tmp_path, TINY)
    snakemake(tmp_path)
    assert planned_jobs(tmp_path) == {}

    outer = {**TINY, "axes": {**TINY["axes"], "ram_size": ["1GiB", "3GiB"]}}
    write_config(tmp_path, outer)
    jobs = planned_jobs(tmp_path)
    assert sorted(jobs["simulate"]) == ["00002", "00003"]
    # ... and what reads the collected tables: the report's figures and tables
    reports = {"report_convergence", "report_downtime", "report_planner"}
    assert set(jobs) == {"simulate", "grid", "collect", "all"} | reports

    spelled = {**TINY, "axes": {**TINY["axes"], "ram_size": ["1024MiB", "2GiB"]}}
    write_config(tmp_path, spelled)
    assert "simulate" not in planned_jobs(tmp_path)

    inner = {**TINY, "axes": {**TINY["axes"], "dirty_rate": [0, "2GB/s"]}}
    write_config(tmp_path, inner)
    assert sorted(planned_jobs(tmp_path)["simulate"]) == ["00001", "00003"]

    fixed = {**TINY, "fixed": {**TINY["fixed"], "max_time": "90s"}}
    write_config(tmp_path, fixed)
    assert len(planned_jobs(tmp_path)["simulate"]) == 4

    # and the outer change, run for real, leaves the other chunk files alone
    write_config(tmp_path, outer)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results/chunks").iterdir()}
    snakemake(tmp_path)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results/chunks").iterdir()}
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == [
        "chunk-00002.iterations.parquet",
        "chunk-00002.summary.parquet",
        "chunk-00003.iterations.parquet",
        "chunk-00003.summary.parquet",
    ]
    summary = pq.read_table(tmp_path / "results/summary.parquet").to_pandas()
    assert sorted(set(summary["ram_size_bytes"])) == [GiB, 3 * GiB]


@pytest.mark.slow
def test_a_bad_value_fails_before_any_job(tmp_path):
    bad = {**TINY, "axes": {**TINY["axes"], "ram_size": ["1GiB", "4 parsecs"]}}
    write_config(tmp_path, bad)
    done = snakemake(tmp_path, check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert "ram_size (axes.ram_size[1]): '4 parsecs' is not allowed" in text
    assert not (tmp_path / "results").exists()

    write_config(tmp_path, {**TINY, "axis": {}})
    done = snakemake(tmp_path, check=False)
    assert done.returncode != 0 and "axis" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_value_the_schema_refuses_is_named_with_what_is_allowed(tmp_path):
    # jsonschema alone says "0 is less than the minimum of 1", without the key; the
    # package's check says which key, where, and what it allows
    span = {"start": "30ms", "stop": "2s", "num": 0}
    write_config(tmp_path, {**TINY, "axes": {**TINY["axes"], "downtime_limit": span}})
    done = snakemake(tmp_path, "--dry-run", check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert "downtime_limit (axes.downtime_limit.num): 0 is not allowed" in text, text
    assert "a whole number >= 1" in text and "less than the minimum" not in text
    # an empty list: Snakemake's set_default used to meet it in the schema's range branch
    # and stop with "'list' object has no attribute 'setdefault'"
    write_config(tmp_path, {**TINY, "axes": {**TINY["axes"], "downtime_limit": []}})
    done = snakemake(tmp_path, "--dry-run", check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and "setdefault" not in text
    assert "downtime_limit (axes.downtime_limit): [] is not allowed" in text, text
    # the report's section, which the grid ignores, is checked as early
    for section, message in (
        ({"planner_tim_cap": "2min"}, "report (key): 'planner_tim_cap' is not allowed"),
        ({"planner_time_cap": "-5min"}, "planner_time_cap (report.planner_time_cap): '-5min'"),
        ({"paper_dir": 5}, "paper_dir (report.paper_dir): 5 is not allowed"),
    ):
        write_config(tmp_path, {**TINY, "report": section})
        done = snakemake(tmp_path, "--dry-run", check=False)
        assert done.returncode != 0 and message in done.stdout + done.stderr, section
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_values_dropped_as_repeats_are_named_before_the_jobs(tmp_path):
    """A list whose values repeat once read gives a smaller grid: the run says so, once, in
    Snakemake's log, and then runs; the jobs, which re-read the config, keep it to their logs."""
    repeats = {**TINY, "axes": {**TINY["axes"], "ram_size": ["1GiB", "1024MiB", "2GiB"]}}
    write_config(tmp_path, repeats)
    done = snakemake(tmp_path, "--dry-run")
    text = done.stdout + done.stderr
    line = "sweep config: axes.ram_size: 2 of the 3 values are distinct once read"
    assert text.count(line) == 1, text
    assert "(1024MiB is 1GiB again)" in text
    done = snakemake(tmp_path, "results/summary.parquet")
    text = done.stdout + done.stderr
    assert text.count("1024MiB is 1GiB again") == 1, text
    chunk_logs = sorted((tmp_path / "results" / "logs" / "simulate").glob("*.log"))
    assert chunk_logs and all("1024MiB is 1GiB again" in f.read_text() for f in chunk_logs)
    write_config(tmp_path, TINY)
    assert "sweep config:" not in (lambda d: d.stdout + d.stderr)(snakemake(tmp_path, "-n"))


@pytest.mark.slow
def test_lint_and_format(tmp_path):
    write_config(tmp_path, TINY)
    done = snakemake(tmp_path, "--lint")
    assert "Congratulations" in done.stdout + done.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *MY_RULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stderr


def test_generated_docs_are_current():
    for path in ("README.md", "docs/pipeline.md", "workflow/schemas/config.schema.yaml"):
        text = (ROOT / path).read_text()
        assert docs.render(text) == text, (
            "run: python -m sweep.docs README.md docs/pipeline.md "
            "workflow/schemas/config.schema.yaml"
        )
    assert "| `ram_size` | `ram_size_bytes` | bytes |" in (ROOT / "docs/pipeline.md").read_text()
    assert "| `total_time_ms` | double | ms | `total-time` |" in (ROOT / "README.md").read_text()


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().removeprefix("- ")
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pins_agree():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in environment["channels"] and "nodefaults" in environment["channels"]
    pip = next(d for d in environment["dependencies"] if isinstance(d, dict))["pip"]
    assert pip == ["-r requirements.txt", "-e ."]
    rule_env = yaml.safe_load((ROOT / "workflow/envs/sweep.yaml").read_text())
    rule_pins = _pins(next(d for d in rule_env["dependencies"] if isinstance(d, dict))["pip"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert runtime <= set(requirements), runtime - set(requirements)
    assert set(rule_pins) == runtime
    assert all(requirements[name] == version for name, version in rule_pins.items())
    for name in ("snakemake", "pytest", "duckdb", "jsonschema", "pygments", "snakefmt", "ruff"):
        assert name in requirements


@pytest.mark.slow
def test_a_configfile_replaces_the_default_config(tmp_path):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"axes": {"vcpus": [1, 2, 4]}}))
    jobs = planned_jobs(tmp_path, "--configfile", str(tmp_path / "sweep.yaml"))
    assert jobs["simulate"] == ["00000"]  # 3 scenarios, not merged into config/config.yaml
    jobs = planned_jobs(
        tmp_path, "--configfile", str(tmp_path / "sweep.yaml"), "--config", "chunk_size=1"
    )
    assert sorted(jobs["simulate"]) == ["00000", "00001", "00002"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["config", "measure"])
def test_validate_calibrates_on_this_host_only_when_asked(tmp_path, source):
    """calibration_source: measure (the shipped file's setting) puts the calibration runs
    before the comparison; config leaves them out."""
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"axes": {"vcpus": [1, 2]}}))
    text = (ROOT / "config" / "validation.yaml").read_text()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "validation.yaml").write_text(
        re.sub(r"(?m)^calibration_source: \w+", f"calibration_source: {source}", text)
    )
    jobs = planned_jobs(tmp_path, "validate", "--configfile", str(tmp_path / "sweep.yaml"))
    assert {"validate_real", "validate_compare", "validate"} <= set(jobs)
    assert ("validate_calibrate" in jobs) == (source == "measure")

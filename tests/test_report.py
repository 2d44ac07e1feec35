"""The report end to end: a tiny sweep through Snakemake, then `snakemake --report`.

Runs the real workflow (the repository's Snakefile and workflow/) in a temporary directory
with a 48-scenario config, builds ``report.html`` and checks that every output flagged with
``report()`` in workflow/rules/report.smk is embedded in it, with its category and caption.
Also runs the ``paper`` target twice and compares the bytes.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT_RULES = ROOT / "workflow" / "rules" / "report.smk"
INCLUDE = 'include: "workflow/rules/report.smk"'
TINY_CONFIG = """\
chunk_size: 40
fixed:
  ram_size: 1GiB
  max_bandwidth: 0
  working_set_size: 25%
  max_time: 60s
  max_iterations: 30
axes:
  link_bandwidth: [1Gbit/s, 10Gbit/s]
  downtime_limit: [30ms, 300ms, 2s]
  dirty_rate: [0, 25MB/s, 250MB/s, 2GB/s]
zip:
  convergence_aid:
    auto_converge: [false, true]
    dirty_limit: [false, false]
report:
  paper_dir: results/paper
"""
_BUILT: dict[Path, tuple[Path, list[str]]] = {}


def flagged_outputs() -> list[str]:
    """Paths wrapped in report(...) in report.smk."""
    return re.findall(r'report\(\s*"([^"]+)"', REPORT_RULES.read_text())


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def workflow_copy(workdir: Path, config: str = TINY_CONFIG) -> Path:
    """The repository's Snakefile and workflow/ in `workdir`, with the report included."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "workflow", workdir / "workflow", dirs_exist_ok=True)
    snakefile = (ROOT / "Snakefile").read_text()
    if INCLUDE not in snakefile:  # until the Snakefile includes it
        anchor = 'include: "workflow/rules/collect.smk"\n'
        assert anchor in snakefile
        snakefile = snakefile.replace(anchor, anchor + INCLUDE + "\n")
    (workdir / "Snakefile").write_text(snakefile)
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(config)
    return workdir


def build_report(base: Path) -> tuple[Path, list[str]]:
    """Run the tiny sweep and build its HTML report once per test session."""
    if base not in _BUILT:
        workdir = workflow_copy(base / "tiny-sweep")
        snakemake(workdir)
        snakemake(workdir, "--report", "results/report.html")
        _BUILT[base] = (workdir / "results" / "report.html", flagged_outputs())
    return _BUILT[base]


@pytest.fixture(scope="session")
def built_report(tmp_path_factory):
    return build_report(tmp_path_factory.getbasetemp())


def test_flagged_outputs_are_the_aggregates():
    flagged = flagged_outputs()
    assert len(flagged) == 10
    assert all(p.startswith("results/report/") for p in flagged)
    assert not any("{" in p or "chunk" in p for p in flagged), "never flag per-chunk outputs"
    text = REPORT_RULES.read_text()
    assert text.count("report(") == len(flagged)
    for category in ("Convergence", "Downtime", "Planner"):
        assert f'category="{category}"' in text
    for caption in re.findall(r'caption="\.\./report/([^"]+)"', text):
        assert (ROOT / "workflow" / "report" / caption).is_file(), caption


@pytest.mark.slow
def test_report_embeds_every_flagged_output(built_report):
    html_path, flagged = built_report
    workdir = html_path.parents[1]
    html = html_path.read_text()
    for path in flagged:
        assert (workdir / path).stat().st_size > 0, path
        name = Path(path).name
        mime = "image/png" if name.endswith(".png") else "text/html"
        assert re.search(rf"data:{mime};charset=utf8;filename={re.escape(name)};base64,", html), (
            f"{path} is not embedded in the report"
        )
    for category in ("Convergence", "Downtime", "Planner"):
        assert f'"{category}"' in html
    # captions are rendered with the config: they say what was swept
    assert "link_bandwidth" in html and "1Gbit/s, 10Gbit/s" in html
    assert "{%" not in html.split("<script", 1)[0]


@pytest.mark.slow
def test_report_outputs_and_tables(built_report):
    html_path, _ = built_report
    results = html_path.parent
    import pandas as pd

    dl = pd.read_parquet(results / "report" / "planner" / "downtime_limit.parquet")
    # 2 bandwidths x 4 dirty rates x 2 convergence aids
    assert len(dl) == 16
    assert {"convergence_aid", "min_downtime_limit_ms"} <= set(dl.columns)
    csv = pd.read_csv(results / "report" / "planner" / "bandwidth.csv")
    assert len(csv) == 3 * 4 * 2
    logs = sorted((results / "logs" / "report").glob("*.log"))
    assert [p.name for p in logs] == ["convergence.log", "downtime.log", "planner.log"]


@pytest.mark.slow
def test_paper_figures_repeat_byte_for_byte(built_report, tmp_path):
    html_path, _ = built_report
    workdir = html_path.parents[1]
    snakemake(workdir, "paper")
    paper = workdir / "results" / "paper"
    first = tmp_path / "first"
    shutil.copytree(paper, first)
    snakemake(workdir, "paper", "--forcerun", "paper")
    names = sorted(p.name for p in paper.iterdir())
    assert len(names) == 12 and {Path(n).suffix for n in names} == {".pdf", ".svg"}
    assert [n for n in names if not filecmp.cmp(paper / n, first / n, shallow=False)] == []


def test_lint_and_format_of_the_report_rules(tmp_path):
    """snakefmt accepts report.smk and report_common.smk; `snakemake --lint` finds nothing
    in them (other rule files are their owners' business)."""
    snakefmt = Path(sys.executable).with_name("snakefmt")
    if not snakefmt.exists():
        pytest.skip("snakefmt is not installed")
    rules = [REPORT_RULES, REPORT_RULES.with_name("report_common.smk")]
    done = subprocess.run([str(snakefmt), "--check", *map(str, rules)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    workdir = workflow_copy(tmp_path / "lint")
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=workdir,
                          capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    headers = [line for line in (lint.stdout + lint.stderr).splitlines()
               if line.startswith("Lints for")]  # fmt: skip
    ours = [h for h in headers if "report" in h or "rule paper " in h]
    assert ours == [], lint.stdout + lint.stderr


@pytest.mark.slow
def test_the_planner_takes_the_configs_time_cap_in_seconds(tmp_path):
    import pandas as pd

    from sweep import planner

    workdir = workflow_copy(tmp_path, TINY_CONFIG + "  planner_time_cap: 20s\n")
    snakemake(workdir, "results/report/planner/downtime_limit.parquet")
    results = workdir / "results"
    table = pd.read_parquet(results / "report" / "planner" / "downtime_limit.parquet")
    summary = pd.read_parquet(results / "summary.parquet")
    capped, uncapped = planner.downtime_plan(summary, 20.0), planner.downtime_plan(summary)
    assert not capped.equals(uncapped), "pick a cap that changes the plan"
    pd.testing.assert_frame_equal(table, capped, check_dtype=False)
    assert "at most 20 s" in (results / "report" / "planner" / "downtime_limit.html").read_text()


def test_report_settings_are_checked_and_read_in_seconds():
    from sweep import ParameterError, report

    assert report.settings(None) == report.Settings(None, "results/paper")
    assert report.settings({"planner_time_cap": "2min"}).planner_time_cap_s == 120.0
    assert report.settings({"planner_time_cap": 300}).planner_time_cap_s == 300.0
    assert report.settings({"paper_dir": "out/figs"}).paper_dir == "out/figs"
    for section, message in (
        ({"planner_time_cap": "banana"}, "planner_time_cap (report.planner_time_cap): 'banana'"),
        ({"planner_time_cap": 0}, "0 is not allowed; expected a duration above 0"),
        ({"planner_time_cap": "-5min"}, "'-5min' is not allowed"),
        ({"planner_time_cap": True}, "True is not allowed"),
        ({"paper_dir": ""}, "paper_dir (report.paper_dir): '' is not allowed"),
        ({"paperdir": "x"}, "report (key): 'paperdir' is not allowed; expected one of"),
        (["paper_dir"], "report: ['paper_dir'] is not allowed; expected a mapping of"),
    ):
        with pytest.raises(ParameterError) as error:
            report.settings(section)
        assert message in str(error.value), section


def test_the_schema_and_the_package_know_the_same_report_settings():
    """The workflow's schema and sweep.report.SETTINGS list the report keys twice (Snakemake
    reads the one, the package's check names what is allowed from the other): they must agree."""
    import yaml

    from sweep import report

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["properties"]["report"]["properties"]) == set(report.SETTINGS)

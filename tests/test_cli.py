"""python -m sweep: the explain command and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SWEEP = [sys.executable, "-m", "sweep"]


def sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SWEEP, *args], capture_output=True, text=True, timeout=120)


def test_explain_prints_every_sync_and_the_verdict() -> None:
    done = sweep(
        "explain", "--ram", "4GiB", "--bandwidth", "1Gbit/s", "--downtime-limit", "300ms",
        "--dirty-rate", "50MB/s",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Scenario: 4.00 GiB guest")
    syncs = [line.split()[:2] for line in lines if line.strip()[:1].isdigit()]
    assert syncs[0] == ["1", "setup"] and syncs[-1][1] == "final"
    assert [int(n) for n, _ in syncs] == list(range(1, len(syncs) + 1))
    assert f"after {len(syncs)} dirty syncs" in done.stdout
    assert "Converged" in done.stdout and "within the 300.0 ms limit" in done.stdout
    assert "sent first" not in lines[0]  # the working set's place, default 'mixed'


def test_explain_says_where_the_working_set_lies_when_it_goes_first() -> None:
    done = sweep(
        "explain", "--ram", "512MiB", "--working-set", "64MiB", "--dirty-rate", "20000",
        "--working-set-layout", "start",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(655 Mbit/s, uniform, sent first); link" in done.stdout.splitlines()[0]


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`python -m sweep explain ... | head`: the table of 2,000 syncs (250 kB, more than a
    pipe holds) meets a closed pipe; the command ends quietly, as shell tools do."""
    command = [*SWEEP, "explain", "--ram", "64MiB", "--dirty-rate", "5GB/s",
               "--max-iterations", "0", "--max-time", "600s", "--no-suggestions"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout.readline().startswith(b"Scenario: 64.00 MiB guest")
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr, stderr


def test_explain_suggests_what_would_converge() -> None:
    done = sweep(
        "explain", "--ram", "4GiB", "--bandwidth", "1Gbit/s", "--dirty-rate", "1GB/s",
        "--max-time", "120s",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Did not converge" in done.stdout
    assert "What would converge" in done.stdout
    assert "downtime_limit >= " in done.stdout and "link (max_bandwidth" in done.stdout


def explain_hopeless_guest(*manager: str) -> subprocess.CompletedProcess:
    """explain for a 4 GiB guest dirtying 200 MB/s over 1 Gbit/s, which pre-copy alone
    does not converge, with the manager's options given."""
    done = sweep(
        "explain", "--ram", "4GiB", "--bandwidth", "1Gbit/s", "--dirty-rate", "200MB/s",
        *manager,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_explain_tells_a_switch_to_postcopy_from_a_convergence() -> None:
    done = explain_hopeless_guest("--postcopy-after-iterations", "5")
    syncs = [line.split()[:2] for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert syncs[-1] == ["6", "postcopy"] and syncs[-2][0] == "5"
    assert "Did not converge in pre-copy: the manager switched to postcopy at 5 dirty syncs" in (
        done.stdout
    )
    assert "the destination then ran for" in done.stdout
    assert "What would converge (one change at a time, without postcopy)" in done.stdout


def test_explain_names_the_managers_timeout() -> None:
    done = explain_hopeless_guest("--postcopy-after-time", "50s")
    assert "the manager switched to postcopy after 50.00 s;" in done.stdout
    done = explain_hopeless_guest("--pause-after-time", "50s")
    assert "the manager stopped the guest at 50.00 s (pause_after_time)" in done.stdout


def test_explain_tells_a_stopped_guest_from_a_convergence() -> None:
    done = explain_hopeless_guest("--pause-after-iterations", "5")
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    new_pages = {int(r[0]): int(r[8]) for r in rows}  # time, sent, remaining take two each
    # sync 6 finds what the guest wrote during sync 5 (its sync time), then nothing
    assert new_pages[6] < new_pages[5] / 1000 and all(new_pages[k] == 0 for k in new_pages if k > 6)
    assert "Did not converge live: the manager stopped the guest at " in done.stdout
    assert "(as dirty sync 5 ended)" in done.stdout
    assert "the guest stood still for" in done.stdout
    assert "What would converge (one change at a time, without stopping the guest)" in done.stdout


def test_a_bad_value_is_an_error_naming_key_value_and_allowed() -> None:
    done = sweep("explain", "--downtime-limit=-5ms")
    assert done.returncode == 2
    assert "downtime_limit" in done.stderr and "-5" in done.stderr and "[0, 2000000]" in done.stderr
    done = sweep("explain", "--dirty-rate", "1e12MB/s")  # the value as written, then in pages/s
    assert done.returncode == 2
    assert "'1e12MB/s' is not allowed" in done.stderr and "244140625000000 pages/s" in done.stderr
    done = sweep("explain", "--ram", "100")  # 100 bytes, not the 0 bytes of whole pages
    assert done.returncode == 2
    assert "'100' is not allowed" in done.stderr and "0 bytes" not in done.stderr, done.stderr
    done = sweep("explain", "--ram", "0.5MiB")
    assert "'0.5MiB' is not allowed" in done.stderr and "(it is 524288 bytes)" in done.stderr
    done = sweep("explain", "--bandwidth", "1Gbit/s", "--link-bandwidth", "2Gbit/s")
    assert done.returncode == 2 and "not both" in done.stderr


def test_a_negative_value_after_a_space_reaches_the_parameter_check() -> None:
    # argparse alone reads '-4GiB' as an option and answers "expected one argument"
    for option, value, key in (
        ("--ram", "-4GiB", "ram_size"),
        ("--dirty-rate", "-5MB/s", "dirty_rate"),
        ("--downtime-limit", "-.3s", "downtime_limit"),
    ):
        done = sweep("explain", "--auto-converge", option, value, "--no-suggestions")
        assert done.returncode == 2
        assert f"{key} (scenario 0): '{value}' is not allowed" in done.stderr, done.stderr
    # a flag after an option that takes a value is still a flag (argparse's own error)
    done = sweep("explain", "--ram", "--no-suggestions")
    assert done.returncode == 2 and "expected one argument" in done.stderr


def test_params_lists_every_parameter() -> None:
    from sweep.params import PARAMETERS

    done = sweep("params")
    assert done.returncode == 0
    assert all(p.name in done.stdout for p in PARAMETERS)


def test_bench_prints_and_records_its_figures(tmp_path) -> None:
    """The benchmark's plumbing (its figures are measurements: nothing here times anything)."""
    record = tmp_path / "bench.json"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "sweep.bench", "--sizes", "300", "600", "--reference", "20",
         "--no-job", "--min-seconds", "0", "--rounds", "2", "--paired-cycles", "2",
         "--json", str(record)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "engine/core" in done.stdout and "passes" in done.stdout
    figures = json.loads(record.read_text())
    size = figures["sizes"]["300"]
    assert size["engine"]["per_core"] > 0 and size["with_tables"]["per_core"] > 0
    assert size["engine"]["passes"] >= 1 and size["engine"]["rows"] >= 300
    assert figures["reference"]["scenarios"] == 20 and figures["reference"]["per_core"] > 0
    assert size["engine"]["runs"] == 2  # --min-seconds 0: one run in each of 2 rounds
    ratios = figures["cost_vs_largest"]
    assert ratios["600"] == 1.0 and ratios["300"] > 0
    assert "cost per scenario against the largest size" in done.stdout
    by_round = figures["cost_vs_largest_by_round"]  # one ratio per round, same sizes
    assert by_round["600"] == [1.0, 1.0] and len(by_round["300"]) == 2
    assert "(by round: x" in done.stdout
    paired = figures["cost_vs_largest_paired"]  # one ratio per cycle
    assert len(paired) == 2 and all(x > 0 for x in paired)
    assert "paired (each chunk of 600 right after a run of 300): 300 x" in done.stdout
    assert "fixed cost per chunk" in done.stdout
    assert figures["fixed_part"]["scenarios"] == 300
    assert set(figures["fixed_part"]) == {
        "scenarios", "fixed_ms", "per_scenario_us", "slowest_few"
    }  # fmt: skip
    few = figures["fixed_part"]["slowest_few"]
    assert few["scenarios"] == 10 and few["ms"] > 0
    assert few["passes"] == size["engine"]["passes"]  # the ones that sync most set the count
    assert "the fixed cost alone" in done.stdout


def test_bench_repeats_small_sizes_and_reports_the_median() -> None:
    """A size whose run is short is run until the runs fill min_seconds of CPU."""
    from sweep import api, bench
    from sweep.params import normalize

    canonical = api.prepare(normalize([{"dirty_rate": r} for r in (0, 1e4, 1e5)]))
    once = bench._engine_rate(canonical, 100, tables=False)
    assert once["runs"] == 1
    again = bench._engine_rate(canonical, 100, tables=False, min_seconds=0.05)
    assert again["runs"] >= 2
    assert again["slowest"] <= again["per_core"] <= again["fastest"]


def test_bench_against_a_revision_runs_both_engines_interleaved() -> None:
    """--against REV loads that revision's engine next to today's (here: HEAD, the same)."""
    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "sweep.bench", "--sizes", "200", "--min-seconds", "0",
            "--rounds", "2", "--against"]  # fmt: skip
    done = subprocess.run([*args, "HEAD"], capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[1:3]
    assert header.split() == ["scenarios", "HEAD", "today", "change"]
    assert row.split()[0] == "200" and float(row.split()[1]) > 0
    bad = subprocess.run(
        [*args, "no-such-revision"], capture_output=True, text=True, timeout=300, cwd=root
    )
    assert bad.returncode != 0 and "--against no-such-revision" in bad.stderr


def test_bench_job_probe_reports_the_childs_memory_not_its_parents() -> None:
    """A forked child's ru_maxrss starts at its parent's RSS; the probe reads the child's own
    high-water mark, so a parent holding 400 MB more does not show in it."""
    from sweep import bench

    root = Path(__file__).resolve().parents[1]
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touched: resident
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    parent_mib = int(status["VmRSS"].split()[0]) / 1024
    job = bench._one_job(root / "config" / "config.yaml", 0)
    assert 0 < job["peak_rss_mib"] < parent_mib - 300, (job, parent_mib)
    assert job["summary_bytes"] > 0 and job["iterations_bytes"] > 0


def test_bench_reports_prints_each_job_at_each_size(tmp_path) -> None:
    """The report benchmark's plumbing: copies of a small sweep, each report job run on each."""
    import pyarrow.parquet as pq

    import sweep as package
    from sweep import bench_reports

    grid = [{"link_bandwidth": bw, "downtime_limit": dl, "dirty_rate": dr}
            for bw in ("1Gbit/s", "10Gbit/s") for dl in (30, 300)
            for dr in ("0", "100MB/s", "2GB/s")]  # fmt: skip
    result = package.simulate(grid)
    results = tmp_path / "results"
    (results / "iterations" / "chunk=0").mkdir(parents=True)
    result.summary.loc[:, ~result.summary.columns.duplicated(keep="last")].to_parquet(
        results / "summary.parquet", index=False
    )
    result.iterations.to_parquet(results / "iterations" / "chunk=0" / "part-0.parquet")
    n = bench_reports.build(results, 3, tmp_path / "x3")
    summary = pq.read_table(tmp_path / "x3" / "summary.parquet").to_pandas()
    assert n == len(summary) == 3 * len(grid)
    assert summary["scenario_id"].is_unique
    assert summary["ram_size_bytes"].nunique() == 3
    its = pq.ParquetDataset(tmp_path / "x3" / "iterations").read().to_pandas()
    assert len(its) == 3 * len(result.iterations)
    assert set(its["scenario_id"].astype("int64")) == set(summary["scenario_id"])
    record = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "sweep.bench_reports", str(results), "--copies", "1", "2",
         "--json", str(record)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(record.read_text())
    assert [(f["scenarios"], f["job"]) for f in figures] == [
        (n // 3 * k, job) for k in (1, 2) for job in ("convergence", "downtime", "planner")
    ]
    assert all(f["peak_rss_mib"] > 0 and f["wall_s"] > 0 for f in figures)
    assert "peak RSS MiB" in done.stdout


def test_bench_refuses_a_bad_count_before_any_work(capsys) -> None:
    """A count below its minimum names the option, the value and what is allowed."""
    from sweep import bench

    for argv, said in (
        (["--rounds", "0"], "argument --rounds: '0': expected at least 1"),
        (["--paired-cycles", "-1"], "argument --paired-cycles: '-1': expected at least 0"),
        (["--min-seconds", "x"], "argument --min-seconds: 'x' is not a float"),
    ):
        with pytest.raises(SystemExit) as stop:
            bench.main(argv)
        assert stop.value.code == 2
        assert said in capsys.readouterr().err

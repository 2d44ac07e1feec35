"""The workflow on a real SLURM cluster (one node, this machine) against a local run.

``tests/slurm_cluster.sh`` installs SLURM if needed (Debian packages munge, slurmctld, slurmd,
slurm-client), starts munged, slurmctld and slurmd and stops them again by their PID files.
The tests run a 12-scenario sweep in 6 chunks with ``--executor slurm`` and
``workflow/profiles/slurm`` (groups of 3 chunks: 2 SLURM jobs, one per core of a 2-core node)
and check that

* the simulate jobs really ran under SLURM (job ids in the submissions, in the SLURM logs'
  file names and in squeue's record of finished jobs, all COMPLETED) and only they did (the
  local rules stayed on the submit host);
* the grid, the summary, the iterations dataset, the chunk files and the manifest are
  byte-identical to a local ``--cores 2`` run of the same config;
* a job that fails makes the SLURM run exit non-zero within the time-out, and the rerun after
  the fault is gone runs only the missing chunks (and collect), leaving the others untouched;
* a status poll that can never succeed (sacct without accounting) is cut by the time-out.

The fault is injected into a copy of the workflow made for the test (its ``simulate.py``
raises while a marker file names the chunk): the repository's code has no test hook.

Every Snakemake run has a hard time-out (``timeout --foreground -s INT``: Snakemake ignores
SIGTERM while it waits on a status poll, SIGINT makes it cancel its jobs and stop).  The tests
skip, with the reason, where SLURM cannot run (not root, packages missing and not
installable); with ``PRECOPY_SLURM_REQUIRED=1`` (CI) they fail instead.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sweep import io

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm_cluster.sh"
SLURM_DIR = Path(os.environ.get("PRECOPY_SLURM_DIR", "/tmp/precopy-sweep-slurm"))
REQUIRED = os.environ.get("PRECOPY_SLURM_REQUIRED") == "1"
TIMEOUT = 240  # seconds, per Snakemake run (each takes 10-60 s here)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# 3 ram_size x 2 dirty_rate x 2 aid = 12 scenarios in 6 chunks of 2 (one per ram_size and
# dirty_rate); each chunk holds a converging and a non-converging scenario.
SWEEP = {
    "chunk_size": 2,
    "fixed": {
        "max_bandwidth": 0,
        "link_bandwidth": "1Gbit/s",
        "max_time": "60s",
        "max_iterations": 0,
    },
    "axes": {"ram_size": ["1GiB", "2GiB", "3GiB"], "dirty_rate": [0, "1GB/s"]},
    "zip": {"aid": {"auto_converge": [False, True], "cpu_throttle_initial": [20, 30]}},
}
CHUNKS = [f"{i:05d}" for i in range(6)]
TARGETS = (
    "results/grid.parquet",
    "results/summary.parquet",
    "results/iterations",
    "results/manifest.json",
)
LOCAL = ("--cores", "2", "--workflow-profile", str(ROOT / "workflow/profiles/default"))
SLURM = (
    "--executor", "slurm",
    "--workflow-profile", str(ROOT / "workflow/profiles/slurm"),
    # test-cluster settings: 2 group jobs of 3 chunks, one per core; each takes 10-20 s, so
    # the first status check at 20 s usually finds it done (MinJobAge=300 >= 3 x 20 s)
    "--group-components", "sweep=3",
    "--slurm-init-seconds-before-status-checks", "20",
    "--slurm-keep-successful-logs",  # the evidence; the plugin deletes them otherwise
)  # fmt: skip
FAULT = """\
# Test fault (tests/test_slurm.py): fail while the marker file names this chunk.
import pathlib

if pathlib.Path("inject-fault").is_file():
    if snakemake.wildcards.chunk in pathlib.Path("inject-fault").read_text().split():
        raise RuntimeError(f"injected fault in chunk {snakemake.wildcards.chunk}")
"""
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.")


@dataclass
class Run:
    directory: Path
    returncode: int
    seconds: float
    output: str

    def submissions(self) -> dict[str, Path]:
        """SLURM job id -> its log file, as the plugin reported the submissions."""
        return {jobid: Path(log) for jobid, log in SUBMITTED.findall(self.output)}

    def run_id(self) -> str:
        match = re.search(r"SLURM run ID: (\S+)", self.output)
        assert match, self.output[-3000:]
        return match.group(1)


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PRECOPY_SLURM_REQUIRED=1, but SLURM cannot run here: {reason}")
    pytest.skip(f"SLURM cannot run here: {reason}")


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster for this module; the environment its clients need."""
    if os.environ.get("PRECOPY_SLURM_STARTED") == "1":  # under `slurm_cluster.sh run`
        yield {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
        return
    if os.geteuid() != 0:
        unavailable("not root (slurmd runs the jobs and SlurmUser is root)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld", path="/usr/sbin") is None:
        unavailable("no SLURM packages and no apt-get to install them")
    # one session at a time uses the cluster directory and ports
    lock = open(f"{SLURM_DIR}.lock", "w")  # noqa: SIM115  (as slurm_cluster.sh run)
    deadline = time.monotonic() + 900
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"another test session held {lock.name} for 15 min")
            time.sleep(2)
    env = {**os.environ, "PRECOPY_SLURM_DIR": str(SLURM_DIR)}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(CLUSTER), "start"], env=env, capture_output=True, text=True, timeout=1200
        )
        if done.returncode != 0:
            subprocess.run([str(CLUSTER), "stop"], env=env, capture_output=True, timeout=120)
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"
            if done.returncode == 3:
                unavailable(reason)
            unavailable(f"tests/slurm_cluster.sh start failed ({reason}):\n{done.stderr}")
        print(f"SLURM cluster up in {time.monotonic() - started:.1f} s")
        yield {**env, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    finally:
        subprocess.run([str(CLUSTER), "stop"], env=env, capture_output=True, timeout=120)
        lock.close()


def snakemake(
    directory: Path, snakefile: Path, *args: str, env: dict | None = None, timeout: int = TIMEOUT
) -> Run:
    """One Snakemake run in `directory` under a hard time-out; never raises on failure."""
    command = [
        "timeout", "--foreground", "-s", "INT", "-k", "30", str(timeout),
        sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
        "--configfile", "sweep.yaml", *args, *TARGETS,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout + 60
    )
    seconds = time.monotonic() - started
    print(f"{directory.name}: snakemake {' '.join(args[:2])} ... exit {done.returncode} "
          f"in {seconds:.1f} s")  # fmt: skip
    return Run(directory, done.returncode, seconds, done.stdout + done.stderr)


def sweep_directory(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.yaml").write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    return directory


def faulty_workflow(directory: Path) -> Path:
    """A copy of the Snakefile and workflow/ whose simulate script honours `inject-fault`."""
    directory.mkdir(parents=True)
    shutil.copy2(ROOT / "Snakefile", directory / "Snakefile")
    shutil.copytree(ROOT / "workflow", directory / "workflow")
    script = directory / "workflow" / "scripts" / "simulate.py"
    lines = script.read_text().splitlines(keepends=True)
    # just before the job's work: the first top-level `with` (pipeline.job(...))
    starts = [i for i, line in enumerate(lines) if line.startswith("with ")]
    assert starts, "workflow/scripts/simulate.py changed: where does the job start?"
    script.write_text("".join([*lines[: starts[0]], FAULT, *lines[starts[0] :]]))
    return directory / "Snakefile"


def result_files(results: Path) -> list[str]:
    """What a sweep produces and must not depend on where it ran (no logs, no benchmarks)."""
    files = ["grid.parquet", "summary.parquet", "manifest.json"]
    files += sorted(str(p.relative_to(results)) for p in (results / "chunks").glob("*.parquet"))
    iterations = results / "iterations"
    files += sorted(
        str(p.relative_to(results))
        for p in iterations.rglob("*")
        if p.is_file() and (p.suffix == ".parquet" or p.name == "_common_metadata")
    )
    return files


def assert_sources_unchanged(code_hash: str) -> None:
    """Results differ, and everything reruns, if the model's sources change mid-test."""
    if io.code_hash() != code_hash:
        pytest.fail("the model's sources (sweep.io.MODEL_FILES) changed while the test ran")


def assert_same_results(local: Path, cluster: Path) -> None:
    local, cluster = local / "results", cluster / "results"
    files = result_files(local)
    assert len(files) == 3 + 2 * len(CHUNKS) + len(CHUNKS) + 1
    assert result_files(cluster) == files
    for name in ("summary.parquet", "grid.parquet"):
        mine, theirs = pq.read_table(local / name), pq.read_table(cluster / name)
        assert theirs.num_rows == 12
        assert theirs.equals(mine, check_metadata=True), name
    different = [f for f in files if (local / f).read_bytes() != (cluster / f).read_bytes()]
    assert different == []


def squeue_states(env: dict) -> dict[str, tuple[str, str]]:
    """Job id -> (name, state) of every job slurmctld remembers (MinJobAge=300 s)."""
    done = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%j|%T"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    rows = (line.split("|") for line in done.stdout.split())
    return {jobid: (name, state) for jobid, name, state in rows}


def chunks_in_slurm_log(log: Path) -> list[str]:
    """The chunks a group job's SLURM log says it ran (its target jobs)."""
    return sorted(set(re.findall(r"simulate:chunk=(\d+)", log.read_text())))


def jobs_run(run: Run) -> tuple[list[str], list[str]]:
    """(chunks simulated, local rules run) according to Snakemake's output."""
    chunks = re.findall(r"\n\s*wildcards: chunk=(\d+)", run.output)
    local_rules = re.findall(r"\nlocalrule (\w+):", run.output)
    return sorted(set(chunks)), sorted(set(local_rules))


@pytest.fixture(scope="module")
def code_hash():
    return io.code_hash()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, code_hash):
    directory = sweep_directory(tmp_path_factory.mktemp("local"))
    run = snakemake(directory, ROOT / "Snakefile", *LOCAL)
    assert run.returncode == 0, run.output[-4000:]
    return run


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    directory = sweep_directory(tmp_path_factory.mktemp("slurm"))
    run = snakemake(directory, ROOT / "Snakefile", *SLURM, env=cluster)
    assert run.returncode == 0, run.output[-4000:]
    return run


def test_sweep_on_slurm_equals_local_run(slurm_run, local_run, cluster, code_hash):
    assert_sources_unchanged(code_hash)
    # the simulate jobs went to SLURM, in 2 group jobs of 3 chunks
    submissions = slurm_run.submissions()
    assert len(submissions) == 2, slurm_run.output[-3000:]
    chunks = []
    for jobid, log in submissions.items():
        assert log.is_file() and log.name == f"{jobid}.log"
        assert log.parent == slurm_run.directory / ".snakemake/slurm_logs/group_sweep_simulate"
        assert len(chunks_in_slurm_log(log)) == 3
        chunks += chunks_in_slurm_log(log)
    assert sorted(chunks) == CHUNKS
    # slurmctld ran them, under this run's name, to completion
    states = squeue_states(cluster)
    for jobid in submissions:
        assert states.get(jobid) == (slurm_run.run_id(), "COMPLETED")
    # the local rules stayed here
    logdirs = {p.name for p in (slurm_run.directory / ".snakemake/slurm_logs").iterdir()}
    assert logdirs == {"group_sweep_simulate"}
    assert jobs_run(slurm_run) == (CHUNKS, ["collect", "grid"])

    assert_same_results(local_run.directory, slurm_run.directory)
    print(f"SLURM run {slurm_run.seconds:.1f} s, local run {local_run.seconds:.1f} s")


def test_failed_job_fails_the_run_and_rerun_completes_only_the_missing_work(
    cluster, local_run, code_hash, tmp_path
):
    snakefile = faulty_workflow(tmp_path / "workflow-copy")
    directory = sweep_directory(tmp_path / "sweep")
    (directory / "inject-fault").write_text("00004\n")

    failed = snakemake(directory, snakefile, *SLURM, env=cluster)
    assert failed.returncode not in (0, 124, 137), failed.output[-4000:]  # failed, in time
    assert failed.seconds < TIMEOUT
    assert "injected fault in chunk 00004" in failed.output  # the job's log, shown
    # SLURM recorded the group job with the bad chunk as FAILED, the other one COMPLETED
    states = squeue_states(cluster)
    outcome = {}
    for jobid, log in failed.submissions().items():
        assert states[jobid][0] == failed.run_id()
        outcome[states[jobid][1]] = chunks_in_slurm_log(log)
    assert set(outcome) == {"FAILED", "COMPLETED"}, outcome
    assert "00004" in outcome["FAILED"] and "00004" not in outcome["COMPLETED"]

    chunk_dir = directory / "results" / "chunks"
    present = sorted(
        chunk for chunk in CHUNKS if (chunk_dir / f"chunk-{chunk}.summary.parquet").exists()
    )
    missing = sorted(set(CHUNKS) - set(present))
    # Snakemake removes the outputs of every job of a failed group job, those that ran before
    # the fault included: the unit of rework is the group job (3 chunks), not the whole sweep
    assert missing == outcome["FAILED"] and present == outcome["COMPLETED"]
    assert not (directory / "results" / "summary.parquet").exists()
    before = {p.name: p.stat().st_mtime_ns for p in chunk_dir.iterdir()}

    (directory / "inject-fault").unlink()  # the fault is fixed
    rerun = snakemake(directory, snakefile, *SLURM, env=cluster)
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert_sources_unchanged(code_hash)
    # only the missing chunks ran (in one group job), then collect; grid was already done
    assert jobs_run(rerun) == (missing, ["collect"])
    (log,) = rerun.submissions().values()
    assert chunks_in_slurm_log(log) == missing
    after = {p.name: p.stat().st_mtime_ns for p in chunk_dir.iterdir()}
    rewritten = sorted({name[6:11] for name in after if after[name] != before.get(name)})
    assert rewritten == missing

    assert_same_results(local_run.directory, directory)
    print(f"failing run {failed.seconds:.1f} s (exit {failed.returncode}), "
          f"rerun {rerun.seconds:.1f} s: {len(missing)} of {len(CHUNKS)} chunks")  # fmt: skip


def test_a_stuck_status_poll_is_cut_by_the_time_out(cluster, tmp_path):
    """sacct without accounting fails on every poll: the plugin never learns that its jobs
    ended and Snakemake would wait forever.  The time-out's SIGINT stops it."""
    directory = sweep_directory(tmp_path)
    stuck = (*SLURM, "--slurm-status-command", "sacct")
    run = snakemake(directory, ROOT / "Snakefile", *stuck, env=cluster, timeout=30)
    # 124: stopped by the SIGINT at 30 s (137 if it had needed the SIGKILL 30 s later); the
    # exit waits for the plugin's current status interval to run out
    assert run.returncode == 124, run.output[-3000:]
    assert run.seconds < 30 + 30 + 10
    assert "Terminating processes on user request" in run.output
    assert len(run.submissions()) == 2
    # nothing of the run is left queued or running
    states = squeue_states(cluster)
    assert {states[jobid][1] for jobid in run.submissions()} <= {"COMPLETED", "CANCELLED"}

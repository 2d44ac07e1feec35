"""Run one real QEMU pre-copy migration over loopback and record what QEMU reports.

The driver starts a destination QEMU (``-incoming tcp:127.0.0.1:PORT``) and a source QEMU with
identical options, both booting our validation guest (:mod:`sweep.qemu.build`), waits until
the guest is writing, configures the migration over QMP, sends ``migrate``, polls
``query-migrate`` every 100 ms, keeps the ``MIGRATION``/``MIGRATION_PASS`` events with QEMU's
timestamps, cancels at the time cap, and stops both QEMUs by their own PIDs.

The result (:class:`RunResult`) holds the samples, the events, the final reply (the last
``active`` one if cancelled: a ``cancelled`` reply has no ``ram``), the guest's own reports
(for the achieved write rate and the ring position at ``migrate``), the run's parameters and
the QEMU version; :meth:`RunResult.write` stores them as Parquet.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .build import build_guest
from .qmp import QMPClient, QMPError, event_time, flatten

__all__ = [
    "INSTALL_HINT",
    "MigrationError",
    "QemuNotFoundError",
    "RunResult",
    "RunSpec",
    "find_qemu",
    "parse_guest_line",
    "parse_trace_line",
    "run_migration",
]

QEMU_BINARY = "qemu-system-x86_64"
INSTALL_HINT = "apt-get install -y --no-install-recommends qemu-system-x86"
MiB = 2**20
POLL_S = 0.1
TERMINAL = ("completed", "failed", "cancelled")


class QemuNotFoundError(RuntimeError):
    """qemu-system-x86_64 is not installed; the message says how to install it."""


class MigrationError(RuntimeError):
    """A run could not be carried out (QEMU died, the guest did not boot, a timeout)."""


def find_qemu(binary: str = QEMU_BINARY) -> str:
    """Path of the QEMU binary, or :class:`QemuNotFoundError` with the install command."""
    path = shutil.which(binary)
    if path is None:
        raise QemuNotFoundError(
            f"{binary} not found: real-QEMU validation needs it. Install it with "
            f"`{INSTALL_HINT}` (Debian 12 gives QEMU 7.2)."
        )
    return path


#: userfaultfd(2) by machine: what the destination QEMU needs for postcopy
USERFAULTFD_SYSCALL = {"x86_64": 323, "aarch64": 282}
POSTCOPY_HINT = (
    "postcopy needs userfaultfd on the destination: run as root (CAP_SYS_PTRACE) or set "
    "`sysctl vm.unprivileged_userfaultfd=1`"
)


def postcopy_supported() -> bool:
    """Whether this process may open a userfaultfd, as the destination QEMU must for
    postcopy-ram (QEMU 7.2 calls the system call; without it the capability is refused)."""
    number = USERFAULTFD_SYSCALL.get(os.uname().machine)
    if number is None:
        return False
    fd = ctypes.CDLL(None, use_errno=True).syscall(number, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        return False
    os.close(fd)
    return True


@dataclass
class RunSpec:
    """One real migration: the guest, QEMU's migration settings and the manager's time cap."""

    name: str
    mem_mib: int = 512
    working_set_mib: float = 64.0
    fill_mib: float = 509.0
    rate: int | str = 0  # guest page writes per second, or "max"
    pattern: str = "seq"  # "seq" (ring) or "rand" (uniform)
    catchup_us: int = 100_000
    seed: int = 1
    max_bandwidth: int = 128 * MiB  # bytes/s; 0 = unlimited
    downtime_limit_ms: int = 300
    auto_converge: bool = False
    cpu_throttle_initial: int = 20
    cpu_throttle_increment: int = 10
    max_cpu_throttle: int = 99
    throttle_trigger_threshold: int = 50
    time_cap_s: float = 60.0
    # migrate-start-postcopy once dirty-sync-count reaches this (guestperf's post_copy_iters;
    # postcopy-ram on both sides); 0 = never
    postcopy_after_iterations: int = 0
    # migrate-start-postcopy this long after migrate (libvirt's --timeout-postcopy); 0 = never
    postcopy_after_s: float = 0.0
    # QMP stop (the guest pauses; pre-copy goes on) once dirty-sync-count reaches this
    # (guestperf's pause_iters); 0 = never
    pause_after_iterations: int = 0
    # QMP stop this long after migrate (libvirt's --timeout); 0 = never
    pause_after_s: float = 0.0
    warmup_s: float = 1.0  # guest writing time before migrate
    uri: str = ""  # "" = loopback TCP to a destination QEMU; else e.g. "exec:cat > FILE"
    trace_events: tuple[str, ...] = ()

    @property
    def postcopy(self) -> bool:
        """The manager may ask for postcopy (postcopy-ram on both sides)."""
        return bool(self.postcopy_after_iterations or self.postcopy_after_s)

    def append(self) -> str:
        """The guest's command line (after the kernel path)."""
        return (
            f"ws={round(self.working_set_mib * MiB)} fill={round(self.fill_mib * MiB)} "
            f"rate={self.rate} pattern={self.pattern} catchup={self.catchup_us} "
            f"seed={self.seed} report=100"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rate"] = str(self.rate)
        out["trace_events"] = ",".join(self.trace_events)
        return out


@dataclass
class RunResult:
    """Everything one run produced.  ``info`` holds the derived scalars (one row when written)."""

    spec: RunSpec
    samples: pd.DataFrame
    events: pd.DataFrame
    final: dict[str, Any]
    guest: pd.DataFrame
    info: dict[str, Any]
    trace: pd.DataFrame | None = None

    def run_row(self) -> pd.DataFrame:
        """One row: parameters (``spec_*``), derived info and the final reply (``final_*``)."""
        row = {f"spec_{k}": v for k, v in self.spec.to_dict().items()}
        row.update(self.info)
        row.update({f"final_{k}": v for k, v in self.final.items()})
        return pd.DataFrame([row])

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``<name>.{run,samples,events,guest}.parquet`` (+ ``.trace``) into directory."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "run": self.run_row(),
            "samples": self.samples,
            "events": self.events,
            "guest": self.guest,
        }
        if self.trace is not None:
            tables["trace"] = self.trace
        paths = {}
        for kind, frame in tables.items():
            path = out / f"{self.spec.name}.{kind}.parquet"
            tmp = path.with_suffix(".tmp")
            frame.assign(run=self.spec.name).to_parquet(tmp, index=False)
            os.replace(tmp, path)
            paths[kind] = path
        return paths


# --- parsers (unit-tested without QEMU) --------------------------------------------------------

_KV = re.compile(r"(\w+)=(\S+)")
_TRACE = re.compile(r"^(\d+)@(\d+)\.(\d+):(\w+)\s*(.*)$")


def parse_guest_line(line: str) -> dict[str, Any] | None:
    """``R t_us=.. writes=.. pos=.. skipped=..`` or ``BOOT k=v ...`` -> dict; else None."""
    parts = line.strip().split(" ", 1)
    if not parts or parts[0] not in ("R", "BOOT"):
        return None
    values: dict[str, Any] = {"kind": parts[0]}
    for key, value in _KV.findall(parts[1] if len(parts) > 1 else ""):
        try:
            values[key] = int(value)
        except ValueError:
            values[key] = value
    if parts[0] == "R" and not {"t_us", "writes", "pos"} <= values.keys():
        return None  # a torn line
    return values


def parse_trace_line(line: str) -> dict[str, Any] | None:
    """QEMU's log trace backend with -msg timestamp=on: ``PID@SEC.USEC:event args``."""
    m = _TRACE.match(line.strip())
    if not m:
        return None
    return {
        "pid": int(m.group(1)),
        "wall_s": int(m.group(2)) + int(m.group(3)) / 1e6,
        "event": m.group(4),
        "args": m.group(5),
    }


class SerialLog:
    """Tails the guest's serial file; stamps every new complete line with the host wall time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.lines: list[dict[str, Any]] = []
        self.boot: dict[str, Any] | None = None
        self.fault = False

    def read(self) -> int:
        """Parse what was appended since the last call; return the number of new reports."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return 0
        seen = time.time()
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        count = 0
        for raw in complete:
            text = raw.decode("ascii", "replace")
            if "FAULT" in text:
                self.fault = True
            parsed = parse_guest_line(text)
            if parsed is None:
                continue
            if parsed["kind"] == "BOOT":
                self.boot = parsed
            else:
                parsed["seen_wall_s"] = seen
                self.lines.append(parsed)
                count += 1
        return count

    def frame(self) -> pd.DataFrame:
        cols = ["t_us", "writes", "pos", "skipped", "seen_wall_s"]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self.lines], columns=cols)


def guest_clock_offset(reports: pd.DataFrame) -> float:
    """Host wall time minus guest time (s): the smallest lag at which a report was seen."""
    if reports.empty:
        return float("nan")
    return float((reports["seen_wall_s"] - reports["t_us"] / 1e6).min())


def writes_at(reports: pd.DataFrame, guest_us: float) -> tuple[float, float]:
    """Cumulative writes and ring position at a guest time, interpolated between reports."""
    t = reports["t_us"].to_numpy(dtype=float)
    w = reports["writes"].to_numpy(dtype=float)
    writes = float(np.interp(guest_us, t, w))
    before = int(np.searchsorted(t, guest_us, side="right")) - 1
    before = max(before, 0)
    pos = float(reports["pos"].iloc[before]) + writes - w[before]
    return writes, pos


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


QEMU_NICE = -10  # QEMU runs ahead of other work: migrations are timing-sensitive


def _child_setup() -> None:
    """In the child: SIGTERM when the driver dies (no QEMU outlives a killed run), and a
    higher CPU priority where allowed (root), so other jobs on a shared host disturb less."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, QEMU_NICE)


class Qemu:
    """One QEMU process, started with our options and stopped by its own PID."""

    def __init__(self, role: str, argv: list[str], tmp: Path) -> None:
        self.role = role
        self.log = tmp / f"{role}.stderr"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
            )
        self.qmp = QMPClient(tmp / f"{role}.qmp", timeout=10.0)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise MigrationError(
                f"{self.role} QEMU exited with {self.proc.returncode}: {self.stderr()}"
            )

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """``quit`` over QMP, then terminate, then kill: always this process only."""
        if self.proc.poll() is None and self.qmp.sock is not None:
            with contextlib.suppress(OSError, QMPError, TimeoutError, ConnectionError):
                self.qmp.execute("quit", timeout=2.0)
        self.qmp.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def qemu_argv(qemu: str, spec: RunSpec, guest: Path, tmp: Path, role: str) -> list[str]:
    """The common command line; source and destination differ only in serial, QMP, incoming."""
    argv = [
        qemu, "-accel", "tcg", "-machine", "pc", "-m", str(spec.mem_mib), "-smp", "1",
        "-display", "none", "-monitor", "none", "-nodefaults", "-no-user-config",
        "-serial", f"file:{tmp / (role + '.serial')}",
        "-qmp", f"unix:{tmp / (role + '.qmp')},server=on,wait=off",
        "-kernel", str(guest), "-append", spec.append(),
    ]  # fmt: skip
    if role == "src" and spec.trace_events:
        for event in spec.trace_events:
            argv += ["-trace", f"enable={event}"]
        argv += ["-D", str(tmp / "trace.log"), "-msg", "timestamp=on"]
    return argv


# --- the run ---------------------------------------------------------------------------------


def _wait_for_guest(src: Qemu, serial: SerialLog, spec: RunSpec, timeout: float) -> None:
    """Until the guest has booted and reported for warmup_s; fine polling stamps the lines."""
    deadline = time.monotonic() + timeout
    first: float | None = None
    while time.monotonic() < deadline:
        src.check_alive()
        serial.read()
        if serial.fault:
            raise MigrationError(f"guest fault: see {serial.path}")
        if serial.lines and first is None:
            first = time.monotonic()
        if first is not None and time.monotonic() - first >= spec.warmup_s:
            return
        time.sleep(0.002)
    raise MigrationError(f"guest did not report within {timeout:.0f} s ({serial.path})")


@contextlib.contextmanager
def guest_vm(
    spec: RunSpec, *, cache_dir: str | Path | None = None, boot_timeout: float = 30.0
) -> Iterator[tuple[Qemu, SerialLog, Path]]:
    """Our guest running as `spec` says, writing, no migration: (QEMU, its serial log, a
    second QMP socket for a tool of the caller's, such as ``explain --qmp``)."""
    guest = build_guest(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix="pcs-vm-"))
    monitor = tmp / "tool.qmp"
    argv = qemu_argv(find_qemu(), spec, guest, tmp, "src")
    argv += ["-qmp", f"unix:{monitor},server=on,wait=off"]
    vm = Qemu("src", argv, tmp)
    try:
        try:
            vm.qmp.connect(timeout=15.0)
        except (TimeoutError, ConnectionError) as exc:
            vm.check_alive()
            raise MigrationError(f"src: {exc}") from exc
        serial = SerialLog(tmp / "src.serial")
        _wait_for_guest(vm, serial, spec, boot_timeout)
        yield vm, serial, monitor
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _configure(src: Qemu, spec: RunSpec, dst: Qemu | None) -> None:
    postcopy = {"capability": "postcopy-ram", "state": spec.postcopy}
    caps = [
        {"capability": "events", "state": True},
        {"capability": "auto-converge", "state": bool(spec.auto_converge)},
        postcopy,
    ]
    src.qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    if spec.postcopy:
        if dst is None:
            raise MigrationError(f"{spec.name}: postcopy needs a destination QEMU, not {spec.uri}")
        dst.qmp.execute("migrate-set-capabilities", {"capabilities": [postcopy]})
    params: dict[str, Any] = {
        "max-bandwidth": int(spec.max_bandwidth),
        "downtime-limit": int(spec.downtime_limit_ms),
    }
    if spec.auto_converge:
        params.update(
            {
                "cpu-throttle-initial": spec.cpu_throttle_initial,
                "cpu-throttle-increment": spec.cpu_throttle_increment,
                "max-cpu-throttle": spec.max_cpu_throttle,
                "throttle-trigger-threshold": spec.throttle_trigger_threshold,
            }
        )
    src.qmp.execute("migrate-set-parameters", params)


def run_migration(
    spec: RunSpec,
    *,
    cache_dir: str | Path | None = None,
    workdir: str | Path | None = None,
    keep_temp: bool = False,
    boot_timeout: float = 30.0,
) -> RunResult:
    """Carry out one migration as :class:`RunSpec` says and return what was recorded."""
    qemu = find_qemu()
    if spec.postcopy and not postcopy_supported():
        raise MigrationError(f"{spec.name}: {POSTCOPY_HINT}")
    guest = build_guest(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix="pcs-", dir=workdir))
    procs: list[Qemu] = []
    try:
        uri = spec.uri
        if not uri:
            port = free_port()
            uri = f"tcp:127.0.0.1:{port}"
            dst_argv = qemu_argv(qemu, spec, guest, tmp, "dst")
            dst_argv += ["-incoming", uri]
            procs.append(Qemu("dst", dst_argv, tmp))
        src = Qemu("src", qemu_argv(qemu, spec, guest, tmp, "src"), tmp)
        procs.append(src)
        for p in procs:
            try:
                p.qmp.connect(timeout=15.0)
            except (TimeoutError, ConnectionError) as exc:
                p.check_alive()
                raise MigrationError(f"{p.role}: {exc}") from exc
        version = src.qmp.execute("query-version")
        serial = SerialLog(tmp / "src.serial")
        _wait_for_guest(src, serial, spec, boot_timeout)
        _configure(src, spec, procs[0] if len(procs) == 2 else None)
        return _migrate(spec, procs, src, serial, uri, version, tmp)
    finally:
        for p in reversed(procs):
            p.stop()
        if not keep_temp:
            shutil.rmtree(tmp, ignore_errors=True)


def _migrate(
    spec: RunSpec,
    procs: list[Qemu],
    src: Qemu,
    serial: SerialLog,
    uri: str,
    version: dict[str, Any],
    tmp: Path,
) -> RunResult:
    samples: list[dict[str, Any]] = []
    samples_raw: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    last_active: dict[str, Any] | None = None
    reply: dict[str, Any] = {}
    cancelled_at: float | None = None
    load_before = os.getloadavg()[0]  # other work on the host disturbs the timings
    t_migrate = time.time()
    src.qmp.execute("migrate", {"uri": uri})
    cap = t_migrate + spec.time_cap_s
    next_poll = t_migrate + POLL_S
    hard_deadline = cap + 120.0
    # the manager's commands: at a sync count (guestperf), or at a set time (libvirt's
    # --timeout); each is sent once, at whichever comes first (`commanded`: when)
    at_sync = {"migrate-start-postcopy": spec.postcopy_after_iterations,
               "stop": spec.pause_after_iterations}  # fmt: skip
    at_time = {"migrate-start-postcopy": spec.postcopy_after_s, "stop": spec.pause_after_s}
    timeouts = {c: t_migrate + s for c, s in at_time.items() if s}  # dropped once tried
    commanded: dict[str, float | None] = {c: None for c in at_sync}
    while True:
        wake = min(next_poll, cap) if cancelled_at is None else next_poll
        wake = min([wake, *timeouts.values()])
        for command, syncs in at_sync.items():
            if syncs and commanded[command] is None:
                commanded[command] = _act_when_synced(src, syncs, command, events, wake)
        now = time.time()
        if wake > now:
            time.sleep(wake - now)
        fired = [c for c, at in timeouts.items() if time.time() >= at]
        for command in fired:
            del timeouts[command]
            if commanded[command] is not None:
                continue  # the sync count came first
            with contextlib.suppress(QMPError):  # an error: the migration ended first
                src.qmp.execute(command)
                commanded[command] = time.time()
        if fired:
            continue
        src.check_alive()  # the destination exits by itself after a cancel
        sent = time.time()
        reply = src.qmp.execute("query-migrate", timeout=60.0)
        got = time.time()
        serial.read()
        events.extend(src.qmp.poll_events())
        row = {"t_ms": (sent - t_migrate) * 1000.0, "poll_ms": (got - sent) * 1000.0}
        row.update(flatten(reply))
        samples.append(row)
        samples_raw.append(reply)
        status = reply.get("status")
        if status == "active":
            last_active = reply
        if status in TERMINAL:
            break
        if cancelled_at is None and got >= cap and status != "postcopy-active":
            cancelled_at = got
            with contextlib.suppress(QMPError):
                src.qmp.execute("migrate_cancel")
        if got > hard_deadline:
            raise MigrationError(f"migration still {status!r} {got - t_migrate:.0f} s after start")
        next_poll = max(next_poll + POLL_S, time.time() + 0.001)
    if reply.get("status") == "completed":
        reply = _settled(src, reply, samples, t_migrate)
    t_end = time.time()
    events.extend(src.qmp.poll_events())
    final_status = reply.get("status")
    final = reply if final_status != "cancelled" or last_active is None else last_active
    dst_status = None
    if final_status == "completed" and len(procs) == 2:
        with contextlib.suppress(QMPError, TimeoutError):
            dst_status = procs[0].qmp.execute("query-status").get("status")
    serial.read()
    guest = serial.frame()
    info = _derive(spec, serial, guest, t_migrate, t_end, events, version, final_status)
    info["dst_status"] = dst_status
    info.update(_precopy_rate(samples, spec.max_bandwidth, info["postcopy_started_ms"] is not None))
    info["loadavg_before"] = load_before
    info["loadavg_after"] = os.getloadavg()[0]
    throttle = [x.get("cpu-throttle-percentage", 0) for x in [*samples_raw, reply]]
    info["max_throttle_pct"] = max(throttle)
    onset = [row["t_ms"] for row in samples if row.get("cpu_throttle_percentage", 0) > 0]
    info["throttle_onset_ms"] = onset[0] if onset else None
    info["rate_unthrottled"] = _achieved_rate(
        guest, info.get("guest_clock_offset_s"), t_migrate, onset[0] if onset else None
    )
    info["cancelled"] = cancelled_at is not None
    ms = {c: None if at is None else (at - t_migrate) * 1e3 for c, at in commanded.items()}
    info["postcopy_asked_ms"], info["paused_ms"] = ms["migrate-start-postcopy"], ms["stop"]
    info["uri_kind"] = uri.split(":", 1)[0]
    trace = None
    if spec.trace_events and (tmp / "trace.log").exists():
        rows = [parse_trace_line(x) for x in (tmp / "trace.log").read_text().splitlines()]
        trace = pd.DataFrame([r for r in rows if r is not None])
        if not trace.empty:
            trace["t_ms"] = (trace["wall_s"] - t_migrate) * 1000.0
    if uri.startswith("exec:cat >"):
        target = Path(uri.split(">", 1)[1].strip())
        info["stream_bytes"] = target.stat().st_size if target.exists() else None
    guest = guest.assign(t_ms=(guest["t_us"] / 1e6 + info["guest_clock_offset_s"] - t_migrate)
                         * 1000.0)  # fmt: skip
    return RunResult(
        spec=spec,
        samples=pd.DataFrame(samples),
        events=_events_frame(events, t_migrate),
        final=flatten(final),
        guest=guest,
        info=info,
        trace=trace,
    )


def _act_when_synced(
    src: Qemu, syncs: int, command: str, events: list[dict[str, Any]], until: float
) -> float | None:
    """Send the manager's `command` (migrate-start-postcopy, stop) as soon as a sync brings
    dirty-sync-count to `syncs` (its MIGRATION_PASS event), watching the events every 2 ms
    until `until`; when it was sent.

    guestperf polls every 50 ms and acts on the poll that shows the count; the model's
    manager asks for postcopy at the first decision after the sync and stops the guest as the
    sync ends.  Watching the event keeps the real command within a few ms of the sync, so
    that a comparison measures QEMU, not the poll."""
    while True:
        events.extend(src.qmp.poll_events())
        passes = [e["data"].get("pass", 0) for e in events if e["event"] == "MIGRATION_PASS"]
        if passes and max(passes) >= syncs:
            src.qmp.execute(command)
            return time.time()
        if time.time() >= until:
            return None
        time.sleep(0.002)


def _pause_lag_ms(events: list[dict[str, Any]], syncs: int) -> float | None:
    """How long after the event of sync `syncs` the guest stopped (its STOP event), in ms: the
    model's pause_delay.  None when no stop followed that sync (a stop at a set time came
    first, or the migration ended before the sync)."""
    passes = [e for e in events if e["event"] == "MIGRATION_PASS" and e["data"]["pass"] == syncs]
    if not syncs or not passes:
        return None
    synced = event_time(passes[0])
    stops = [event_time(e) for e in events if e["event"] == "STOP"]
    after = [t for t in stops if t >= synced]
    if not after or len(after) < len(stops):
        return None
    return (after[0] - synced) * 1000.0


def _settled(
    src: Qemu, reply: dict[str, Any], samples: list[dict[str, Any]], t_migrate: float
) -> dict[str, Any]:
    """Re-poll until a completed reply carries its times.

    QEMU 7.2 sets the state to ``completed`` before ``migration_calculate_complete`` fills in
    total-time and downtime, so a poll in between reads zeros.
    """
    deadline = time.monotonic() + 5.0
    while not reply.get("total-time") and time.monotonic() < deadline:
        time.sleep(0.005)
        sent = time.time()
        reply = src.qmp.execute("query-migrate", timeout=10.0)
        row = {"t_ms": (sent - t_migrate) * 1000.0, "poll_ms": (time.time() - sent) * 1000.0}
        row.update(flatten(reply))
        samples.append(row)
    if not reply.get("total-time"):
        raise MigrationError("completed migration never reported its total-time")
    return reply


def _precopy_rate(
    samples: list[dict[str, Any]], max_bandwidth: int, postcopy: bool = False
) -> dict[str, Any]:
    """Pre-copy bytes per second over max-bandwidth: about 1.0002 in an undisturbed run.

    QEMU's rate limiter fills every 100 ms window when max-bandwidth binds, so a lower ratio
    (or a window that carried little) means the migration thread was starved: host load.

    A completed run's last "active" sample is left out: the status stays "active" through the
    stop-and-copy (no pause-before-switchover), and a poll that waited for the big lock there
    counts the final copy's bytes, sent at link speed (it read 1.018 in one run).  A run that
    switched to postcopy stopped in "postcopy-active": its last "active" poll is pre-copy's.
    """
    active = [r for r in samples if r.get("status") == "active" and "ram_transferred" in r]
    if samples and samples[-1].get("status") == "completed" and not postcopy:
        active = active[:-1]
    if not max_bandwidth or len(active) < 2:
        return {"precopy_rate_ratio": None, "min_window_rate_ratio": None}
    x = np.array([r["ram_transferred"] for r in active], dtype=float)
    t = np.array([r["total_time"] for r in active], dtype=float) / 1000.0
    dt = np.diff(t)
    window = np.diff(x)[dt > 0] / dt[dt > 0] / max_bandwidth
    return {
        "precopy_rate_ratio": float((x[-1] - x[0]) / (t[-1] - t[0]) / max_bandwidth),
        "min_window_rate_ratio": float(window.min()) if window.size else None,
    }


def _achieved_rate(
    guest: pd.DataFrame, offset: float | None, t_migrate: float, until_ms: float | None
) -> float | None:
    """Page writes per second from migrate until ``until_ms`` (the throttle's onset) or the end."""
    if guest.empty or offset is None or not np.isfinite(offset):
        return None
    g_m = (t_migrate - offset) * 1e6
    window = guest[guest["t_us"] >= g_m]
    if until_ms is not None:
        window = window[window["t_us"] <= g_m + until_ms * 1000.0]
    if len(window) < 2:
        return None
    dt = (window["t_us"].iloc[-1] - window["t_us"].iloc[0]) / 1e6
    return float((window["writes"].iloc[-1] - window["writes"].iloc[0]) / dt)


def _events_frame(events: list[dict[str, Any]], t_migrate: float) -> pd.DataFrame:
    rows = []
    for e in events:
        data = e.get("data", {})
        rows.append(
            {
                "event": e["event"],
                "wall_s": event_time(e),
                "t_ms": (event_time(e) - t_migrate) * 1000.0,
                "pass": data.get("pass"),
                "status": data.get("status"),
                "data": json.dumps(data),
            }
        )
    cols = ["event", "wall_s", "t_ms", "pass", "status", "data"]
    return pd.DataFrame(rows, columns=cols)


def _derive(
    spec: RunSpec,
    serial: SerialLog,
    guest: pd.DataFrame,
    t_migrate: float,
    t_end: float,
    events: list[dict[str, Any]],
    version: dict[str, Any],
    final_status: Any,
) -> dict[str, Any]:
    """Version, the guest clock mapping, ring phase at migrate, achieved write rates."""
    q = version.get("qemu", {})
    info: dict[str, Any] = {
        "qemu_version": f"{q.get('major')}.{q.get('minor')}.{q.get('micro')}",
        "qemu_package": version.get("package", ""),
        "final_status": final_status,
        "migrate_wall_s": t_migrate,
        "end_wall_s": t_end,
        "boot": json.dumps(serial.boot or {}),
    }

    def first(status: str) -> float | None:
        """When the MIGRATION event of `status` came, in ms from migrate."""
        seen = [e for e in events if e["event"] == "MIGRATION" and e["data"]["status"] == status]
        return (event_time(seen[0]) - t_migrate) * 1000.0 if seen else None

    info["setup_event_ms"] = first("setup")
    info["postcopy_started_ms"] = first("postcopy-active")
    info["pause_lag_ms"] = _pause_lag_ms(events, spec.pause_after_iterations)
    offset = guest_clock_offset(guest)
    info["guest_clock_offset_s"] = offset
    ws_pages = (serial.boot or {}).get("ws_pages", 0)
    info["ws_pages"] = ws_pages
    info["tsc_khz"] = (serial.boot or {}).get("tsc_khz")
    if guest.empty or not np.isfinite(offset):
        return info
    g_m = (t_migrate - offset) * 1e6
    stop = [e for e in events if e["event"] == "MIGRATION" and e["data"]["status"] in TERMINAL]
    stop_wall = event_time(stop[0]) if stop else t_end
    g_e = (stop_wall - offset) * 1e6
    w_m, pos_m = writes_at(guest, g_m)
    info["writes_at_migrate"] = w_m
    info["ring_pos_at_migrate"] = pos_m % ws_pages if ws_pages else 0.0
    info["ring_phase_at_migrate"] = info["ring_pos_at_migrate"] / ws_pages if ws_pages else 0.0
    before = guest[guest["t_us"] <= g_m]
    if len(before) >= 2:
        dt = (before["t_us"].iloc[-1] - before["t_us"].iloc[0]) / 1e6
        info["rate_before_migrate"] = (before["writes"].iloc[-1] - before["writes"].iloc[0]) / dt
    during = guest[(guest["t_us"] >= g_m) & (guest["t_us"] <= g_e)]
    if len(during) >= 2:
        dt = (during["t_us"].iloc[-1] - during["t_us"].iloc[0]) / 1e6
        info["rate_during_migration"] = (during["writes"].iloc[-1] - during["writes"].iloc[0]) / dt
    return info

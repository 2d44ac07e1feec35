"""A running VM's migration inputs, read over QMP: what ``explain --qmp`` starts from.

The VM says what it is (RAM, vCPUs, QEMU version) and how it would migrate (downtime-limit,
max-bandwidth, auto-converge and its throttle settings, dirty-limit, avail-switchover-bandwidth).
How fast it dirties memory it does not say; ``calc-dirty-rate`` measures it as the distinct
pages whose contents changed in a window of ``calc-time`` seconds.  One window gives distinct
pages, not the write rate: a guest writing 20,000 pages/s over a 16 MiB working set changes
its 4,096 pages in any window of a second or more.  So the probe measures windows of several
lengths and fits the model's curve for uniform writes, d(T) = W (1 - exp(-r T / W))
(:func:`sweep.workloads.uniform`), for the write rate r and the working set W.

Assumptions (docs/model.md, "Inputs from a running VM"):

* writes are uniform over the working set, or go round it as a ring when the caller says so
  (``--write-pattern sequential``: its curve is min(W, r T));
* a write changes the page's contents (page sampling hashes sampled pages; a write of the
  same bytes is not seen, and QEMU's dirty log would see it);
* the guest's behaviour is steady over the seconds the windows take.

Page sampling is the only mode used: ``dirty-bitmap`` made QEMU 7.2 under TCG crash with a
segfault on this machine, and ``dirty-ring`` needs KVM's dirty ring.  The link's speed is not
the VM's to know; the caller gives it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from .qmp import QMPClient

__all__ = [
    "CALC_TIMES_S",
    "SAMPLED_PAGES",
    "DirtyFit",
    "Probe",
    "ProbeError",
    "fit_writes",
    "probe",
    "sample_pages_per_gib",
    "scenario_from_replies",
    "sweep_config",
]

CALC_TIMES_S = (1, 2, 4)  # windows measured, seconds (QEMU 7.2 takes whole seconds)
# Pages sampled: about SAMPLED_PAGES in all (the sampling noise on a working set of 1 % of
# RAM is then about 4 %), within QEMU's range of sample-pages per GiB.  Each window hashes
# every sampled page twice; more samples would make the probe of a large VM costly.
SAMPLED_PAGES = 65536
SAMPLE_PAGES_PER_GIB = (128, 16384)
MIB = 2**20
PAGE = 4096  # x86's TARGET_PAGE_SIZE: what the counts and sizes are in
# A fitted working set this close to all of RAM is not resolved: the windows did not
# saturate, so the data only say W is large.
UNRESOLVED_SHARE = 0.95
# Windows whose counts grow by less than this share from the shortest to the longest have
# saturated (sampling noise and QEMU's whole MiB/s are a few per cent); the write rate is
# then only bounded below: the rate at which the shortest window changes SATURATED_SHARE of
# the working set (a faster writer would look the same).
SATURATED_GROWTH = 0.15
SATURATED_SHARE = 0.95

# QEMU's migration parameters (query-migrate-parameters) -> ours, with the unit suffix our
# parser reads.  Keys a QEMU version lacks are left at our defaults.
_PARAMETERS = {
    "downtime-limit": ("downtime_limit", "ms"),
    "max-bandwidth": ("max_bandwidth", ""),
    "throttle-trigger-threshold": ("throttle_trigger_threshold", ""),
    "cpu-throttle-initial": ("cpu_throttle_initial", ""),
    "cpu-throttle-increment": ("cpu_throttle_increment", ""),
    "max-cpu-throttle": ("max_cpu_throttle", ""),
    "cpu-throttle-tailslow": ("cpu_throttle_tailslow", ""),
    "vcpu-dirty-limit": ("vcpu_dirty_limit", ""),
    "avail-switchover-bandwidth": ("switchover_bandwidth", ""),
}
_CAPABILITIES = {"auto-converge": "auto_converge", "dirty-limit": "dirty_limit"}
# Capabilities that change bytes per page, which the model does not follow (docs/model.md).
NOT_MODELLED = ("xbzrle", "multifd", "compress")


class ProbeError(RuntimeError):
    """The VM cannot be probed (too old a QEMU, a socket that does not answer)."""


# calc-dirty-rate came in QEMU 5.2, its sample-pages argument in 6.1
FIRST_VERSION = (6, 1)


@dataclass
class DirtyFit:
    """The curve fitted to the measured windows: rate in pages/s, working set in pages (None
    when the windows did not saturate: all non-zero memory, the model's default)."""

    rate: float
    working_set: float | None
    saturated: bool  # the rate is a lower bound
    points: list[tuple[float, float]]  # (window s, distinct pages changed)


def fit_writes(
    points: Sequence[tuple[float, float]], total_pages: float, pattern: str = "uniform"
) -> DirtyFit:
    """The (rate, working set) whose curve of distinct pages fits the windows best, in
    relative error: uniform writes, W (1 - exp(-r T / W)), or a ring, min(W, r T).

    Uniform: W is searched on a log grid from just above the largest count to all of RAM;
    for each W the rate has a closed form, least squares through the origin of the transform
    -ln(1 - d / W) = (r / W) T.  A ring is simpler (:func:`_fit_ring`).  Deterministic: no
    random start, no solver.  Windows that all count the same pages (within
    SATURATED_GROWTH) have saturated: W is their median and the rate only a lower bound, the
    rate at which the shortest window would change SATURATED_SHARE of W (uniform) or all of
    it (a ring)."""
    pts = [(float(t), float(d)) for t, d in points]
    times = np.array([t for t, _ in pts])
    counts = np.array([d for _, d in pts])
    if counts.max(initial=0.0) <= 0.0:
        return DirtyFit(0.0, None, False, pts)
    shortest, longest = counts[np.argmin(times)], counts[np.argmax(times)]
    if times.max() > times.min() and longest <= shortest * (1.0 + SATURATED_GROWTH):
        w = float(np.median(counts))
        fill = -math.log1p(-SATURATED_SHARE) if pattern == "uniform" else 1.0
        return DirtyFit(float(w * fill / times.min()), w, True, pts)
    if pattern != "uniform":
        return _fit_ring(times, counts, pts)
    low = min(counts.max() * (1.0 + 1e-3), total_pages * (1.0 - 1e-9))
    grid = np.geomspace(low, max(total_pages, low), 2000)[:, None]
    k = np.sum(-np.log1p(-counts / grid) * times, axis=1) / np.sum(times**2)
    model = grid * -np.expm1(-k[:, None] * times)
    error = np.sum(((model - counts) / np.maximum(counts, 1.0)) ** 2, axis=1)
    best = int(np.argmin(error))
    w = float(grid[best, 0])
    if w >= UNRESOLVED_SHARE * total_pages:
        # not saturated: the counts grow with the window; the rate is their slope
        return DirtyFit(_slope(times, counts), None, False, pts)
    return DirtyFit(float(k[best]) * w, w, False, pts)


def _fit_ring(times: np.ndarray, counts: np.ndarray, pts: list) -> DirtyFit:
    """A ring, min(W, r T): the rate from the shortest window; the ring is full (W = its
    count) when the longest window falls short of that line by SATURATED_GROWTH, and the
    rate is then the slope of the windows below W."""
    order = np.argsort(times)
    times, counts = times[order], counts[order]
    rate = counts[0] / times[0]
    if counts[-1] >= rate * times[-1] * (1.0 - SATURATED_GROWTH):
        return DirtyFit(_slope(times, counts), None, False, pts)
    w = float(counts[-1])
    below = counts < w * (1.0 - SATURATED_GROWTH / 10)
    return DirtyFit(_slope(times[below], counts[below]), w, False, pts)


def _slope(times: np.ndarray, counts: np.ndarray) -> float:
    """Pages per second: the least-squares line through the origin."""
    return float(np.sum(counts * times) / np.sum(times**2))


@dataclass
class Probe:
    """What a VM said: its parameters (config keys, values our parser reads), where each came
    from, and notes for the user (what was not read, what is not modelled)."""

    scenario: dict[str, str]
    source: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fit: DirtyFit | None = None

    def where(self, key: str, given: dict[str, Any]) -> str:
        """Where `key`'s value comes from, the command line (`given`) first."""
        return "given on the command line" if key in given else self.source.get(key, "the VM")


def scenario_from_replies(replies: dict[str, Any]) -> Probe:
    """Our parameters from the replies of query-version, query-memory-size-summary,
    query-cpus-fast, query-migrate-parameters and query-migrate-capabilities; a QEMU too old
    to be measured (before FIRST_VERSION) is refused here, before any measurement."""
    version = replies["query-version"]["qemu"]
    if (version["major"], version["minor"]) < FIRST_VERSION:
        raise ProbeError(
            f"QEMU {version['major']}.{version['minor']} cannot measure its dirty rate with "
            "sample-pages (QEMU 6.1 or later): give --dirty-rate and --working-set-size"
        )
    memory = replies["query-memory-size-summary"]
    out = Probe(
        scenario={
            "qemu_version": f"{version['major']}.{version['minor']}",
            "ram_size": str(int(memory["base-memory"]) + int(memory.get("plugged-memory", 0))),
            "vcpus": str(len(replies["query-cpus-fast"])),
        }
    )
    out.source = {key: "the VM" for key in out.scenario}
    for qemu_name, value in replies["query-migrate-parameters"].items():
        if qemu_name in _PARAMETERS:
            name, unit = _PARAMETERS[qemu_name]
            out.scenario[name] = f"{str(value).lower()}{unit}"
            out.source[name] = f"the VM's {qemu_name}"
    states = {c["capability"]: bool(c["state"]) for c in replies["query-migrate-capabilities"]}
    for qemu_name, name in _CAPABILITIES.items():
        if qemu_name in states:
            out.scenario[name] = str(states[qemu_name]).lower()
            out.source[name] = f"the VM's {qemu_name} capability"
    on = [name for name in NOT_MODELLED if states.get(name)]
    if on:
        out.notes.append(
            f"capability {', '.join(on)} is on: the model sends every page whole "
            "(no XBZRLE, multifd or compression), so its bytes per page are an upper bound"
        )
    out.notes.append(
        "zero pages are not read: the model takes all of RAM as written (set --nonzero-size "
        "if much of it is free)"
    )
    if states.get("postcopy-ram"):
        out.notes.append(
            "postcopy-ram is on: when to start postcopy is the manager's choice; "
            "set --postcopy-after-iterations or --postcopy-after-time to model it"
        )
    return out


def sample_pages_per_gib(ram_bytes: float) -> int:
    """calc-dirty-rate's sample-pages for a VM of `ram_bytes`: SAMPLED_PAGES in all."""
    low, high = SAMPLE_PAGES_PER_GIB
    return int(min(max(round(SAMPLED_PAGES / (ram_bytes / 2**30)), low), high))


def measure_dirty(
    client: QMPClient, calc_times: Sequence[int], sample_pages: int
) -> list[tuple[float, float]]:
    """(window s, distinct pages changed) for each window, one calc-dirty-rate each.

    QEMU reports whole MiB/s over the window (dirtyrate.c shifts by 20 bits), so a count is
    rate x 2^20 / page size x window."""
    points = []
    for seconds in calc_times:
        client.execute("calc-dirty-rate", {"calc-time": int(seconds), "sample-pages": sample_pages})
        deadline = time.monotonic() + seconds + 30.0
        while True:
            reply = client.execute("query-dirty-rate")
            if reply.get("status") == "measured":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"calc-dirty-rate of {seconds} s did not finish")
            time.sleep(0.05)
        points.append((float(seconds), float(reply["dirty-rate"]) * MIB / PAGE * seconds))
    return points


def probe(
    path: str, calc_times: Sequence[int] = CALC_TIMES_S, pattern: str = "uniform",
    timeout: float = 10.0,
) -> Probe:  # fmt: skip
    """Ask the VM behind the QMP socket `path` for its migration inputs and measure how it
    dirties memory (about sum(calc_times) seconds), read as writes of `pattern`."""
    with QMPClient(path, timeout=timeout) as client:
        client.connect()
        replies = {
            command: client.execute(command)
            for command in (
                "query-version", "query-memory-size-summary", "query-cpus-fast",
                "query-migrate-parameters", "query-migrate-capabilities",
            )
        }  # fmt: skip
        out = scenario_from_replies(replies)
        ram = int(out.scenario["ram_size"])
        windows = measure_dirty(client, calc_times, sample_pages_per_gib(ram))
        fit = fit_writes(windows, ram / PAGE, pattern)
    out.fit = fit
    out.scenario["write_pattern"] = pattern
    out.source["write_pattern"] = "given" if pattern != "uniform" else "assumed"
    out.scenario["dirty_rate"] = f"{fit.rate:.6g}"
    windows = ", ".join(f"{d:.0f} pages in {t:g} s" for t, d in fit.points)
    out.source["dirty_rate"] = f"fitted to calc-dirty-rate: {windows}"
    if fit.working_set is not None:
        out.scenario["working_set_size"] = str(PAGE * math.ceil(fit.working_set))
        out.source["working_set_size"] = "fitted: the windows saturate"
    else:
        out.notes.append(
            "the windows did not saturate: the working set is taken as all non-zero memory"
        )
    if fit.saturated:
        out.notes.append(
            f"the {min(calc_times)} s window already changed the whole working set: the write "
            "rate is a lower bound (a faster writer would look the same)"
        )
    return out


def _yaml_value(text: str, as_text: bool = False) -> str:
    """`text` as YAML that reads back as what our parser takes: plain when YAML reads it as
    that text, a number or a boolean; quoted otherwise (a version, "a: b", "#")."""
    try:
        read = yaml.safe_load(text)
    except yaml.YAMLError:
        read = None
    plain = read == text or (isinstance(read, (bool, int, float)) and not as_text)
    return text if plain and "#" not in text else json.dumps(text)


# The axes of a sweep around a probed VM (sweep_config): what the VM cannot say (the link)
# and what its operator can set (the downtime limit), over the ranges that matter.
AROUND_THE_VM = {
    "link_bandwidth": "{start: 1Gbit/s, stop: 100Gbit/s, num: 9, scale: log}",
    "downtime_limit": "{start: 30ms, stop: 5s, num: 12, scale: log}",
}


def sweep_config(vm: Probe, given: dict[str, Any], header: str, order: Sequence[str]) -> str:
    """A sweep config (YAML text) around the probed VM, keys in `order`: its values fixed,
    each with where it came from; as axes, the link's speed, the downtime limit, the VM's
    max-bandwidth and no cap (a cap below the link makes the link's speed moot), and the
    dirty rate at half, as measured and twice.  What the command line gave stays fixed."""
    fixed = {**vm.scenario, **{k: str(v) for k, v in given.items()}}
    axes = {k: v for k, v in AROUND_THE_VM.items() if k not in given}
    cap = vm.scenario.get("max_bandwidth", "0")
    if "max_bandwidth" not in given and cap != "0":
        axes["max_bandwidth"] = f"[{cap}, 0]"
    rate = float(vm.scenario["dirty_rate"])
    if "dirty_rate" not in given and rate > 0:
        axes["dirty_rate"] = "[" + ", ".join(f"{rate * f:.6g}" for f in (0.5, 1, 2)) + "]"
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"# note: {note}" for note in vm.notes]
    lines += ["", "fixed:"]
    for key in (k for k in order if k in fixed):
        value = _yaml_value(fixed[key], as_text=key == "qemu_version")  # 7.10 is not 7.1
        where = vm.where(key, given)
        if key in axes:
            lines.append(f"  # {key}: {value} ({where}); swept below")
        else:
            lines.append(f"  {key}: {value}  # {where}")
    lines += ["", "axes:"] + [f"  {key}: {axes[key]}" for key in order if key in axes]
    return "\n".join(lines) + "\n"

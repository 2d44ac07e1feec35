"""Command line: ``python -m sweep explain ...`` and ``python -m sweep params``.

``explain`` runs one scenario and prints what QEMU would do, sync by sync, then the verdict;
when the migration does not converge it also says which downtime limit or bandwidth would
make it converge (a small sweep around the scenario).  With ``--qmp SOCKET`` the scenario
starts from a running VM's own settings and measured dirtying (:mod:`sweep.qemu.probe`);
options given on the command line win.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .api import simulate
from .io import write_text
from .params import PARAMETERS, ParameterError
from .units import format_bytes, format_duration_ms, format_rate

__all__ = ["main"]

ALIASES = {
    "ram": "ram_size",
    "working-set": "working_set_size",
    "nonzero": "nonzero_size",
    "pattern": "write_pattern",
    "version": "qemu_version",
}


def _flags(name: str) -> list[str]:
    """A parameter's options: --ram-size, then its aliases (--ram)."""
    return ["--" + name.replace("_", "-")] + ["--" + a for a, t in ALIASES.items() if t == name]


def _add_parameter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scenario parameters (units accepted; see `params`)")
    for param in PARAMETERS:
        extra: dict[str, Any] = {}
        if param.kind == "bool":
            extra = {"nargs": "?", "const": "true"}
        group.add_argument(
            *_flags(param.name), dest=param.name, metavar=param.unit or "VALUE", help=param.doc,
            **extra,
        )  # fmt: skip
    group.add_argument(
        "--bandwidth",
        metavar="bytes/s",
        help="Shorthand: sets both max_bandwidth and link_bandwidth (QEMU capped at what the "
        "link carries).",
    )


def _scenario(args: argparse.Namespace) -> dict[str, Any]:
    row = {p.name: getattr(args, p.name) for p in PARAMETERS if getattr(args, p.name) is not None}
    if args.bandwidth is not None:
        for name in ("max_bandwidth", "link_bandwidth"):
            if name in row:
                raise ParameterError(
                    "bandwidth", args.bandwidth, f"either --bandwidth or --{name}, not both"
                )
            row[name] = args.bandwidth
    return row


def _iteration_table(iterations: pd.DataFrame) -> str:
    table = pd.DataFrame(
        {
            "sync": iterations["dirty_sync_count"],
            "reason": iterations["sync_reason"].astype(str),
            "time": [format_duration_ms(v) for v in iterations["time_ms"]],
            "sent": [format_bytes(v) for v in iterations["transferred_bytes"]],
            "remaining": [format_bytes(v) for v in iterations["remaining_bytes"]],
            "new dirty pages": iterations["new_dirty_pages"],
            "dirty rate p/s": iterations["dirty_pages_rate_pages_per_s"],
            "bandwidth": [format_rate(v) for v in iterations["bandwidth_bytes_per_s"]],
            "threshold": [format_bytes(v) for v in iterations["threshold_bytes"]],
            "exp. downtime": [format_duration_ms(v) for v in iterations["expected_downtime_ms"]],
            "throttle %": iterations["throttle_pct"],
        }
    )
    return table.to_string(index=False)


def _downtime(row: pd.Series) -> str:
    within = "exceeds" if row["downtime_exceeded"] else "within"
    return (
        f"Downtime {format_duration_ms(row['downtime_ms'])} ({within} the "
        f"{format_duration_ms(row['downtime_limit_ms'])} limit)"
    )


def _verdict(row: pd.Series) -> list[str]:
    if row["converged"]:
        return [
            f"Converged: QEMU switched over after {row['dirty_sync_count']} dirty syncs; "
            f"total time {format_duration_ms(row['total_time_ms'])}.",
            f"{_downtime(row)}; {format_bytes(row['transferred_bytes'])} sent "
            f"({format_bytes(row['downtime_bytes'])} of RAM while stopped).",
        ]
    if row["status"] == "completed-postcopy":
        rules = []  # the manager asks at whichever comes first
        if row["postcopy_after_iterations"]:
            rules.append(f"at {row['postcopy_after_iterations']} dirty syncs")
        if row["postcopy_after_time_s"]:
            rules.append(f"after {format_duration_ms(row['postcopy_after_time_s'] * 1000.0)}")
        return [
            f"Did not converge in pre-copy: the manager switched to postcopy "
            f"{' or '.join(rules)}; total time {format_duration_ms(row['total_time_ms'])}.",
            f"{_downtime(row)}; the destination then ran for "
            f"{format_duration_ms(row['postcopy_time_ms'])} while "
            f"{format_bytes(row['postcopy_bytes'])} came over on demand and in the background.",
        ]
    if row["status"] == "completed-paused":
        stopped_ms = row["total_time_ms"] - row["downtime_ms"] - row["paused_time_ms"]
        timed = row["pause_after_time_s"] and math.isclose(
            stopped_ms, row["pause_after_time_s"] * 1000.0, abs_tol=0.001
        )
        syncs = row["pause_after_iterations"]
        why = "pause_after_time" if timed else f"as dirty sync {syncs} ended"
        return [
            f"Did not converge live: the manager stopped the guest at "
            f"{format_duration_ms(stopped_ms)} ({why}), and QEMU switched over "
            f"{format_duration_ms(row['paused_time_ms'])} later, after "
            f"{row['dirty_sync_count']} syncs; total time "
            f"{format_duration_ms(row['total_time_ms'])}.",
            f"{_downtime(row)}, QEMU's own; the guest stood still for "
            f"{format_duration_ms(row['paused_time_ms'] + row['downtime_ms'])} in all.",
        ]
    why = {
        "cancelled-time": f"cancelled at max_time ({row['max_time_s']:g} s)",
        "cancelled-iterations": f"cancelled after more than {row['max_iterations']} syncs",
    }[str(row["status"])]
    return [
        f"Did not converge: {why}; {row['dirty_sync_count']} dirty syncs, "
        f"{format_bytes(row['transferred_bytes'])} sent.",
        f"The dirty set never fell below the threshold of "
        f"{format_bytes(row['threshold_bytes'])} (bandwidth x downtime limit).",
    ]


def _first_converging(trials: list[dict[str, Any]]) -> pd.Series | None:
    """The first of `trials` (ordered from the smallest change) that converges."""
    summary = simulate(trials).summary
    converged = summary[summary["converged"]]
    return converged.iloc[0] if len(converged) else None


def _suggestions(scenario: dict[str, Any], base: pd.Series) -> list[str]:
    """Smallest downtime limit, and smallest bandwidth, that make this scenario converge.

    Pre-copy alone: a switch to postcopy, or the manager stopping the guest, ends the
    trials' migrations before they could converge live."""
    lines = []
    scenario = {**scenario, "postcopy_after_iterations": 0, "postcopy_after_time": 0,
                "pause_after_iterations": 0, "pause_after_time": 0}  # fmt: skip
    limits = np.unique(np.round(np.geomspace(max(base["downtime_limit_ms"], 1), 2_000_000, 48)))
    best = _first_converging([{**scenario, "downtime_limit": int(v)} for v in limits])
    if best is not None:
        lines.append(
            f"  - downtime_limit >= {format_duration_ms(best['downtime_limit_ms'])} converges "
            f"(downtime {format_duration_ms(best['downtime_ms'])}, total "
            f"{format_duration_ms(best['total_time_ms'])})."
        )
    link = base["link_bandwidth_bytes_per_s"]
    cap = base["max_bandwidth_bytes_per_s"]
    factors = np.geomspace(1.0, 100.0, 41)[1:]
    trials = []
    for f in factors:
        trial = {**scenario, "link_bandwidth": link * f}
        trial.pop("bandwidth", None)
        if cap:
            trial["max_bandwidth"] = int(cap * f)
        trials.append(trial)
    best = _first_converging(trials)
    if best is not None:
        lines.append(
            f"  - {format_rate(best['link_bandwidth_bytes_per_s'])} link"
            + (f" (max_bandwidth {format_rate(best['max_bandwidth_bytes_per_s'])})" if cap else "")
            + " converges with the same downtime limit."
        )
    if not base["auto_converge"] and not base["dirty_limit"]:
        summary = simulate([{**scenario, "auto_converge": True}]).summary.iloc[0]
        verdict = "converges" if summary["converged"] else "does not converge either"
        lines.append(
            f"  - auto_converge on {verdict} (final throttle {summary['throttle_pct']} %)."
        )
    head = "What would converge (one change at a time"
    if base["postcopy_after_iterations"] or base["postcopy_after_time_s"]:
        head += ", without postcopy"
    if base["pause_after_iterations"] or base["pause_after_time_s"]:
        head += ", without stopping the guest"
    head += "):"
    return [head, *lines] if lines else []


class CommandError(RuntimeError):
    """An option the command cannot act on (a VM that cannot be read, a missing directory)."""


def _from_vm(args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
    """The VM's parameters (sweep.qemu.probe), printed with where each came from; the ones
    given on the command line are left to those.  With --save-config, a sweep around it."""
    from .qemu.probe import ProbeError, probe, sweep_config
    from .qemu.qmp import QMPError, QMPTimeoutError

    if min(args.calc_times) < 1 or len(set(args.calc_times)) < 2:
        raise ParameterError(
            "calc_times", " ".join(map(str, args.calc_times)),
            "two or more different whole seconds, each at least 1",
        )  # fmt: skip
    if not Path(args.qmp).exists():
        raise CommandError(f"--qmp {args.qmp}: no such socket")
    if args.save_config is not None and not Path(args.save_config).parent.is_dir():
        raise CommandError(f"--save-config {args.save_config}: no such directory")
    pattern = str(given.get("write_pattern", "uniform"))
    seconds = sum(args.calc_times)
    print(
        f"Reading the VM at {args.qmp} (calc-dirty-rate windows of "
        f"{', '.join(map(str, args.calc_times))} s: about {seconds} s) ...",
        flush=True,
    )
    try:
        vm = probe(args.qmp, args.calc_times, pattern)
    except QMPTimeoutError as error:
        raise CommandError(
            f"--qmp {args.qmp}: {error} (QEMU serves one client per QMP socket: if libvirt "
            "holds this one, give the VM a second -qmp socket)"
        ) from None
    except (OSError, TimeoutError, QMPError, ProbeError) as error:
        raise CommandError(f"--qmp {args.qmp}: {error}") from None
    print("From the VM:")
    for key in (p.name for p in PARAMETERS if p.name in vm.scenario):
        print(f"  {key} = {given.get(key, vm.scenario[key])}  ({vm.where(key, given)})")
    if "link_bandwidth" not in given:
        print("  link_bandwidth: not the VM's to know; the default is used (set --link-bandwidth)")
    for note in vm.notes:
        print(f"  note: {note}")
    if args.save_config is not None:
        order = [p.name for p in PARAMETERS]
        write_text(sweep_config(vm, given, _config_header(args), order), args.save_config)
        print(f"Saved a sweep around this VM: {args.save_config}")
    print()
    return vm.scenario


def _config_header(args: argparse.Namespace) -> str:
    return (
        f"A sweep around the VM at {args.qmp}, written by `python -m sweep explain --qmp`.\n"
        f"Run it: snakemake --cores 2 --workflow-profile workflow/profiles/default "
        f"--configfile {args.save_config}\n"
        "Keys and units: config/README.md; what the probe reads and assumes: docs/model.md."
    )


def explain(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    if args.save_config is not None and args.qmp is None:
        raise ParameterError("save_config", args.save_config, "used with --qmp only")
    if args.qmp is not None:
        scenario = {**_from_vm(args, scenario), **scenario}
    result = simulate([scenario])
    row = result.summary.iloc[0]
    print(
        f"Scenario: {format_bytes(row['ram_size_bytes'])} guest, "
        f"working set {format_bytes(row['working_set_size_bytes'])} written at "
        f"{row['dirty_rate_pages_per_s']:.6g} pages/s "
        f"({format_rate(row['dirty_rate_pages_per_s'] * row['page_size_bytes'])}, "
        f"{row['write_pattern']}"
        + (", sent first" if row["working_set_layout"] == "start" else "")
        + f"); link {format_rate(row['link_bandwidth_bytes_per_s'])}, "
        f"max-bandwidth "
        + (format_rate(row["max_bandwidth_bytes_per_s"]) if row["max_bandwidth_bytes_per_s"]
           else "unlimited")
        + f", downtime-limit {format_duration_ms(row['downtime_limit_ms'])}, "
        f"QEMU {row['qemu_version']} rules"
        + (", auto-converge" if row["auto_converge"] else "")
        + (", dirty-limit" if row["dirty_limit"] else "")
        + "."
    )  # fmt: skip
    print()
    print(_iteration_table(result.iterations))
    print()
    print("\n".join(_verdict(row)))
    if not row["converged"] and not args.no_suggestions:
        print("\n".join(_suggestions(scenario, row)))
    return 0


def params(_: argparse.Namespace) -> int:
    rows = [
        (p.name, p.unit, str(p.default), p.range_text() or ", ".join(p.choices), p.doc)
        for p in PARAMETERS
    ]
    print(pd.DataFrame(rows, columns=["name", "unit", "default", "allowed", "meaning"]).to_string(
        index=False, max_colwidth=70
    ))  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep", description="QEMU pre-copy live migration model."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("explain", help="simulate one scenario and print its syncs and verdict")
    _add_parameter_options(one)
    one.add_argument(
        "--no-suggestions", action="store_true", help="skip the what-would-converge search"
    )
    vm = one.add_argument_group("a running VM (QEMU 6.1 or later; see docs/model.md)")
    vm.add_argument(
        "--qmp", metavar="SOCKET",
        help="Start from this VM's settings and measured dirtying (its QMP unix socket). "
        "Options given here win; the link's speed is not the VM's to know.",
    )  # fmt: skip
    vm.add_argument(
        "--save-config", metavar="FILE",
        help="Also write a sweep config around the VM (its values fixed; link speed, "
        "downtime limit, its rate cap or none, and dirty rate swept, unless given here) for "
        "snakemake --configfile",
    )  # fmt: skip
    vm.add_argument(
        "--calc-times", metavar="S", type=int, nargs="+", default=[1, 2, 4],
        help="calc-dirty-rate windows in whole seconds (default 1 2 4): the rate and the "
        "working set are fitted to them",
    )  # fmt: skip
    one.set_defaults(func=explain)
    table = sub.add_parser("params", help="list the scenario parameters, units and defaults")
    table.set_defaults(func=params)
    return parser


def _value_flags() -> set[str]:
    """The options of `explain` that take a value (every parameter but the booleans)."""
    return {"--bandwidth"}.union(*(_flags(p.name) for p in PARAMETERS if p.kind != "bool"))


def _negatives_attached(argv: Sequence[str]) -> list[str]:
    """`--ram -4GiB` as `--ram=-4GiB`.  argparse reads a token that starts with '-' as an
    option unless it is a plain number, and stops with "expected one argument"; attached,
    the value reaches the parameter check, whose error names the key, the value and the
    range."""
    flags = _value_flags()
    out: list[str] = []
    for token in argv:
        if (
            out
            and out[-1] in flags
            and len(token) > 1
            and token[0] == "-"
            and token[1] in "0123456789."
        ):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_negatives_attached(argv))
    try:
        return args.func(args)
    except (ParameterError, CommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader left (`| head`): no traceback, and none again when Python flushes
        # stdout at exit (the way the Python docs give for SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

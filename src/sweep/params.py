"""The scenario parameter table: one place for names, units, defaults and allowed ranges.

The config schema (``workflow/schemas/config.schema.yaml``), the Python API
(:func:`sweep.simulate`), the CLI and the docs (``docs/parameters.md``) are all generated from
or checked against :data:`PARAMETERS`, so a parameter is described exactly once.

Each parameter has a user-facing ``name`` (the config key, e.g. ``ram_size``) and a canonical
``column`` with its unit in the name (e.g. ``ram_size_bytes``).  Users may write values with
units ("4GiB", "1Gbit/s", "300ms"); bare numbers are in the canonical unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .units import (
    DIRTY_FORMS,
    RATE_FORMS,
    SIZE_FORMS,
    UnitError,
    dirty_rate_parts,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = [
    "PARAMETERS",
    "Param",
    "ParameterError",
    "QemuVersion",
    "by_name",
    "label_codes",
    "normalize",
    "parse_version",
    "unit_of",
    "version_flags",
]

PAGE_SIZE_DEFAULT = 4096


#: 9.2+ with auto-converge: the period of the timer that forces a dirty sync
#: (CPU_THROTTLE_DIRTY_SYNC_TIMESLICE_MS).
PERIODIC_SYNC_MS = 5000


class ParameterError(ValueError):
    """Bad input: names the key, the value and what is allowed."""

    def __init__(
        self, key: str, value: object, allowed: str, where: str = "", unit: str = ""
    ) -> None:
        if isinstance(value, np.generic):  # 2.5, not np.float64(2.5)
            value = value.item()
        self.key, self.value, self.allowed, self.unit = key, value, allowed, unit
        location = f" ({where})" if where else ""
        # a canonical value (a relation's) reads in its canonical unit: 600 s, not 600.0
        shown = f"{_number(value)} {unit}" if unit else repr(value)
        super().__init__(f"{key}{location}: {shown} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class Param:
    """One scenario parameter.  ``kind`` selects the parser; ``dtype`` the canonical column."""

    name: str
    column: str
    kind: str  # size | rate | dirty_rate | duration_ms | duration_s | int | choice | bool | version
    default: Any
    doc: str
    qemu: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    relative_to_ram: bool = False  # accepts "25%" meaning a share of ram_size
    dtype: str = "float64"

    @property
    def unit(self) -> str:
        return {
            "size": "bytes",
            "rate": "bytes/s",
            "dirty_rate": "pages/s",
            "duration_ms": "ms",
            "duration_s": "s",
            "int": "",
            "choice": "",
            "bool": "",
            "version": "",
        }[self.kind]

    @property
    def forms(self) -> str:
        """What a user may write, for error messages and docs."""
        if self.kind == "size":
            extra = ", or a share of ram_size such as '25%'" if self.relative_to_ram else ""
            return SIZE_FORMS + extra
        if self.kind == "rate":
            return RATE_FORMS
        if self.kind == "dirty_rate":
            return DIRTY_FORMS
        if self.kind in ("duration_ms", "duration_s"):
            return f"a duration such as '300ms' or '2s' (bare numbers in {self.unit})"
        if self.kind == "int":
            return "a whole number"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        return "a QEMU version such as '7.2', '9.2' or '10.1' (or 'upstream'), at least 7.2"

    def range_text(self) -> str:
        lo = "" if self.minimum is None else _number(self.minimum)
        hi = "" if self.maximum is None else _number(self.maximum)
        if not lo and not hi:
            return ""
        return f"[{lo}, {hi}]" if lo and hi else (f">= {lo}" if lo else f"<= {hi}")


def _number(value: float) -> str:
    """Whole numbers in full (sizes read better as 1048576 than 1.04858e+06)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


GiB = 2**30
MiB = 2**20

PARAMETERS: tuple[Param, ...] = (
    # --- the guest -------------------------------------------------------------------------
    Param("ram_size", "ram_size_bytes", "size", "4GiB",
          "Guest RAM (ram.total); rounded to whole pages.",
          qemu="-m", minimum=2**20, maximum=2**44, dtype="int64"),
    Param("page_size", "page_size_bytes", "size", PAGE_SIZE_DEFAULT,
          "Target page size (TARGET_PAGE_SIZE, 4096 on x86); a power of two.",
          minimum=1024, maximum=65536, dtype="int64"),
    Param("nonzero_size", "nonzero_size_bytes", "size", "100%",
          "Memory holding non-zero data; the rest are zero pages, 9 bytes each on the wire.",
          minimum=0, relative_to_ram=True, dtype="int64"),
    Param("working_set_size", "working_set_size_bytes", "size", None,
          "Pages the guest writes to (part of the non-zero memory); default: all of "
          "nonzero_size.",
          minimum=0, relative_to_ram=True, dtype="int64"),
    Param("dirty_rate", "dirty_rate_pages_per_s", "dirty_rate", 0,
          "Guest page writes per second before throttling (a byte rate is divided by the page "
          "size).", minimum=0, maximum=1e10),
    Param("zero_page_layout", "zero_page_layout", "choice", "mixed",
          "Where the zero pages lie in the first pass's address-order scan: 'mixed' with the "
          "data (free memory of a long-running guest), or at the 'end' (untouched memory at "
          "the top of RAM, as in a freshly booted guest).",
          choices=("mixed", "end"), dtype="category"),
    Param("working_set_layout", "working_set_layout", "choice", "mixed",
          "Where the working set lies in the first pass's address-order scan: 'mixed' with the "
          "other data, or at the 'start' of RAM, sent first (a guest whose hot memory is low, "
          "as the validation guest's).  With 'start' a sequential ring is modelled by "
          "position: where its writer is and where its queued pages lie.",
          choices=("mixed", "start"), dtype="category"),
    Param("write_pattern", "write_pattern", "choice", "uniform",
          "How writes fall in the working set: 'uniform' random pages or a 'sequential' ring.",
          choices=("uniform", "sequential"), dtype="category"),
    Param("ring_position", "ring_position_pages", "int", 0,
          "Page of the working set a sequential ring's writer is at when migrate starts (0: "
          "its first page); used with working_set_layout 'start'.  Below the working set's "
          "pages.", minimum=0, maximum=2**40, dtype="int64"),
    Param("vcpus", "vcpus", "int", 1,
          "vCPUs sharing the dirty rate (only the dirty-limit quota depends on it).",
          qemu="-smp", minimum=1, maximum=4096, dtype="int64"),
    # --- the link and QEMU's migration parameters -------------------------------------------
    Param("max_bandwidth", "max_bandwidth_bytes_per_s", "rate", 134217728,
          "QEMU's rate limit for pre-copy; 0 = unlimited.  Default 128 MiB/s (MAX_THROTTLE).",
          qemu="max-bandwidth", minimum=0, maximum=2**62, dtype="int64"),
    Param("link_bandwidth", "link_bandwidth_bytes_per_s", "rate", "10Gbit/s",
          "What the wire really carries; pre-copy bursts and the final copy run at this rate.",
          minimum=1e3, maximum=1e13),
    Param("first_copy_bandwidth", "first_copy_bandwidth_bytes_per_s", "rate", 0,
          "Rate at which the destination takes pages it receives for the first time (it "
          "allocates their memory then): first-pass pages in the final copy, and pre-copy "
          "slices while the first pass lasts unless first_pass_bandwidth is set; 0 = "
          "link_bandwidth.  Measured: 0.2-0.7 GB/s against 1.7 GB/s for re-sent pages "
          "(docs/validation.md, misses 4 and 9).", minimum=0, maximum=1e13),
    Param("first_pass_bandwidth", "first_pass_bandwidth_bytes_per_s", "rate", 0,
          "Rate of pre-copy slices while the first pass lasts (first-pass pages still "
          "queued); 0 = first_copy_bandwidth.  Set it apart where a host takes a stream of "
          "new pages at another pace than a final copy's burst of them: one host measured "
          "0.42 GB/s for both, another 1.66 GB/s in pre-copy against 0.42 GB/s in the final "
          "copy (`python -m sweep.qemu.calibrate`; docs/validation.md, miss 9).",
          minimum=0, maximum=1e13),
    Param("postcopy_bandwidth", "postcopy_bandwidth_bytes_per_s", "rate", 0,
          "Rate of the postcopy phase: how fast the destination takes the pages still on the "
          "source once the guest runs there; 0 = as the final copy would (link_bandwidth, "
          "first_copy_bandwidth for first-pass pages).  Measured: about 1.1 GB/s against "
          "1.7 GB/s (docs/validation.md).", minimum=0, maximum=1e13),
    Param("downtime_limit", "downtime_limit_ms", "duration_ms", 300,
          "QEMU's downtime-limit: threshold = bandwidth x limit.  Whole milliseconds.",
          qemu="downtime-limit", minimum=0, maximum=2_000_000, dtype="int64"),
    Param("switchover_bandwidth", "switchover_bandwidth_bytes_per_s", "rate", 0,
          "avail-switchover-bandwidth (QEMU >= 8.2): replaces the measured bandwidth in the "
          "threshold; 0 = use the measurement.",
          qemu="avail-switchover-bandwidth", minimum=0, maximum=2**62, dtype="int64"),
    Param("device_state_size", "device_state_size_bytes", "size", "256KiB",
          "Non-iterable device state sent during downtime.", minimum=0, maximum=2**40,
          dtype="int64"),
    Param("setup_time", "setup_time_ms", "duration_ms", 10.0,
          "Fixed cost of migration setup (dirty-log start and the first sync); what "
          "query-migrate reports as setup-time.", qemu="setup-time",
          minimum=0, maximum=600_000),
    Param("sync_time", "sync_time_ms", "duration_ms", 1.0,
          "Fixed cost of one dirty-bitmap sync on the migration thread.  Below 5 s with "
          "auto_converge from QEMU 9.2 (its 5 s timer would sync again at once).",
          minimum=0, maximum=60_000),
    Param("stop_time", "stop_time_ms", "duration_ms", 5.0,
          "Cost of stopping the vCPUs at switchover (counts in the downtime).",
          minimum=0, maximum=60_000),
    Param("qemu_version", "qemu_version", "version", "10.1",
          "Which QEMU's switchover rules to follow (docs/model.md, 'Versions').",
          dtype="category"),
    # --- convergence aids -------------------------------------------------------------------
    Param("auto_converge", "auto_converge", "bool", False,
          "The auto-converge capability: throttle the vCPUs when dirtying outpaces sending.",
          qemu="auto-converge", dtype="bool"),
    Param("throttle_trigger_threshold", "throttle_trigger_threshold_pct", "int", 50,
          "Dirtied bytes above this share of sent bytes in a period count towards throttling.",
          qemu="throttle-trigger-threshold", minimum=1, maximum=100, dtype="int64"),
    Param("cpu_throttle_initial", "cpu_throttle_initial_pct", "int", 20,
          "First throttle step.", qemu="cpu-throttle-initial", minimum=1, maximum=99,
          dtype="int64"),
    Param("cpu_throttle_increment", "cpu_throttle_increment_pct", "int", 10,
          "Throttle increase per trigger.", qemu="cpu-throttle-increment", minimum=1,
          maximum=99, dtype="int64"),
    Param("max_cpu_throttle", "max_cpu_throttle_pct", "int", 99,
          "Throttle ceiling (at least cpu_throttle_initial).", qemu="max-cpu-throttle",
          minimum=1, maximum=99, dtype="int64"),
    Param("cpu_throttle_tailslow", "cpu_throttle_tailslow", "bool", False,
          "Smaller increments near the ideal throttle.", qemu="cpu-throttle-tailslow",
          dtype="bool"),
    Param("dirty_limit", "dirty_limit", "bool", False,
          "The dirty-limit capability (QEMU >= 8.1): cap each vCPU's dirty rate instead of "
          "throttling its CPU.  Excludes auto_converge.", qemu="dirty-limit", dtype="bool"),
    Param("vcpu_dirty_limit", "vcpu_dirty_limit_mib_per_s", "int", 1,
          "Per-vCPU dirty quota in MiB/s once dirty-limit triggers.", qemu="vcpu-dirty-limit",
          minimum=1, maximum=2**31, dtype="int64"),
    # --- the manager (libvirt, guestperf) ---------------------------------------------------
    Param("max_time", "max_time_s", "duration_s", 300.0,
          "Cancel the migration when it has run this long (guestperf's max_time).",
          minimum=0.001, maximum=1e6),
    Param("max_iterations", "max_iterations", "int", 30,
          "Cancel once dirty-sync-count exceeds this (guestperf's max_iters); 0 = no cap.",
          minimum=0, maximum=10**9, dtype="int64"),
    Param("postcopy_after_iterations", "postcopy_after_iterations", "int", 0,
          "Switch to postcopy (postcopy-ram on, migrate-start-postcopy) once dirty-sync-count "
          "reaches this (guestperf's post_copy_iters); 0 = never.  At most max_iterations.",
          qemu="migrate-start-postcopy", minimum=0, maximum=10**9, dtype="int64"),
    Param("postcopy_after_time", "postcopy_after_time_s", "duration_s", 0.0,
          "Switch to postcopy once the migration has run this long (libvirt's virsh migrate "
          "--timeout with --timeout-postcopy); 0 = never.  Below max_time.",
          qemu="migrate-start-postcopy", minimum=0, maximum=1e6),
    Param("pause_after_iterations", "pause_after_iterations", "int", 0,
          "Stop the guest (QMP stop) once dirty-sync-count reaches this (guestperf's "
          "pause_iters; pause_after_time stops it at a set time); pre-copy then drains what "
          "is queued and switches over.  0 = never.  At most max_iterations; not with "
          "postcopy.",
          qemu="stop", minimum=0, maximum=10**9, dtype="int64"),
    Param("pause_delay", "pause_delay_ms", "duration_ms", 0.0,
          "How long after the pause_after_iterations sync ends the manager's stop lands "
          "(its watch for the sync's event and the QMP round trip; the guest writes until "
          "then); 0 = as the sync ends.", qemu="stop", minimum=0, maximum=60_000),
    Param("pause_after_time", "pause_after_time_s", "duration_s", 0.0,
          "Stop the guest (QMP stop) once the migration has run this long (libvirt's virsh "
          "migrate --timeout, whose default action suspends the guest); 0 = never.  Below "
          "max_time; not with postcopy.", qemu="stop", minimum=0, maximum=1e6),
)  # fmt: skip

_BY_NAME = {p.name: p for p in PARAMETERS}
_BY_COLUMN = {p.column: p for p in PARAMETERS}


def by_name(name: str) -> Param:
    """The parameter called `name` (config key or column name)."""
    param = _BY_NAME.get(name) or _BY_COLUMN.get(name)
    if param is None:
        raise ParameterError("parameter", name, "one of " + ", ".join(_BY_NAME))
    return param


# ---------------------------------------------------------------------------------------------
# QEMU versions


@dataclass(frozen=True)
class QemuVersion:
    """The version-dependent rules of section 9 of the spec, derived from (major, minor)."""

    major: int
    minor: int

    @property
    def label(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    @property
    def sync_when_equal(self) -> bool:
        """8.0-8.2 ran the exact pending (a sync) at pending <= threshold, others at <."""
        return self.at_least(8, 0) and not self.at_least(9, 0)

    @property
    def complete_when_equal(self) -> bool:
        """10.1's rewrite switches over at pending <= threshold; before, pending < threshold."""
        return self.at_least(10, 1)

    @property
    def has_switchover_bandwidth(self) -> bool:
        return self.at_least(8, 2)

    @property
    def has_dirty_limit(self) -> bool:
        return self.at_least(8, 1)

    @property
    def periodic_sync(self) -> bool:
        """9.2 added a 5 s timer that forces a sync under auto-converge."""
        return self.at_least(9, 2)

    @property
    def postcopy_first(self) -> bool:
        """10.1's rewrite starts a requested postcopy before it checks for a switchover."""
        return self.at_least(10, 1)

    @property
    def postcopy_syncs_every_step(self) -> bool:
        """8.0-8.2 with postcopy-ram ran the exact pending (a sync) at every decision."""
        return self.sync_when_equal

    @property
    def device_state_in_transferred(self) -> bool:
        """From 8.1 ram.transferred counts every byte on every channel."""
        return self.at_least(8, 1)


UPSTREAM = "10.1"
_VERSION_ALIASES = {"upstream": UPSTREAM, "current": UPSTREAM, "latest": UPSTREAM}


def parse_version(value: object) -> QemuVersion:
    """QemuVersion from '7.2', '9.2.0', 9.2 or 'upstream'."""
    text = str(value).strip().lower()
    text = _VERSION_ALIASES.get(text, text)
    parts = text.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ParameterError("qemu_version", value, by_name("qemu_version").forms) from None
    version = QemuVersion(major, minor)
    if not version.at_least(7, 2):
        raise ParameterError("qemu_version", value, by_name("qemu_version").forms)
    return version


def label_codes(labels: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """A label column as codes and its distinct labels.  A canonical frame's label columns
    are categoricals: their codes are at hand, where to_numpy() or factorize would build an
    object per row first, a fixed cost that a 10,000-scenario engine chunk feels.  The codes
    are read off the Categorical itself: the .cat accessor and hasnans cost 35 us a column."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        categorical = labels.array
        codes = np.asarray(categorical.codes)
        if codes.size == 0 or codes.min() >= 0:  # -1 marks a missing label
            return codes, categorical.categories
    return pd.factorize(labels)


def version_flags(versions: pd.Series, *attrs: str) -> list[np.ndarray]:
    """Each row's ``QemuVersion.<attr>``, one array per attribute, for a qemu_version column
    (its codes read and each distinct label parsed once for all of them)."""
    codes, labels = label_codes(versions)
    known = [parse_version(v) for v in labels]
    return [np.array([getattr(v, attr) for v in known], dtype=bool)[codes] for attr in attrs]


# ---------------------------------------------------------------------------------------------
# Normalisation: user values -> canonical numbers


def _parse_bool(param: Param, value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ParameterError(param.name, value, param.forms)


def parse_value(param: Param, value: object, ram_size: float | None = None) -> Any:
    """One user value -> its canonical number (or label).  Ranges are checked by `normalize`."""
    try:
        if param.kind == "size":
            if param.relative_to_ram and isinstance(value, str) and value.strip().endswith("%"):
                share = float(value.strip()[:-1]) / 100.0
                if ram_size is None:
                    raise UnitError("a share needs ram_size")
                if not 0.0 <= share <= 1.0:
                    raise ParameterError(param.name, value, "a share of ram_size from 0% to 100%")
                return share * ram_size
            return parse_size(value)
        if param.kind == "rate":
            return parse_rate(value)
        if param.kind == "dirty_rate":
            return value  # needs the page size: converted in normalize()
        if param.kind == "duration_ms":
            return parse_duration(value, "ms")
        if param.kind == "duration_s":
            return parse_duration(value, "s")
    except ParameterError:
        raise
    except (UnitError, ValueError):
        raise ParameterError(param.name, value, param.forms) from None
    if param.kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, str)):
            raise ParameterError(param.name, value, param.forms)
        try:
            number = float(value)
        except ValueError:
            raise ParameterError(param.name, value, param.forms) from None
        if not number.is_integer():
            raise ParameterError(param.name, value, param.forms)
        return int(number)
    if param.kind == "choice":
        if str(value) not in param.choices:
            raise ParameterError(param.name, value, param.forms)
        return str(value)
    if param.kind == "bool":
        return _parse_bool(param, value)
    return parse_version(value).label


# Sizes that are rounded to whole pages (so the rounding depends on page_size).
PAGE_ROUNDED = ("ram_size", "nonzero_size", "working_set_size")


def _round_whole(param: Param, values: np.ndarray, page: np.ndarray) -> np.ndarray:
    """Sizes to whole pages, limits to whole ms and whole bytes/s, as QEMU stores them."""
    if param.name in PAGE_ROUNDED:
        return np.round(values / page) * page
    return np.round(values)


NUMERIC_KINDS = ("size", "rate", "dirty_rate", "duration_ms", "duration_s", "int")
# How a parsed value becomes a number per scenario: as it is, times ram_size ("25%"), or
# divided by page_size (a dirty rate in bytes/s).
AS_IS, TIMES_RAM, PER_PAGE = 0, 1, 2


def _parse_unique(param: Param, value: object) -> tuple[Any, int]:
    """One distinct user value -> (parsed value, how it scales per scenario)."""
    if param.relative_to_ram and isinstance(value, str) and value.strip().endswith("%"):
        return parse_value(param, value, 1.0), TIMES_RAM
    if param.kind == "dirty_rate":
        try:
            number, per_byte = dirty_rate_parts(value)
        except UnitError:
            raise ParameterError(param.name, value, param.forms) from None
        return number, PER_PAGE if per_byte else AS_IS
    return parse_value(param, value), AS_IS


def _column(
    param: Param, given: pd.Series | None, n: int, ram: np.ndarray, page: np.ndarray
) -> np.ndarray | pd.Categorical:
    """One parameter for every scenario: canonical numbers (float64), booleans or labels
    (a categorical).

    Each distinct value is parsed once (a million-row grid has a few dozen); missing values
    take the default; a default of None (working_set_size) leaves NaN for the caller.
    """
    if (
        given is not None
        and param.kind in NUMERIC_KINDS
        and pd.api.types.is_numeric_dtype(given.dtype)
        and not pd.api.types.is_bool_dtype(given.dtype)
    ):
        values = given.to_numpy(dtype="float64")  # canonical numbers already
        if param.kind == "int" and not np.all(np.mod(values[np.isfinite(values)], 1) == 0):
            raise ParameterError(param.name, values[np.mod(values, 1) != 0][0], param.forms)
        if param.default is not None and np.isnan(values).any():
            default = _column(param, None, n, ram, page)
            values = np.where(np.isnan(values), default, values)
        return values
    if given is None:
        codes, uniques = np.full(n, -1, dtype=np.int64), []
    else:
        codes, uniques = pd.factorize(given.astype(object), use_na_sentinel=True)
        uniques = list(uniques)
    if (codes < 0).any():  # missing: the default, parsed like any other value
        codes = np.where(codes < 0, len(uniques), codes)
        uniques.append(param.default)
    parsed = [(None, AS_IS) if u is None else _parse_unique(param, u) for u in uniques]
    if param.kind == "bool":
        return np.array([value for value, _ in parsed], dtype=bool)[codes]
    if param.kind not in NUMERIC_KINDS:  # labels: a categorical, built from the codes
        labels, which = np.unique([str(value) for value, _ in parsed], return_inverse=True)
        return pd.Categorical.from_codes(which[codes], categories=labels)
    number = np.array([np.nan if v is None else float(v) for v, _ in parsed])[codes]
    scale = np.array([how for _, how in parsed], dtype=np.int8)[codes]
    return np.select([scale == TIMES_RAM, scale == PER_PAGE], [number * ram, number / page], number)


def normalize(scenarios: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Scenarios as users write them -> the canonical table (one column per parameter).

    Accepts config keys (``ram_size``) or canonical columns (``ram_size_bytes``); missing
    parameters take their defaults; unknown columns other than ``scenario_id`` are an error.
    Every value is checked against its range before any simulation starts.
    """
    if isinstance(scenarios, (Mapping, str, bytes)):
        shown = "a dict" if isinstance(scenarios, Mapping) else scenarios
        raise ParameterError(
            "scenarios", shown, "a DataFrame or a list of scenarios (dicts); one scenario: [{...}]"
        )
    frame = (
        scenarios.reset_index(drop=True)
        if isinstance(scenarios, pd.DataFrame)
        else pd.DataFrame(list(scenarios))
    )
    extra = [c for c in frame.columns if c != "scenario_id" and by_name_or_none(c) is None]
    if extra:
        raise ParameterError("columns", extra, "scenario parameters: " + ", ".join(_BY_NAME))
    n = len(frame)
    source: dict[str, pd.Series | None] = {}
    for param in PARAMETERS:
        given = [c for c in dict.fromkeys((param.name, param.column)) if c in frame.columns]
        if len(given) > 1:
            raise ParameterError(param.name, given, "either the name or the column, not both")
        source[param.name] = frame[given[0]] if given else None

    out: dict[str, Any] = {}
    if "scenario_id" in frame.columns:
        out["scenario_id"] = frame["scenario_id"].to_numpy()
    ones = np.ones(n)
    page = _column(by_name("page_size"), source["page_size"], n, ones, ones)
    bad = ~np.isin(page, [2.0**k for k in range(10, 17)])
    if bad.any():
        raise ParameterError("page_size", page[bad][0], "a power of two from 1024 to 65536")
    ram = _column(by_name("ram_size"), source["ram_size"], n, ones, page)
    for param in PARAMETERS:
        values = _column(param, source[param.name], n, ram, page)
        if param.kind in NUMERIC_KINDS:
            if param.default is None:  # working_set_size: all of the non-zero memory
                values = np.where(np.isnan(values), out["nonzero_size_bytes"], values)
            unrounded = values
            if param.dtype == "int64":
                values = _round_whole(param, values, page)
            _check_range(param, values, frame.index, source[param.name], unrounded)
            out[param.column] = values.astype(param.dtype)
            if param.name == "ram_size":
                ram = out[param.column].astype("float64")
        else:
            out[param.column] = values
    result = pd.DataFrame(out)
    _check_relations(result)
    return result


def by_name_or_none(name: str) -> Param | None:
    return _BY_NAME.get(name) or _BY_COLUMN.get(name)


# output columns' units, from their names' suffixes (longest first)
_SUFFIX_UNITS = (
    ("_bytes_per_s", "bytes/s"),
    ("_pages_per_s", "pages/s"),
    ("_mib_per_s", "MiB/s"),
    ("pages_per_second", "pages/s"),
    ("_bytes", "bytes"),
    ("_pages", "pages"),
    ("_pct", "%"),
    ("_ms", "ms"),
    ("_s", "s"),
    ("mbps", "Mbit/s"),
)


def unit_of(column: str) -> str:
    """The unit of a column: the parameter's unit, else read from the name's suffix."""
    param = by_name_or_none(column)
    if param is not None and param.column == column and param.unit:
        return param.unit
    for suffix, unit in _SUFFIX_UNITS:
        if column.endswith(suffix):
            return unit
    return ""


def not_rounding_to_zero(param: Param) -> str:
    """What the error says of a value that is not 0 but rounds to 0 (0.4 ms of downtime
    limit): refused, since 0 means something else (no limit, no working set)."""
    whole = "pages" if param.name in PAGE_ROUNDED else (param.unit or "numbers")
    return f"0, or a value that does not round to 0 (whole {whole})"


def _check_range(
    param: Param, values: np.ndarray, index: pd.Index, given: pd.Series | None,
    unrounded: np.ndarray,
) -> None:  # fmt: skip
    """Values outside the parameter's range are refused, naming the value as the user wrote
    it ('1e12MB/s') and what it came to in the parameter's unit, before rounding to whole
    pages ('100' bytes of RAM is 100 bytes, not the 0 bytes it rounds to)."""
    low = np.zeros(len(values), dtype=bool)
    high = np.zeros(len(values), dtype=bool)
    if param.minimum is not None:
        low = values < param.minimum
    if param.maximum is not None:
        high = values > param.maximum
    # a value that rounds to 0 (0.4 ms of downtime limit) would mean something else: refused
    vanished = np.zeros(len(values), dtype=bool)
    if param.dtype == "int64":
        vanished = (values == 0) & (unrounded != 0)
    bad = low | high | ~np.isfinite(values) | vanished
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = unrounded[row].item()
        value = _number(value) if np.isfinite(value) else value
        allowed = f"{param.unit or 'a value'} in {param.range_text()}"
        if vanished[row]:
            allowed = not_rounding_to_zero(param)
        written = None if given is None else given.iloc[row]
        if isinstance(written, str) and written.strip() != value:
            amount = f"{value} {param.unit}".rstrip()
            value, allowed = written, f"{allowed} (it is {amount})"
        raise ParameterError(param.name, value, allowed, where=f"scenario {index[row]!r}")


ONE_WAY_OUT = (
    "0 when postcopy is asked for (postcopy_after_iterations or postcopy_after_time): the "
    "model's manager takes one way out"
)
NOT_ON_8 = (
    "0 with QEMU 8.0-8.2 (not modelled: with postcopy-ram on they ran a dirty sync at every "
    "decision, a regression fixed in 9.0)"
)


def _check_relations(out: pd.DataFrame) -> None:
    """Rules that tie parameters together; checked row-wise, reported for the first bad row."""

    def first(mask: np.ndarray) -> int | None:
        rows = np.flatnonzero(mask)
        return int(rows[0]) if rows.size else None

    def than(column: str, allowed: str) -> Callable[[int], str]:
        """`allowed`, with the value it is compared with in the bad row (its key and unit)."""
        key, unit = by_name(column).name, unit_of(column)
        return lambda row: (
            f"{allowed}; {key} is {_number(out[column].to_numpy()[row].item())} {unit}".rstrip()
        )

    ram = out["ram_size_bytes"].to_numpy()
    ring = out["ring_position_pages"].to_numpy()
    ws_pages = out["working_set_size_bytes"].to_numpy() / out["page_size_bytes"].to_numpy()
    postcopy = (out["postcopy_after_iterations"].to_numpy() > 0) | (
        out["postcopy_after_time_s"].to_numpy() > 0
    )
    rules = [
        (out["nonzero_size_bytes"].to_numpy() > ram, "nonzero_size",
         "nonzero_size_bytes", than("ram_size_bytes", "at most ram_size")),
        (out["working_set_size_bytes"].to_numpy() > out["nonzero_size_bytes"].to_numpy(),
         "working_set_size", "working_set_size_bytes",
         than("nonzero_size_bytes", "at most nonzero_size (written pages hold data)")),
        (out["max_cpu_throttle_pct"].to_numpy() < out["cpu_throttle_initial_pct"].to_numpy(),
         "max_cpu_throttle", "max_cpu_throttle_pct",
         than("cpu_throttle_initial_pct", "at least cpu_throttle_initial")),
        (out["auto_converge"].to_numpy() & out["dirty_limit"].to_numpy(), "dirty_limit",
         "dirty_limit", "false when auto_converge is on (QEMU refuses both)"),
        ((ring > 0) & (ring >= ws_pages), "ring_position", "ring_position_pages",
         than("working_set_size_bytes", "below the working set's pages (working_set_size / "
              "page_size; 0 without a working set)")),
    ]  # fmt: skip
    # the manager's ways out (postcopy, stopping the guest) come before it cancels, and it
    # takes one of them
    cap, max_time = out["max_iterations"].to_numpy(), out["max_time_s"].to_numpy()
    for way in ("postcopy", "pause"):
        syncs = out[f"{way}_after_iterations"].to_numpy()
        after_s = out[f"{way}_after_time_s"].to_numpy()
        rules += [
            ((cap > 0) & (syncs > cap), f"{way}_after_iterations", f"{way}_after_iterations",
             than("max_iterations", "at most max_iterations (the manager cancels first)")),
            (after_s >= max_time, f"{way}_after_time", f"{way}_after_time_s",
             than("max_time_s", "below max_time (the manager cancels first)")),
        ]  # fmt: skip
    for key, column in (("pause_after_time", "pause_after_time_s"),
                        ("pause_after_iterations", "pause_after_iterations")):  # fmt: skip
        rules.append(((out[column].to_numpy() > 0) & postcopy, key, column, ONE_WAY_OUT))
    switch, limit, periodic, every_step = version_flags(
        out["qemu_version"], "has_switchover_bandwidth", "has_dirty_limit", "periodic_sync",
        "postcopy_syncs_every_step",
    )  # fmt: skip
    rules += [
        (~switch & (out["switchover_bandwidth_bytes_per_s"].to_numpy() > 0),
         "switchover_bandwidth", "switchover_bandwidth_bytes_per_s",
         "0 before QEMU 8.2 (avail-switchover-bandwidth does not exist there)"),
        (~limit & out["dirty_limit"].to_numpy(), "dirty_limit", "dirty_limit",
         "false before QEMU 8.1 (no dirty-limit capability)"),
        # the model charges each sync to the clock its timer runs on: a sync as long as the
        # period would find the next tick due as it ends, and sync again without end
        (periodic & out["auto_converge"].to_numpy()
         & (out["sync_time_ms"].to_numpy() >= PERIODIC_SYNC_MS),
         "sync_time", "sync_time_ms",
         f"below {PERIODIC_SYNC_MS} ms with auto_converge from QEMU 9.2: its "
         f"{PERIODIC_SYNC_MS // 1000} s dirty-sync timer would sync again before each sync "
         "ended, without end"),
        # not modelled: with postcopy-ram on these versions sync at every decision (50 ms)
        (every_step & (out["postcopy_after_iterations"].to_numpy() > 0),
         "postcopy_after_iterations", "postcopy_after_iterations", NOT_ON_8),
        (every_step & (out["postcopy_after_time_s"].to_numpy() > 0),
         "postcopy_after_time", "postcopy_after_time_s", NOT_ON_8),
    ]  # fmt: skip
    for mask, key, column, allowed in rules:
        row = first(mask)
        if row is not None:
            value = out[column].to_numpy()[row]
            allowed = allowed(row) if callable(allowed) else allowed
            value = value.item() if isinstance(value, np.generic) else value  # labels are str
            raise ParameterError(key, value, allowed, where=f"scenario {row}", unit=unit_of(column))

"""Parse and format the quantities users write: "4GiB", "1Gbit/s", "300ms", "50MB/s".

Every parser returns a plain float in one canonical unit (bytes, bytes/s, pages/s or
milliseconds) and raises :class:`UnitError` naming the value and the accepted forms, so a
typo in a config file fails before any work starts.  Bare numbers are taken to be in the
canonical unit of the caller, which the parameter table documents per parameter.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "UnitError",
    "dirty_rate_parts",
    "format_bytes",
    "format_duration_ms",
    "format_rate",
    "parse_dirty_rate",
    "parse_duration",
    "parse_rate",
    "parse_size",
]


class UnitError(ValueError):
    """A value that is not a number with a unit we understand."""


_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ/%][A-Za-zµ/%\s]*)?$")

_SIZE_UNITS = {
    "": 1.0,
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "ki": 2.0**10,
    "kib": 2.0**10,
    "mi": 2.0**20,
    "mib": 2.0**20,
    "gi": 2.0**30,
    "gib": 2.0**30,
    "ti": 2.0**40,
    "tib": 2.0**40,
}
# Bit prefixes for link rates: decimal as networks use them, binary accepted for symmetry.
_BIT_PREFIX = {
    "": 1.0,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "ki": 2.0**10,
    "mi": 2.0**20,
    "gi": 2.0**30,
    "ti": 2.0**40,
}
_DURATION_UNITS_MS = {
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "s": 1e3,
    "sec": 1e3,
    "min": 60e3,
    "h": 3600e3,
}

SIZE_FORMS = "a number of bytes or a number with a unit: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
RATE_FORMS = (
    "a number of bytes/s or a number with a rate unit: B/s, KiB/s, MiB/s, GiB/s, kB/s, "
    "MB/s, GB/s, bit/s, kbit/s, Mbit/s, Gbit/s (also kbps, Mbps, Gbps)"
)
DIRTY_FORMS = (
    "page writes per second (a bare number, or '... pages/s', 'k pages/s'), or a byte "
    "rate such as '50MB/s' or '1GiB/s' (divided by the page size)"
)


def _split(value: object) -> tuple[float, str]:
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is a boolean, not a quantity")
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number):
            raise UnitError(f"{value!r} is not a finite number")
        return number, ""
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is neither a number nor a string")
    match = _PATTERN.match(value)
    if not match:
        raise UnitError(f"cannot read {value!r} as a number with a unit")
    number = float(match.group(1))
    if not math.isfinite(number):
        raise UnitError(f"{value!r} is not a finite number")
    return number, re.sub(r"\s+", "", match.group(2) or "")


def parse_size(value: object) -> float:
    """Bytes from "4GiB", "512 MiB", "1.5GB" or a bare number of bytes."""
    number, unit = _split(value)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown size unit {unit!r} in {value!r}; expected {SIZE_FORMS}")
    return number * factor


_RATE_UNIT = re.compile(r"^(k|ki|m|mi|g|gi|t|ti)?(bits/s|bit/s|bps|b/s|Bps|B/s)$", re.IGNORECASE)


def _rate_factor(unit: str) -> float | None:
    """Bytes per second for one rate unit, or None.  Capital B is bytes, anything else bits."""
    if unit == "":
        return 1.0
    match = _RATE_UNIT.match(unit)
    if not match:
        return None
    prefix = (match.group(1) or "").lower()
    if match.group(2) in ("B/s", "Bps"):
        return _SIZE_UNITS[prefix + "b"] if prefix else 1.0
    return _BIT_PREFIX[prefix] / 8.0


def parse_rate(value: object) -> float:
    """Bytes per second from "1Gbit/s", "10Gbps", "128MiB/s", "125MB/s" or a bare number."""
    number, unit = _split(value)
    factor = _rate_factor(unit)
    if factor is None:
        raise UnitError(f"unknown rate unit {unit!r} in {value!r}; expected {RATE_FORMS}")
    return number * factor


def dirty_rate_parts(value: object) -> tuple[float, bool]:
    """(pages/s, False) for "20000" or "20k pages/s"; (bytes/s, True) for "50MB/s"."""
    number, unit = _split(value)
    low = unit.lower()
    if low == "":
        return number, False
    for prefix, factor in (("", 1.0), ("k", 1e3), ("m", 1e6)):
        if low in (prefix + "pages/s", prefix + "page/s", prefix + "pps", prefix + "/s"):
            return number * factor, False
    try:
        return parse_rate(value), True
    except UnitError:
        raise UnitError(
            f"unknown dirty-rate unit {unit!r} in {value!r}; expected {DIRTY_FORMS}"
        ) from None


def parse_dirty_rate(value: object, page_size: float) -> float:
    """Page writes per second from "20000", "20k pages/s", "50MB/s" (bytes / page size)."""
    number, per_byte = dirty_rate_parts(value)
    return number / page_size if per_byte else number


def parse_duration(value: object, unit: str = "ms") -> float:
    """A duration in `unit` (ms or s) from "300ms", "0.5s", "2min"; bare numbers are in `unit`."""
    number, given = _split(value)
    if given == "":
        return number
    factor = _DURATION_UNITS_MS.get(given.lower())
    if factor is None:
        raise UnitError(
            f"unknown duration unit {given!r} in {value!r}; expected us, ms, s, min or h"
        )
    return number * factor / _DURATION_UNITS_MS[unit]


def format_bytes(n: float) -> str:
    """Binary-prefixed size for people: 4.00 GiB, 12.3 MiB."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n:.0f} B"


def format_rate(bytes_per_s: float) -> str:
    """A link rate in decimal bits per second, as network people quote it."""
    bits = bytes_per_s * 8
    for unit, factor in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bits) >= factor:
            return f"{bits / factor:.3g} {unit}"
    return f"{bits:.3g} bit/s"


def format_duration_ms(ms: float) -> str:
    """Milliseconds below 10 s, seconds above."""
    return f"{ms:.1f} ms" if abs(ms) < 10_000 else f"{ms / 1000:.2f} s"

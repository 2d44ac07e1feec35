"""Build the validation guest (``guest/``) with the machine's gcc and ld, cached by source hash.

The guest is ours, compiled from source on every machine rather than shipped as a binary, so
the exact kernel under test is always the one in the repository.  The cache key covers the
sources, the flags and the compiler's version line; builds land in a per-key directory under
:func:`default_cache_dir` (never inside the package), written atomically so concurrent
callers do not see half-written files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CFLAGS", "GuestBuildError", "build_guest", "default_cache_dir", "guest_sources"]

GUEST_DIR = Path(__file__).resolve().parent / "guest"
SOURCES = ("boot.S", "guest.c", "linker.ld")
CFLAGS = (
    "-m32", "-O2", "-std=gnu11", "-ffreestanding", "-fno-pic", "-fno-pie",
    "-fno-stack-protector", "-mgeneral-regs-only", "-fno-asynchronous-unwind-tables",
    "-fno-builtin", "-nostdinc", "-Wall", "-Wextra", "-Werror",
)  # fmt: skip
LDFLAGS = ("-m", "elf_i386", "-nostdlib", "-z", "noexecstack")
INSTALL_HINT = "apt-get install -y --no-install-recommends gcc binutils"


class GuestBuildError(RuntimeError):
    """The guest could not be compiled or linked; the message carries the tool's output."""


def default_cache_dir() -> Path:
    """$PRECOPY_SWEEP_CACHE, else $XDG_CACHE_HOME/precopy-sweep, else ~/.cache/precopy-sweep."""
    if os.environ.get("PRECOPY_SWEEP_CACHE"):
        return Path(os.environ["PRECOPY_SWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "precopy-sweep"


def guest_sources() -> dict[str, bytes]:
    """The guest's source files by name (what the cache key hashes)."""
    return {name: (GUEST_DIR / name).read_bytes() for name in SOURCES}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise GuestBuildError(f"{name} not found; the guest is built from source: {INSTALL_HINT}")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")


def _cache_key(gcc: str, ld: str) -> str:
    digest = hashlib.sha256()
    for name, data in sorted(guest_sources().items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    for tool in (gcc, ld):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        digest.update(out.stdout.splitlines()[0].encode() if out.stdout else b"?")
    return digest.hexdigest()[:16]


def build_guest(cache_dir: str | Path | None = None) -> Path:
    """Return the path of ``guest.elf``, compiling it first if this source hash is new."""
    gcc, ld = _tool("gcc"), _tool("ld")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"guest-{_cache_key(gcc, ld)}" / "guest.elf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        _run([gcc, *CFLAGS, "-c", str(GUEST_DIR / "guest.c"), "-o", str(work / "guest.o")])
        _run([gcc, "-m32", "-c", str(GUEST_DIR / "boot.S"), "-o", str(work / "boot.o")])
        _run([ld, *LDFLAGS, "-T", str(GUEST_DIR / "linker.ld"), "-o", str(work / "guest.elf"),
              str(work / "boot.o"), str(work / "guest.o")])  # fmt: skip
        os.replace(work / "guest.elf", target)
    return target

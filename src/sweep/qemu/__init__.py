"""Real QEMU migrations for validating the model: our guest, a QMP driver, calibration.

Needs ``qemu-system-x86_64`` (``apt-get install -y --no-install-recommends qemu-system-x86``)
and gcc/binutils to build the guest; nothing else in :mod:`sweep` imports this package.
"""

from .driver import (
    INSTALL_HINT,
    MigrationError,
    QemuNotFoundError,
    RunResult,
    RunSpec,
    find_qemu,
    postcopy_supported,
    run_migration,
)

__all__ = [
    "INSTALL_HINT",
    "MigrationError",
    "QemuNotFoundError",
    "RunResult",
    "RunSpec",
    "find_qemu",
    "postcopy_supported",
    "run_migration",
]

"""Shared by the test modules: the real-QEMU skip and a runner for the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import settings

# The property tests draw the same examples on every run (seeded from each test), so that a
# CI run cannot turn red on a draw no run has met before; HYPOTHESIS_PROFILE=explore draws
# fresh ones, to search (a CI run found the aggregate's signed-zero case that way).
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

QEMU_MISSING = (
    "qemu-system-x86_64 not installed: apt-get install -y --no-install-recommends qemu-system-x86"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``qemu`` skip, with the install command, only when QEMU is absent."""
    if shutil.which("qemu-system-x86_64") is not None:
        return
    for item in items:
        if item.get_closest_marker("qemu"):
            item.add_marker(pytest.mark.skip(reason=QEMU_MISSING))


@pytest.fixture
def sweep_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``python -m sweep ARGS`` in a subprocess, its output captured as text."""

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sweep", *args], capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    return run

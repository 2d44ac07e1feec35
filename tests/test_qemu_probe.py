"""``explain --qmp`` against a real VM: our guest, writing uniformly at a known rate over a
known working set, read over a second QMP socket (sweep.qemu.probe).

The fit must find the guest's own write rate and working set (within 15 %: on this machine
eight probes of the same guest came within -4 to +9 %), and the VM's migration settings must
come back as set.  Skipped, with the install command, only when qemu-system-x86_64 is absent.
"""

from __future__ import annotations

import pytest

from sweep.qemu.driver import MiB, RunSpec, guest_vm
from sweep.qemu.probe import probe

pytestmark = pytest.mark.qemu  # skipped when QEMU is absent (conftest.py)

# 256 MiB written at random, 20,000 pages/s: the 1, 2 and 4 s windows change about 26 %,
# 46 % and 70 % of it, so they bend enough to pin both the rate and the working set.
GUEST = RunSpec(
    name="probe", mem_mib=512, working_set_mib=256.0, fill_mib=500.0, rate=20000,
    pattern="rand",
)  # fmt: skip
WORKING_SET_PAGES = 256 * MiB / 4096


@pytest.fixture(scope="module")
def vm():
    with guest_vm(GUEST) as (qemu, serial, monitor):
        qemu.qmp.execute(
            "migrate-set-parameters", {"downtime-limit": 123, "max-bandwidth": 64 * MiB}
        )
        caps = [{"capability": "auto-converge", "state": True}]
        qemu.qmp.execute("migrate-set-capabilities", {"capabilities": caps})
        yield qemu, serial, monitor


def _achieved_rate(serial) -> float:
    """The guest's own count of page writes per second over its last 5 s of reports."""
    serial.read()
    reports = serial.frame().dropna(subset=["t_us", "writes"])
    last = reports.iloc[-1]
    first = reports[reports["t_us"] <= last["t_us"] - 5e6].iloc[-1]
    return float((last["writes"] - first["writes"]) / ((last["t_us"] - first["t_us"]) / 1e6))


def test_the_probe_finds_the_guests_rate_and_working_set(vm):
    _, serial, monitor = vm
    found = probe(str(monitor))
    rate = _achieved_rate(serial)
    assert rate == pytest.approx(20000, rel=0.05)  # the guest kept its rate meanwhile
    assert found.fit.rate == pytest.approx(rate, rel=0.15), found.fit
    assert found.fit.working_set == pytest.approx(WORKING_SET_PAGES, rel=0.15), found.fit
    assert not found.fit.saturated
    assert found.scenario["ram_size"] == str(512 * MiB)
    assert found.scenario["downtime_limit"] == "123ms"
    assert found.scenario["max_bandwidth"] == str(64 * MiB)
    assert found.scenario["auto_converge"] == "true"
    assert found.scenario["qemu_version"].count(".") == 1


def test_explain_runs_the_model_on_what_the_vm_said(vm, sweep_cli):
    _, _, monitor = vm
    done = sweep_cli(
        "explain", "--qmp", str(monitor), "--link-bandwidth", "1Gbit/s", "--no-suggestions"
    )
    assert done.returncode == 0, done.stderr
    assert "Scenario: 512.00 MiB guest" in done.stdout
    assert "downtime-limit 123.0 ms" in done.stdout and "auto-converge" in done.stdout
    assert "dirty_rate = " in done.stdout and "(fitted to calc-dirty-rate: " in done.stdout
    assert "not the VM's to know" not in done.stdout  # the link was given
    assert "Converged" in done.stdout or "Did not converge" in done.stdout

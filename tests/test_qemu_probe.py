"""``explain --qmp`` against a real VM: our guest, writing uniformly at a known rate over a
known working set, read over a second QMP socket (sweep.qemu.probe).

* The fit must find the guest's own write rate and working set (within 15 %: on this machine
  eight probes of the same guest came within -4 to +9 %), and the VM's migration settings
  must come back as set.
* What an operator would do next: the model on the probed inputs must predict a real
  migration of that guest (validation run ``ws256-rand-20k``, with the calibration block)
  about as well as it does on the guest's true settings: the verdict, the syncs within 1,
  the total time within 10 % (the true settings miss by 0.4 %; the probed ones leave the
  working set's place at its default, 'mixed', which alone misses by 3.5 %: miss 6 in
  docs/validation.md).

Skipped, with the install command, only when qemu-system-x86_64 is absent (conftest.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from sweep.api import simulate
from sweep.qemu.driver import MiB, guest_vm, run_migration
from sweep.qemu.probe import probe
from sweep.validation import (
    calibration,
    compare_runs,
    load_config,
    run_specs,
    scenario_for_run,
)

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config(ROOT / "config" / "validation.yaml")
# 256 MiB written at random, 20,000 pages/s: the 1, 2 and 4 s windows change about 26 %,
# 46 % and 70 % of it, so they bend enough to pin both the rate and the working set.
(GUEST,) = run_specs(CONFIG, ["ws256-rand-20k"])
WORKING_SET_PAGES = GUEST.working_set_mib * MiB / 4096


@pytest.fixture(scope="module")
def vm():
    with guest_vm(GUEST) as (qemu, serial, monitor):
        settings = {"downtime-limit": 123, "max-bandwidth": 64 * MiB}
        qemu.qmp.execute("migrate-set-parameters", settings)
        caps = [{"capability": "auto-converge", "state": True}]
        qemu.qmp.execute("migrate-set-capabilities", {"capabilities": caps})
        yield qemu, serial, monitor


@pytest.fixture(scope="module")
def probed(vm):
    """The probe, and the guest's own write rate over the probe's windows."""
    _, serial, monitor = vm
    found = probe(str(monitor))
    serial.read()
    reports = serial.frame().dropna(subset=["t_us", "writes"])
    last = reports.iloc[-1]
    first = reports[reports["t_us"] <= last["t_us"] - 5e6].iloc[-1]
    rate = (last["writes"] - first["writes"]) / ((last["t_us"] - first["t_us"]) / 1e6)
    return found, float(rate)


def test_the_probe_finds_the_guests_rate_and_working_set(probed):
    found, rate = probed
    assert rate == pytest.approx(GUEST.rate, rel=0.05)  # the guest kept its rate meanwhile
    assert found.fit.rate == pytest.approx(rate, rel=0.15), found.fit
    assert found.fit.working_set == pytest.approx(WORKING_SET_PAGES, rel=0.15), found.fit
    assert not found.fit.saturated


def test_the_probe_reads_the_vms_migration_settings(probed):
    found, _ = probed
    assert found.scenario["ram_size"] == str(GUEST.mem_mib * MiB)
    assert found.scenario["downtime_limit"] == "123ms"
    assert found.scenario["max_bandwidth"] == str(64 * MiB)
    assert found.scenario["auto_converge"] == "true"
    assert found.scenario["qemu_version"].count(".") == 1


def test_the_probed_inputs_predict_a_real_migration_of_the_guest(probed):
    found, _ = probed
    result = run_migration(replace(GUEST, name="probed-" + GUEST.name))
    runs = result.run_row()
    block = calibration(CONFIG, None)
    true = scenario_for_run(runs.iloc[0], block)
    guessed = {
        **true,
        **{k: found.scenario[k] for k in ("dirty_rate", "working_set_size", "write_pattern")},
        # where the working set lies is not the VM's to tell: an operator keeps the default
        "working_set_layout": "mixed",
    }
    errors = {}
    for name, scenario in (("true", true), ("probed", guessed)):
        model = simulate(pd.DataFrame([{"scenario_id": 0, **scenario}]))
        errors[name] = compare_runs(runs, model).iloc[0]
    probed_row, true_row = errors["probed"], errors["true"]
    shown = {
        name: f"{row['model_total_time_ms']:.0f} ms, {row['model_dirty_sync_count']} syncs"
        for name, row in errors.items()
    }
    real = f"{probed_row['real_total_time_ms']:.0f} ms, {probed_row['real_dirty_sync_count']}"
    context = (
        f"real {real} syncs; model on the true inputs {shown['true']}, probed {shown['probed']}"
    )
    print(context)
    assert probed_row["verdict_match"], context
    assert abs(probed_row["dirty_sync_count_error"]) <= 1, context
    assert abs(probed_row["total_time_error"]) <= 0.10, context
    assert true_row["verdict_match"], context  # the run itself was sound


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

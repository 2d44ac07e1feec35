"""sweep.grid: config -> grid (axes, ranges, units, zip groups, dedup, chunks, errors)."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep import api, grid
from sweep.params import PARAMETERS, ParameterError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
GiB = 2**30


def axis_values(plan: grid.Plan, name: str) -> tuple:
    factor = next(f for f in plan.factors if name in f.values)
    return factor.values[name]


# --- axes: lists and ranges, units, rounding, duplicates --------------------------------------


def test_list_values_are_parsed_with_their_units():
    plan = grid.plan(
        {"axes": {"ram_size": ["4GiB", "512 MiB"], "link_bandwidth": ["1Gbit/s", "25Gbps"]}}
    )
    assert axis_values(plan, "ram_size") == (4 * GiB, 512 * 2**20)
    assert axis_values(plan, "link_bandwidth") == (125e6, 3.125e9)


def test_linear_range_is_inclusive_and_in_canonical_units():
    plan = grid.plan(
        {"axes": {"link_bandwidth": {"start": "1Gbit/s", "stop": "3Gbit/s", "num": 3}}}
    )
    assert axis_values(plan, "link_bandwidth") == pytest.approx((125e6, 250e6, 375e6))


def test_log_range_is_geometric_and_rounded_to_whole_ms():
    spec = {"start": "30ms", "stop": "2s", "num": 10, "scale": "log"}
    values = np.array(axis_values(grid.plan({"axes": {"downtime_limit": spec}}), "downtime_limit"))
    assert values[0] == 30 and values[-1] == 2000 and len(values) == 10
    assert np.all(values == np.round(values))
    exact = np.geomspace(30, 2000, 10)
    assert np.all(np.abs(values - exact) <= 0.5)


def test_rounding_then_duplicates_dropped_keeping_first():
    # 30, 30.25, 30.5, 30.75, 31 ms round to whole ms (as normalize does): 30 and 31 remain
    spec = {"start": "30ms", "stop": "31ms", "num": 5}
    with pytest.warns(grid.RepeatedValues, match=r"axes\.downtime_limit: 2 of the 5 values") as w:
        plan = grid.plan({"axes": {"downtime_limit": spec}})
    assert axis_values(plan, "downtime_limit") == (30, 31)
    assert "again" not in str(w[0].message)  # a range's values are not listed
    with pytest.warns(grid.RepeatedValues) as w:
        plan = grid.plan({"axes": {"ram_size": ["4GiB", "4096MiB", "1GiB", 4 * GiB]}})
    assert axis_values(plan, "ram_size") == (4 * GiB, GiB)
    assert plan.factors[0].written["ram_size"] == ("4GiB", "1GiB")
    # a list's repeats are named with the value they repeat, as written
    assert "axes.ram_size: 2 of the 4 values" in str(w[0].message)
    assert "4096MiB is 4GiB again; 4294967296 is 4GiB again" in str(w[0].message)


def test_an_axis_without_repeats_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = grid.plan({"axes": {"downtime_limit": {"start": "30ms", "stop": "2s", "num": 20,
                                                      "scale": "log"}}})  # fmt: skip
    assert plan.size == 20


@pytest.mark.parametrize(
    "section, value, key",
    [
        ({"fixed": {"downtime_limit": "0.4ms"}}, "'0.4ms'", "fixed.downtime_limit"),
        ({"axes": {"downtime_limit": ["300ms", "0.4ms"]}}, "'0.4ms'", "axes.downtime_limit[1]"),
        ({"axes": {"downtime_limit": {"start": "0.1ms", "stop": "1s", "num": 3, "scale": "log"}}},
         "0.1", "axes.downtime_limit[0]"),
        ({"fixed": {"page_size": "64KiB"}, "axes": {"nonzero_size": [1000, "1GiB"]}}, "1000",
         "axes.nonzero_size[0]"),
    ],
)  # fmt: skip
def test_a_value_that_rounds_to_zero_is_refused_not_turned_into_zero(section, value, key):
    """0 means something else (a threshold of 0, no limit, no data): 0.4 ms must not become
    it by rounding, in the grid or in a scenario given directly."""
    with pytest.raises(ParameterError) as caught:
        grid.build(section)
    assert f"({key}): {value} is not allowed; expected 0, or a value that does not round" in str(
        caught.value
    )


def test_a_scenario_whose_value_rounds_to_zero_is_refused():
    with pytest.raises(ParameterError, match=r"'0\.4' is not allowed; expected 0, or a value"):
        api.prepare([{"downtime_limit": "0.4"}])
    assert api.prepare([{"downtime_limit": "0.6"}])["downtime_limit_ms"][0] == 1
    assert api.prepare([{"downtime_limit": 0}])["downtime_limit_ms"][0] == 0
    # a value out of range keeps its own message, whatever the parameter's type
    for key, value, allowed in (
        ("link_bandwidth", "10", "expected bytes/s in [1000, "),
        ("setup_time", "-1", "expected ms in [0, 600000]"),
        ("downtime_limit", "-1", "expected ms in [0, 2000000]"),
    ):
        with pytest.raises(ParameterError, match=re.escape(allowed)):
            api.prepare([{key: value}])


def test_sizes_round_to_whole_pages_like_normalize():
    config = {"fixed": {"page_size": "64KiB"}, "axes": {"ram_size": [5_000_000, "1GiB"]}}
    built = grid.build(config)
    assert axis_values(built.plan, "ram_size") == (76 * 65536, GiB)
    assert built.scenarios["ram_size_bytes"].tolist() == [76 * 65536, GiB]
    assert api.prepare([{"page_size": "64KiB", "ram_size": 5_000_000}])["ram_size_bytes"][0] == (
        76 * 65536
    )


def test_ranges_of_shares_and_byte_dirty_rates():
    config = {
        "fixed": {"ram_size": "8GiB"},
        "axes": {
            "working_set_size": {"start": "25%", "stop": "100%", "num": 4},
            "dirty_rate": {"start": 0, "stop": "4096KiB/s", "num": 3},
        },
    }
    built = grid.build(config)
    ws = sorted(set(built.scenarios["working_set_size_bytes"]))
    assert ws == [2 * GiB, 4 * GiB, 6 * GiB, 8 * GiB]
    # 4096 KiB/s over 4 KiB pages = 1024 pages/s
    assert axis_values(built.plan, "dirty_rate") == (0.0, 512.0, 1024.0)


def test_byte_dirty_rates_follow_a_swept_page_size():
    config = {"axes": {"page_size": [4096, 65536], "dirty_rate": ["64MiB/s"]}}
    built = grid.build(config)
    assert built.scenarios["dirty_rate_pages_per_s"].tolist() == [16384.0, 1024.0]


def test_labels_and_booleans_are_canonical():
    with pytest.warns(grid.RepeatedValues, match="10.1 is upstream again"):
        plan = grid.plan(
            {"axes": {"qemu_version": ["9.2", "upstream", "10.1"], "auto_converge": ["on", False]}}
        )
    assert axis_values(plan, "qemu_version") == ("9.2", "10.1")
    assert axis_values(plan, "auto_converge") == (True, False)


# --- the product: order, zip groups, fixed values ---------------------------------------------


CONFIG = {
    "chunk_size": 3,
    "fixed": {"max_bandwidth": 0},
    "axes": {"ram_size": ["1GiB", "2GiB"], "downtime_limit": ["100ms", "1s"]},
    "zip": {"aid": {"auto_converge": [False, True, False], "dirty_limit": [False, False, True]}},
}


def test_product_order_first_axis_outermost_then_zip_groups():
    rows = grid.build(CONFIG).scenarios
    assert len(rows) == 2 * 2 * 3
    assert rows["ram_size_bytes"].tolist() == [GiB] * 6 + [2 * GiB] * 6
    assert rows["downtime_limit_ms"].tolist()[:6] == [100] * 3 + [1000] * 3
    assert rows["auto_converge"].tolist()[:3] == [False, True, False]
    assert rows["dirty_limit"].tolist()[:3] == [False, False, True]
    assert (rows["max_bandwidth_bytes_per_s"] == 0).all()
    # everything else takes its default
    assert (rows["page_size_bytes"] == 4096).all() and (rows["max_iterations"] == 30).all()


def test_zip_group_rows_are_deduplicated():
    config = {"zip": {"g": {"vcpus": [1, 2, 1], "max_time": ["10s", "10s", "10000ms"]}}}
    with pytest.warns(grid.RepeatedValues, match=r"zip\.g: 2 of the 3 rows .*row 2 is row 0 again"):
        plan = grid.plan(config)
    assert plan.size == 2 and plan.factors[0].values["vcpus"] == (1.0, 2.0)


def test_fixed_values_only_is_one_scenario():
    built = grid.build({"fixed": {"ram_size": "2GiB"}})
    assert len(built.scenarios) == 1 and built.plan.n_chunks == 1
    assert built.scenarios["ram_size_bytes"].item() == 2 * GiB


def test_build_is_deterministic_and_ids_come_from_api_prepare():
    a, b = grid.build(CONFIG), grid.build(CONFIG)
    assert a.scenarios.equals(b.scenarios)
    assert a.digests == b.digests and a.digest == b.digest
    prepared = api.prepare(a.plan.rows())
    assert prepared["scenario_id"].tolist() == a.scenarios["scenario_id"].tolist()


def test_ids_do_not_depend_on_axis_order_or_chunking():
    swapped = {**CONFIG, "chunk_size": 100, "axes": dict(reversed(CONFIG["axes"].items()))}
    a, b = grid.build(CONFIG), grid.build(swapped)
    assert set(a.scenarios["scenario_id"]) == set(b.scenarios["scenario_id"])
    assert a.scenarios["scenario_id"].tolist() != b.scenarios["scenario_id"].tolist()
    assert a.digest != b.digest


@pytest.mark.parametrize("block_rows", [1, 4, 7, 1000])
def test_blocks_of_any_size_give_the_same_grid(monkeypatch, block_rows):
    """The grid is checked and written whole chunks at a time; the split changes nothing."""
    config = {**CONFIG, "chunk_size": 2}
    whole = api.prepare(grid.plan(config).rows())
    monkeypatch.setattr(grid, "BLOCK_ROWS", block_rows)
    built = grid.build(config)
    blocks = list(built.blocks(block_rows))
    sizes = np.diff(built.plan.bounds)
    for block in blocks:  # whole chunks, at most block_rows rows unless a single chunk
        chunks = block["chunk"].unique()
        assert len(block) == sizes[chunks].sum()
        assert len(block) <= block_rows or len(chunks) == 1
    frame = pd.concat(blocks, ignore_index=True)
    assert frame.drop(columns="chunk").equals(whole)
    assert frame["chunk"].tolist() == np.repeat(np.arange(len(sizes)), sizes).tolist()
    assert built.digest == grid.grid_digest([whole["scenario_id"]], built.plan.bounds)
    split = np.split(whole["scenario_id"].to_numpy(), [3, 5])
    assert built.digest == grid.grid_digest(split, built.plan.bounds)


@pytest.mark.parametrize("block_rows", [1, 100])
def test_a_row_repeating_one_in_another_chunk_is_refused(monkeypatch, block_rows):
    """50% of 4GiB is 2GiB: rows 0 and 1 are one scenario, in two chunks of one row."""
    config = {"chunk_size": 1, "axes": {"ram_size": ["4GiB", "8GiB"],
                                        "working_set_size": ["50%", "2GiB"]}}  # fmt: skip
    monkeypatch.setattr(grid, "BLOCK_ROWS", block_rows)
    with pytest.raises(ParameterError) as err:
        grid.build(config)
    assert err.value.key == "axes"
    assert ("grid row 1 (ram_size=4GiB, working_set_size=2GiB) repeats grid row 0 "
            "(ram_size=4GiB, working_set_size=50%)") in str(err.value)  # fmt: skip


@pytest.mark.parametrize(("rams", "row", "earlier"), [(["4GiB", "8GiB"], 2, 0),
                                                     (["8GiB", "4GiB"], 1, 0)])  # fmt: skip
def test_of_two_repeats_the_first_row_that_repeats_is_named(monkeypatch, rams, row, earlier):
    """2GiB is 50% of 4GiB and 25% of 8GiB: each RAM size has a pair of rows that are one
    scenario; the error names the first row, in grid order, that repeats an earlier one."""
    monkeypatch.setattr(grid, "BLOCK_ROWS", 1)
    config = {"chunk_size": 1,
              "axes": {"ram_size": rams, "working_set_size": ["2GiB", "25%", "50%"]}}  # fmt: skip
    with pytest.raises(ParameterError) as err:
        grid.build(config)
    assert f"'grid row {row} (" in str(err.value), str(err.value)
    assert f"repeats grid row {earlier} (" in str(err.value), str(err.value)


def test_config_hash_is_stable_and_ignores_other_sections():
    assert grid.config_hash(CONFIG) == grid.config_hash(dict(reversed(CONFIG.items())))
    assert grid.config_hash(CONFIG) == grid.config_hash({**CONFIG, "report": {"x": 1}})
    assert grid.config_hash(CONFIG) != grid.config_hash({**CONFIG, "chunk_size": 4})


# --- chunks ------------------------------------------------------------------------------------


def test_chunks_align_with_outer_axis_values():
    built = grid.build(CONFIG)  # blocks of 6 per ram_size, 3 per downtime: chunks of 3
    assert built.plan.bounds.tolist() == [0, 3, 6, 9, 12]
    assert built.plan.aligned_factors == ("ram_size", "downtime_limit")
    assert built.scenarios["chunk"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3


def test_chunk_rows_equal_the_slices_of_the_whole_grid():
    config = {**CONFIG, "chunk_size": 5}
    built = grid.build(config)
    for chunk in range(built.plan.n_chunks):
        start, stop = built.plan.chunk_range(chunk)
        rows = grid.chunk_scenarios(config, chunk)
        ids = api.prepare(rows)["scenario_id"].to_numpy()
        assert ids.tolist() == built.scenarios["scenario_id"].iloc[start:stop].tolist()
        assert grid.digest(ids) == built.digests[chunk]


def test_changing_an_outer_value_changes_only_its_chunks():
    changed = {**CONFIG, "axes": {**CONFIG["axes"], "ram_size": ["1GiB", "3GiB"]}}
    before, after = grid.build(CONFIG).digests, grid.build(changed).digests
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, True, False, False]
    inner = {**CONFIG, "axes": {**CONFIG["axes"], "downtime_limit": ["100ms", "2s"]}}
    after = grid.build(inner).digests
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, False, True, False]


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(1, 12), min_size=0, max_size=5),
    chunk_size=st.integers(1, 500),
)
def test_chunk_bounds_properties(shape, chunk_size):
    bounds, depth = grid.chunk_bounds(shape, chunk_size)
    total = math.prod(shape)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == total and np.all(sizes > 0)
    assert np.all(sizes <= chunk_size) or len(sizes) == 1
    if total > chunk_size:
        assert np.all(sizes >= chunk_size // 2)  # never less than half a chunk
        block = math.prod(shape[depth:])
        assert block >= chunk_size
        assert depth == len(shape) or math.prod(shape[depth + 1 :]) < chunk_size  # deepest
        # every block boundary is a chunk boundary: chunks never straddle outer values
        assert set(range(0, total + 1, block)) <= set(bounds.tolist())
    else:
        assert bounds.tolist() == [0, total]


# --- errors: each names the key, the value and what is allowed --------------------------------


def raises(config: dict, key: str, *fragments: str) -> ParameterError:
    with pytest.raises(ParameterError) as caught:
        grid.build(config)
    error = caught.value
    assert error.key == key, str(error)
    for fragment in fragments:
        assert fragment in str(error), str(error)
    return error


def test_unknown_top_level_key():
    raises({"axis": {}}, "config", "'axis'", "chunk_size, fixed, axes, zip")


def test_unknown_parameters_everywhere():
    for config, key, where in (
        ({"axes": {"ram": ["1GiB"]}}, "ram", "(axes)"),
        ({"fixed": {"ram_size_bytes": 1}}, "ram_size_bytes", "(fixed)"),
        ({"zip": {"g": {"bandwidth": [1]}}}, "bandwidth", "(zip.g)"),
    ):
        error = raises(config, key, "one of ram_size, page_size", where)
        assert "link_bandwidth" in error.allowed


def test_parameter_in_two_places():
    error = raises(
        {"fixed": {"ram_size": "1GiB"}, "zip": {"g": {"ram_size": ["2GiB"]}}},
        "ram_size",
        "one place",
    )
    assert error.value == ["fixed", "zip.g"]


def test_ragged_zip_group():
    error = raises({"zip": {"aid": {"vcpus": [1, 2], "max_time": ["1s"]}}}, "aid", "equal length")
    assert error.value == {"vcpus": 2, "max_time": 1}


def test_range_errors():
    raises({"axes": {"vcpus": {"start": 1, "stop": 4, "num": 0}}}, "vcpus", "num", "0")
    raises({"axes": {"vcpus": {"start": 1, "stop": 4, "num": 2.5}}}, "vcpus", "whole number")
    raises(
        {"axes": {"dirty_rate": {"start": 0, "stop": "1GB/s", "num": 3, "scale": "log"}}},
        "dirty_rate",
        "above 0 for scale: log",
    )
    raises(
        {"axes": {"vcpus": {"start": 1, "stop": 4, "num": 2, "scale": "cubic"}}},
        "vcpus",
        "linear or log",
    )
    raises({"axes": {"vcpus": {"start": 1, "num": 2}}}, "axes.vcpus", "start, stop and num")
    raises({"axes": {"vcpus": {"start": 1, "stop": 2, "num": 2, "step": 1}}}, "axes.vcpus", "step")
    raises({"axes": {"auto_converge": {"start": 0, "stop": 1, "num": 2}}}, "auto_converge", "list")


def test_empty_and_scalar_axes():
    raises({"axes": {"ram_size": []}}, "ram_size", "non-empty")
    raises({"axes": {"ram_size": "4GiB"}}, "ram_size", "fixed")
    raises({"zip": {"g": {}}}, "g", "equal-length lists")
    raises({"zip": {"g": {"vcpus": []}}}, "vcpus", "non-empty")


def test_bad_values_name_where_they_are():
    error = raises({"axes": {"ram_size": ["4GiB", "4 parsecs"]}}, "ram_size", "axes.ram_size[1]")
    assert error.value == "4 parsecs"
    raises({"axes": {"ram_size": ["32TiB"]}}, "ram_size", "axes.ram_size[0]", "within")
    raises({"fixed": {"downtime_limit": "-5ms"}}, "downtime_limit", "fixed.downtime_limit")
    raises({"zip": {"g": {"write_pattern": ["random"]}}}, "write_pattern", "'uniform'")
    raises({"chunk_size": 0}, "chunk_size", ">= 1")
    raises({"chunk_size": True}, "chunk_size")


def test_relations_across_axes_name_the_grid_row():
    config = {"axes": {"ram_size": ["8GiB", "1GiB"], "working_set_size": ["2GiB"]}}
    error = raises(config, "working_set_size", "grid row 1", "ram_size=1GiB")
    assert "at most nonzero_size" in error.allowed
    # and the value it is held to, in that row (nonzero_size defaults to ram_size: 1 GiB)
    assert error.allowed.endswith("nonzero_size is 1073741824 bytes")
    error = raises({"fixed": {"max_cpu_throttle": 10, "cpu_throttle_initial": 20}},
                   "max_cpu_throttle", "at least cpu_throttle_initial")  # fmt: skip
    assert error.allowed.endswith("cpu_throttle_initial is 20 %")
    # both sides in the canonical unit, named by their config keys
    error = raises({"fixed": {"postcopy_after_time": "10min", "max_time": "5min"}},
                   "postcopy_after_time", "below max_time")  # fmt: skip
    assert "the fixed values): 600 s is not allowed" in str(error)
    assert error.allowed.endswith("max_time is 300 s")


def test_a_ring_position_past_the_working_set_is_refused():
    """ring_position is a page of the working set: at most its last page, refused before any
    work at the row that passes it, with the working set's size in the message."""
    config = {"fixed": {"ram_size": "1GiB", "working_set_size": "64MiB", "ring_position": 16384},
              "axes": {"write_pattern": ["uniform", "sequential"]}}  # fmt: skip
    error = raises(config, "ring_position", "grid row 0",
                   "below the working set's pages")  # fmt: skip
    assert error.value == 16384
    assert error.allowed.endswith("working_set_size is 67108864 bytes")
    config["fixed"]["ring_position"] = 16383
    assert grid.build(config).plan.size == 2
    # and a ring at the start of RAM is a scenario like any other now (ring.py)
    both = {"axes": {"write_pattern": ["uniform", "sequential"]},
            "fixed": {"working_set_layout": "start"}}  # fmt: skip
    assert grid.build(both).plan.size == 2


def test_a_sync_as_long_as_the_periodic_timer_is_refused_where_the_timer_runs():
    """9.2's 5 s timer under auto-converge: a sync of 5 s or more would find the next tick
    due as it ends and sync again without end (the model hung); refused before any work,
    allowed where the timer does not run."""
    config = {"fixed": {"auto_converge": True, "qemu_version": "9.2"},
              "axes": {"sync_time": ["1ms", "5s"]}}  # fmt: skip
    error = raises(config, "sync_time", "grid row 1", "below 5000 ms", "without end")
    assert error.value == 5000.0
    for fixed in ({"auto_converge": False}, {"auto_converge": True, "qemu_version": "9.1"}):
        assert grid.build({"fixed": fixed, "axes": {"sync_time": ["5s", "20s"]}}).plan.size == 2
    assert grid.build({**config, "axes": {"sync_time": ["4999ms"]}}).plan.size == 1


def test_no_scenarios_is_refused_by_name():
    """The notebook API given no scenarios says so (it raised a numpy TypeError from the
    relation rules, which met version flags of no rows)."""
    for empty in ([], pd.DataFrame({"ram_size": []})):
        with pytest.raises(ParameterError, match=r"scenarios.*at least one scenario"):
            api.simulate(empty)


def test_the_api_names_a_scenario_that_is_not_in_a_list():
    """A lone dict used to become a one-column table of its keys: "columns: [0] is not
    allowed"."""
    for scenarios, shown in (({"ram_size": "4GiB"}, "'a dict'"), ("4GiB", "'4GiB'")):
        with pytest.raises(ParameterError, match=rf"scenarios: {shown} .*one scenario: \[\{{"):
            api.simulate(scenarios)


def test_a_share_of_ram_above_100_percent_says_so():
    # the share's own range, not the generic forms (which the error used to list)
    raises({"fixed": {"working_set_size": "150%"}}, "working_set_size",
           "'150%' is not allowed; expected a share of ram_size from 0% to 100%")  # fmt: skip
    raises({"axes": {"nonzero_size": ["50%", "-5%"]}}, "nonzero_size", "from 0% to 100%")


def test_a_numpy_value_is_named_as_a_number():
    with pytest.raises(ParameterError) as caught:
        api.simulate(pd.DataFrame({"max_iterations": [2.5]}))
    assert "max_iterations: 2.5 is not allowed" in str(caught.value)
    assert type(caught.value.value) is float


def test_chunk_out_of_range():
    with pytest.raises(ParameterError, match="chunk"):
        grid.plan(CONFIG).chunk_range(4)


# --- the JSON schema and the default config ----------------------------------------------------


def test_schema_lists_exactly_the_parameters():
    assert SCHEMA["$defs"]["parameter"]["enum"] == [p.name for p in PARAMETERS]


def test_schema_accepts_the_default_config_and_rejects_typos():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    jsonschema.validate(config, SCHEMA)
    for bad in (
        {**config, "axis": {}},
        {**config, "axes": {"ram": ["1GiB"]}},
        {**config, "axes": {"ram_size": {"start": "1GiB", "stop": "2GiB", "num": 0}}},
        {**config, "axes": {"ram_size": "4GiB"}},
        {**config, "chunk_size": 0},
        {**config, "zip": {"g": {"vcpus": []}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_default_config_is_a_meaningful_sweep():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    built = grid.build(config)
    assert 2_000 <= len(built.scenarios) <= 50_000
    rows = built.scenarios
    assert rows["ram_size_bytes"].min() == 4 * GiB and rows["ram_size_bytes"].max() == 16 * GiB
    assert rows["downtime_limit_ms"].min() == 30 and rows["downtime_limit_ms"].max() == 2000
    assert (rows["dirty_rate_pages_per_s"] == 0).any()  # an idle guest
    above = rows["dirty_rate_pages_per_s"] * rows["page_size_bytes"]
    assert above.max() > rows["link_bandwidth_bytes_per_s"].max()  # dirtying beyond the link
    assert built.plan.aligned_factors[:1] == ("ram_size",)
    assert 2 <= built.plan.n_chunks <= 50


def test_bad_range_ends_name_where_they_are():
    raises(
        {"axes": {"ram_size": {"start": "1 GiB", "stop": "2 parsecs", "num": 2}}},
        "ram_size",
        "axes.ram_size.stop",
        "'2 parsecs'",
    )
    raises(
        {"axes": {"working_set_size": {"start": "10%", "stop": "200%", "num": 2}}},
        "working_set_size",
        "axes.working_set_size.stop",
    )

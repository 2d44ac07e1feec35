"""The planner on hand-made summaries whose answers are known (sweep.planner)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from sweep import planner

GBIT = 1e9 / 8
LIMITS = (30, 100, 300, 1000)


def row(bw, dr, dl, converged, *, time_s=10.0, downtime=None, cap=0, ac=False, ram=2**32):
    return {
        "ram_size_bytes": ram,
        "page_size_bytes": 4096,
        "link_bandwidth_bytes_per_s": bw,
        "max_bandwidth_bytes_per_s": cap,
        "downtime_limit_ms": dl,
        "dirty_rate_pages_per_s": dr,
        "auto_converge": ac,
        "dirty_limit": False,
        "status": "completed" if converged else "cancelled-time",
        "converged": converged,
        "total_time_ms": time_s * 1000.0,
        "downtime_ms": (downtime if downtime is not None else dl * 0.9) if converged else np.nan,
        "downtime_exceeded": (downtime or 0) > dl if converged else pd.NA,
        "transferred_bytes": 5 * 2**30,
        "dirty_sync_count": 7,
    }


def summary(cells, **kw):
    """cells: {(bw, dr): [converged at each of LIMITS]}"""
    rows = [
        row(bw, dr, dl, ok, **kw)
        for (bw, dr), oks in cells.items()
        for dl, ok in zip(LIMITS, oks, strict=True)
    ]
    df = pd.DataFrame(rows)
    df["downtime_exceeded"] = df["downtime_exceeded"].astype("boolean")
    return df


def lookup(table, bw, dr, column="min_downtime_limit_ms"):
    hit = table[(table["precopy_bandwidth_bytes_per_s"] == bw)
                & (table["dirty_rate_pages_per_s"] == dr)]  # fmt: skip
    assert len(hit) == 1
    return hit.iloc[0][column]


CELLS = {
    (1 * GBIT, 1e3): [False, True, True, True],  # converges from 100 ms on
    (1 * GBIT, 1e5): [True, False, True, True],  # not monotone: 30 works, 100 fails
    (1 * GBIT, 1e6): [False, False, False, False],  # never
    (10 * GBIT, 1e6): [False, False, False, True],  # only the largest limit
    (10 * GBIT, 1e3): [True, True, True, True],  # everything
}


def test_smallest_downtime_limit():
    table = planner.downtime_plan(summary(CELLS))
    assert len(table) == len(CELLS)
    assert lookup(table, 1 * GBIT, 1e3) == 100
    assert lookup(table, 1 * GBIT, 1e5) == 300  # from 300 on every larger limit works
    assert lookup(table, 1 * GBIT, 1e5, "first_downtime_limit_ms") == 30
    assert not lookup(table, 1 * GBIT, 1e5, "monotone")
    assert np.isnan(lookup(table, 1 * GBIT, 1e6))
    assert np.isnan(lookup(table, 1 * GBIT, 1e6, "first_downtime_limit_ms"))
    assert lookup(table, 1 * GBIT, 1e6, "monotone")
    assert lookup(table, 10 * GBIT, 1e6) == 1000
    assert lookup(table, 10 * GBIT, 1e3) == 30
    assert (table["swept_max_downtime_limit_ms"] == 1000).all()
    assert (table["n_swept"] == 4).all()
    assert table["precopy_bandwidth_gbit_per_s"].isin([1.0, 10.0]).all()


def test_outcome_at_the_minimum():
    df = summary(CELLS)
    # give every scenario a distinct total time and downtime to see which row is reported
    df["total_time_ms"] = np.arange(len(df)) * 1000.0 + 1000.0
    df["downtime_ms"] = df["downtime_limit_ms"] * 1.5
    df["downtime_exceeded"] = pd.array(df["downtime_ms"] > df["downtime_limit_ms"], "boolean")
    table = planner.downtime_plan(df)
    at = df[(df["link_bandwidth_bytes_per_s"] == GBIT) & (df["dirty_rate_pages_per_s"] == 1e3)
            & (df["downtime_limit_ms"] == 100)]  # fmt: skip
    assert lookup(table, GBIT, 1e3, "total_time_ms") == at["total_time_ms"].item()
    assert lookup(table, GBIT, 1e3, "downtime_ms") == 150.0
    assert lookup(table, GBIT, 1e3, "downtime_exceeded")
    assert pd.isna(lookup(table, GBIT, 1e6, "downtime_exceeded"))


def test_time_cap_tightens_the_answer():
    df = summary(CELLS)
    slow = df["downtime_limit_ms"] == 100
    df.loc[slow, "total_time_ms"] = 250_000.0  # converged, but after 250 s
    assert lookup(planner.downtime_plan(df), GBIT, 1e3) == 100
    capped = planner.downtime_plan(df, time_cap_s=200)
    assert lookup(capped, GBIT, 1e3) == 300
    assert capped.attrs["time_cap_s"] == 200


def test_scenarios_sharing_a_cell_must_all_work():
    """max_bandwidth 0 and 20 Gbit/s over a 1 Gbit/s link: the same pre-copy bandwidth."""
    a = summary({(GBIT, 1e3): [False, True, True, True]})
    b = summary({(GBIT, 1e3): [False, False, True, True]}, cap=int(20 * GBIT))
    table = planner.downtime_plan(pd.concat([a, b], ignore_index=True))
    assert len(table) == 1
    assert lookup(table, GBIT, 1e3) == 300


def test_max_bandwidth_caps_the_precopy_bandwidth():
    df = summary({(10 * GBIT, 1e3): [False, True, True, True]}, cap=int(GBIT))
    table = planner.downtime_plan(df)
    assert table["precopy_bandwidth_bytes_per_s"].tolist() == [GBIT]


def test_other_axes_stay_as_columns():
    off = summary(CELLS, ac=False)
    on = summary({k: [True] * 4 for k in CELLS}, ac=True)
    table = planner.downtime_plan(pd.concat([off, on], ignore_index=True))
    assert "convergence_aid" in table.columns
    assert "ram_size_bytes" in table.columns
    assert len(table) == 2 * len(CELLS)
    aided = table[table["convergence_aid"] == "auto-converge"]
    assert (aided["min_downtime_limit_ms"] == 30).all()
    plain = table[table["convergence_aid"] == "none"]
    assert plain["min_downtime_limit_ms"].isna().sum() == 1


def test_smallest_bandwidth():
    bws = (1 * GBIT, 2.5 * GBIT, 10 * GBIT)
    # works[bw][dl] for one dirty rate; 2.5 Gbit/s fails at 30 ms but 10 works again
    works = {
        1 * GBIT: [False, False, True, True],
        2.5 * GBIT: [False, True, True, True],
        10 * GBIT: [True, True, True, True],
    }
    df = summary({(bw, 1e5): works[bw] for bw in bws})
    table = planner.bandwidth_plan(df)
    got = table.set_index("downtime_limit_ms")["min_bandwidth_bytes_per_s"].to_dict()
    assert got == {30: 10 * GBIT, 100: 2.5 * GBIT, 300: GBIT, 1000: GBIT}
    assert table["min_bandwidth_gbit_per_s"].tolist() == [10.0, 2.5, 1.0, 1.0]
    assert (table["swept_max_bandwidth_bytes_per_s"] == 10 * GBIT).all()


def test_smallest_bandwidth_not_monotone():
    df = summary({(1 * GBIT, 1e5): [True] * 4, (2.5 * GBIT, 1e5): [False] * 4,
                  (10 * GBIT, 1e5): [True] * 4})  # fmt: skip
    table = planner.bandwidth_plan(df)
    assert (table["min_bandwidth_bytes_per_s"] == 10 * GBIT).all()
    assert (table["first_bandwidth_bytes_per_s"] == GBIT).all()
    assert not table["monotone"].any()


def test_tables_written_as_parquet_csv_and_html(tmp_path):
    table = planner.downtime_plan(summary(CELLS))
    planner.write_table(table, tmp_path / "t.parquet", tmp_path / "t.csv")
    planner.write_html(table, tmp_path / "t.html", "Smallest downtime limit")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back.columns) == list(table.columns)
    csv = pd.read_csv(tmp_path / "t.csv")
    assert len(csv) == len(table)
    assert np.allclose(csv["min_downtime_limit_ms"], table["min_downtime_limit_ms"],
                       equal_nan=True)  # fmt: skip
    html = (tmp_path / "t.html").read_text()
    assert html.count("</tr>") == len(table) + 1 and "none" in html


@pytest.mark.parametrize("time_cap_s", [None, 60.0])
def test_planner_on_a_simulated_grid_agrees_with_brute_force(time_cap_s):
    """On a real (small) sweep: recompute every answer by brute force."""
    import sweep

    grid = [
        {"ram_size": "1GiB", "link_bandwidth": bw, "max_bandwidth": 0, "downtime_limit": dl,
         "dirty_rate": dr, "max_time": "120s"}
        for bw, dl, dr in itertools.product(["1Gbit/s", "5Gbit/s"], [30, 300, 1000],
                                            ["0", "50MB/s", "200MB/s", "1GB/s"])
    ]  # fmt: skip
    s = sweep.simulate(grid).summary
    table = planner.downtime_plan(s, time_cap_s)
    for _, r in table.iterrows():
        cell = s[(s["link_bandwidth_bytes_per_s"] == r["precopy_bandwidth_bytes_per_s"])
                 & (s["dirty_rate_pages_per_s"] == r["dirty_rate_pages_per_s"])]  # fmt: skip
        ok = cell["converged"] & (cell["total_time_ms"] <= (time_cap_s or np.inf) * 1000.0)
        by_limit = dict(zip(cell["downtime_limit_ms"], ok, strict=True))
        limits = sorted(by_limit)
        robust = [lim for lim in limits if all(by_limit[x] for x in limits if x >= lim)]
        want = min(robust) if robust else np.nan
        got = r["min_downtime_limit_ms"]
        assert (np.isnan(want) and np.isnan(got)) or want == got


def simulated_summary(tmp_path):
    """A small sweep with a string axis (write pattern) and the convergence aid, as Parquet."""
    import sweep

    grid = [
        {"ram_size": "1GiB", "link_bandwidth": bw, "downtime_limit": dl, "dirty_rate": dr,
         "write_pattern": wp, "auto_converge": ac, "max_time": "60s"}
        for wp, ac, bw, dl, dr in itertools.product(
            ["uniform", "sequential"], [False, True], ["1Gbit/s", "5Gbit/s"], [30, 300, 1000],
            ["0", "50MB/s", "200MB/s", "1GB/s"])
    ]  # fmt: skip
    s = sweep.simulate(grid).summary
    s = s.loc[:, ~s.columns.duplicated(keep="last")]
    path = tmp_path / "summary.parquet"
    s.to_parquet(path, index=False)
    return s, path


def plain(table):
    out = table.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(str)
    return out


@pytest.mark.parametrize("kind", ["downtime", "bandwidth"])
@pytest.mark.parametrize("rows", [1, 7, 40, 10_000])
def test_parts_read_from_disk_make_the_whole_table(tmp_path, monkeypatch, kind, rows):
    """Read 9 rows at a time and cut into parts of about `rows` summary rows (several
    parts are spilled to disk and read back): the same table, in the same order."""
    from sweep import report, view

    s, path = simulated_summary(tmp_path)
    whole = {"downtime": planner.downtime_plan, "bandwidth": planner.bandwidth_plan}[kind](s)
    monkeypatch.setattr(view, "PIECE_ROWS", 9)
    keys, parts = planner.plan_parts(report.open_summary(path), kind, rows=rows)
    parts = list(parts)
    assert (len(parts) == 1) if rows >= len(s) else (len(parts) > 1)
    joined = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(plain(joined), plain(whole), check_dtype=False)
    assert list(joined[keys].itertuples(index=False)) == sorted(
        joined[keys].itertuples(index=False), key=lambda t: tuple(
            ["none", "auto-converge", "dirty-limit"].index(v) if k == "convergence_aid" else v
            for k, v in zip(keys, t, strict=True))
    )  # fmt: skip


def test_table_files_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    """Written part by part: no file until every part is in, and an error leaves none."""
    table = planner.downtime_plan(summary(CELLS))
    out = [tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "t.html"]
    with pytest.raises(RuntimeError, match="boom"), planner.TableFiles(*out) as files:
        files.write(table.iloc[:2])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(planner, "HTML_MAX_ROWS", 3)
    with planner.TableFiles(*out, title="Smallest", time_cap_s=60.0) as files:
        for i in range(0, len(table), 2):
            files.write(table.iloc[i : i + 2])
            assert not any(p.exists() for p in out)
    pd.testing.assert_frame_equal(pd.read_parquet(out[0]), table.reset_index(drop=True))
    assert pd.read_csv(out[1]).shape == table.shape
    assert out[1].read_text().count("ram_size_bytes") == 1  # one header
    html = out[2].read_text()
    assert html.count("</tr>") == 3 + 1 and "at most 60 s" in html
    assert f"First 3 of {len(table)} rows" in html


def test_an_empty_summary_file_reads_as_an_empty_frame(tmp_path):
    """A file of no rows still gives one (empty) piece: the same empty table as a frame."""
    from sweep import report

    s, _ = simulated_summary(tmp_path)
    path = tmp_path / "empty.parquet"
    s.iloc[:0].to_parquet(path, index=False)
    pieces = list(report.open_summary(path).pieces())
    assert len(pieces) == 1 and pieces[0].empty and "precopy_bandwidth_bytes_per_s" in pieces[0]
    from_file = planner.downtime_plan(report.open_summary(path))
    assert list(from_file.columns) == list(planner.downtime_plan(s.iloc[:0]).columns)
    assert from_file.empty

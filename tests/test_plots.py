"""Figures (sweep.plots, sweep.report): they draw, they label, they repeat byte for byte."""

from __future__ import annotations

import filecmp
import itertools
import subprocess
import sys
import textwrap

import matplotlib as mpl
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sweep
from sweep import aggregate, planner, plots, report, view

FIGURE_FUNCTIONS = ("phase_map", "syncs_vs_ratio", "downtime_vs_limit", "expected_vs_actual",
                    "violation_share")  # fmt: skip


def small_grid() -> list[dict]:
    aids = [(False, False), (True, False), (False, True)]
    return [
        {"ram_size": "1GiB", "link_bandwidth": bw, "max_bandwidth": 0, "downtime_limit": dl,
         "dirty_rate": dr, "auto_converge": ac, "dirty_limit": dlim, "max_time": "60s",
         "working_set_size": "50%"}
        for bw, dl, dr, (ac, dlim) in itertools.product(
            ["1Gbit/s", "10Gbit/s"], [30, 300, 2000],
            ["0", "20MB/s", "100MB/s", "400MB/s", "2GB/s"], aids)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sweep_files(tmp_path_factory):
    """A small simulated sweep written as the pipeline writes it (summary + hive dataset)."""
    root = tmp_path_factory.mktemp("sweep")
    result = sweep.simulate(small_grid())
    summary = result.summary.loc[:, ~result.summary.columns.duplicated(keep="last")]
    summary.to_parquet(root / "summary.parquet", index=False)
    it = result.iterations.assign(chunk=result.iterations["scenario_id"] % 3)
    table = pa.Table.from_pandas(it, preserve_index=False)
    pq.write_to_dataset(table, root / "iterations", partition_cols=["chunk"])
    return root, summary, result.iterations


def test_derive_bandwidth_ratio_and_aid():
    s = sweep.simulate([
        {"link_bandwidth": "10Gbit/s", "max_bandwidth": "1Gbit/s", "dirty_rate": "100MB/s"},
        {"link_bandwidth": "10Gbit/s", "max_bandwidth": 0, "dirty_rate": "100MB/s",
         "auto_converge": True},
    ]).summary  # fmt: skip
    d = plots.derive(s)
    assert d[plots.BW].tolist() == [1e9 / 8, 10e9 / 8]
    assert np.allclose(d[plots.RATIO], [0.8, 0.08])
    assert d[plots.AID].astype(str).tolist() == ["none", "auto-converge"]


def test_a_summary_keeps_the_axes_of_each_row_filter_once(sweep_files, monkeypatch):
    """Equal filters share one scan; a different filter gets its own, never another's."""
    _, summary, _ = sweep_files
    scans = []
    scan = view.Axes.scan
    monkeypatch.setattr(view.Axes, "scan", lambda pieces: scans.append(1) or scan(pieces))
    src = view.Summary.frame(summary)
    moving = src.axes(view.Rows.where(view.DR, ">", 0))
    assert src.axes(view.Rows.where(view.DR, ">", 0)) is moving and len(scans) == 1
    fast = view.Rows.where(view.DR, ">", 0) & view.Rows.where(view.DL, "in", [300, 2000])
    shown = src.axes(fast)
    assert len(scans) == 2 and shown is not moving
    d = view.derive(summary)
    assert moving.rows == int((d[view.DR] > 0).sum())
    assert shown.rows == int(((d[view.DR] > 0) & d[view.DL].isin([300, 2000])).sum()) > 0
    assert shown.levels[view.DL] == [300, 2000] and 30 in moving.levels[view.DL]
    assert src.axes().rows == len(summary) and len(scans) == 3
    with pytest.raises(ValueError, match="'<' is not allowed; expected '>', 'in', 'true'"):
        view.Rows.where(view.DR, "<", 0)
    with pytest.raises(ValueError, match="None is not allowed; expected a value to compare with"):
        view.Rows.where(view.DR, ">")
    with pytest.raises(ValueError, match="1 is not allowed; expected no value"):
        view.Rows.where("converged", "true", 1)


def test_axes_ignore_sizes_that_follow_ram(sweep_files):
    _, summary, _ = sweep_files
    two = pd.concat([summary, summary.assign(
        ram_size_bytes=summary["ram_size_bytes"] * 2,
        nonzero_size_bytes=summary["nonzero_size_bytes"] * 2,
        working_set_size_bytes=summary["working_set_size_bytes"] * 2)])  # fmt: skip
    axes = plots.varying_axes(two)
    assert "ram_size_bytes" in axes
    assert "nonzero_size_bytes" not in axes and "working_set_size_bytes" not in axes
    d = plots.derive(two)
    assert plots.other_axes(d) == ["ram_size_bytes", plots.AID]
    assert plots.row_axis(d) == plots.AID
    assert "ram_size (1 GiB, 2 GiB)" in plots.pooled_note(d, [plots.AID])


def _labels(fig) -> list[str]:
    out = [fig._supxlabel.get_text() if fig._supxlabel else "",
           fig._supylabel.get_text() if fig._supylabel else ""]  # fmt: skip
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel()]
    return [t for t in out if t]


@pytest.mark.parametrize("name", FIGURE_FUNCTIONS)
@pytest.mark.parametrize("style", [plots.FIG_REPORT, plots.FIG_ONECOL, plots.FIG_TWOCOL],
                         ids=lambda s: s.name)  # fmt: skip
def test_figures_draw_with_units(sweep_files, name, style):
    _, summary, _ = sweep_files
    with plots.styled(style):
        fig = getattr(plots, name)(summary, style)
    try:
        labels = _labels(fig)
        assert labels, "no axis labels"
        facet_titles = ("no aid", "auto", "dirty-")
        unitless = [t for t in labels if "(" not in t and plots.TIMES not in t
                    and "/" not in t and not t.startswith(facet_titles)]  # fmt: skip
        assert unitless == [], f"labels without a unit: {unitless}"
        if style.name != "report":
            assert fig.get_figwidth() == pytest.approx(style.width_in)
    finally:
        mpl.pyplot.close(fig)


def test_remaining_curves_follow_the_rule(sweep_files):
    root, summary, _ = sweep_files
    chosen = plots.representative_scenarios(summary)
    # anchored at the lower-middle value of each swept axis but the dirty rate
    assert (chosen["link_bandwidth_bytes_per_s"] == 1e9 / 8).all()  # lower-middle of 2 values
    assert (chosen["downtime_limit_ms"] == 300).all()
    assert (~chosen["auto_converge"] & ~chosen["dirty_limit"]).all()
    rates = sorted(chosen["dirty_rate_pages_per_s"])
    positive = sorted(summary.loc[summary["dirty_rate_pages_per_s"] > 0,
                                  "dirty_rate_pages_per_s"].unique())  # fmt: skip
    assert rates[0] == positive[0] and rates[-1] == positive[-1]
    assert 2 <= len(chosen) <= 5
    assert chosen["converged"].any() and not chosen["converged"].all()
    its = report.read_iterations(root / "iterations", chosen["scenario_id"])
    assert set(its["scenario_id"]) == set(chosen["scenario_id"])
    fig = plots.remaining_curves(its, chosen)
    assert len(fig.axes[0].lines) >= len(chosen)
    mpl.pyplot.close(fig)


def test_planner_heatmaps_draw(sweep_files):
    _, summary, _ = sweep_files
    levels = planner.swept_levels(summary)
    for fig in (
        plots.planner_downtime_heatmap(planner.downtime_plan(summary), levels[plots.DL]),
        plots.planner_bandwidth_heatmap(planner.bandwidth_plan(summary), levels[plots.BW]),
    ):
        titles = [ax.get_title() for ax in fig.axes]
        assert {"no aid", "auto-converge", "dirty-limit"} <= set(titles)
        mpl.pyplot.close(fig)


@pytest.mark.parametrize("case", ["one_limit", "all_converge", "none_converge", "idle"])
def test_degenerate_sweeps_still_draw(sweep_files, case):
    _, summary, iterations = sweep_files
    s = summary.copy()
    if case == "one_limit":
        s = s[s["downtime_limit_ms"] == 300]
    elif case == "all_converge":
        s = s[s["converged"]]
    elif case == "none_converge":
        s = s[~s["converged"]]
    else:
        s = s[s["dirty_rate_pages_per_s"] == 0]
    for name in FIGURE_FUNCTIONS:
        mpl.pyplot.close(getattr(plots, name)(s))
    chosen = plots.representative_scenarios(s)
    mpl.pyplot.close(plots.remaining_curves(iterations, chosen))
    levels = planner.swept_levels(s)
    mpl.pyplot.close(plots.planner_downtime_heatmap(planner.downtime_plan(s), levels[plots.DL]))


@pytest.mark.parametrize("case", ["all", "none_converge", "idle"])
def test_figures_read_in_pieces_equal_figures_of_the_frame(sweep_files, case, tmp_path,
                                                           monkeypatch):  # fmt: skip
    """The report reads the summary a piece at a time with bounded memory: with pieces of 7
    rows, quantile parts of 5 values (larger groups go to radix selection) and cells
    numbered as found, every figure has the bytes of the one drawn from the whole frame."""
    _, summary, _ = sweep_files
    s = {"all": summary, "none_converge": summary[~summary["converged"]],
         "idle": summary[summary["dirty_rate_pages_per_s"] == 0]}[case]  # fmt: skip
    path = tmp_path / "summary.parquet"
    s.to_parquet(path, index=False)
    whole = {}
    for name in FIGURE_FUNCTIONS:
        whole[name] = plots.save_figure(getattr(plots, name)(s), tmp_path / f"whole_{name}.png")
    chosen = plots.representative_scenarios(s)
    monkeypatch.setattr(view, "PIECE_ROWS", 7)
    monkeypatch.setattr(aggregate, "BUDGET", 5)
    monkeypatch.setattr(view, "DENSE_CELLS", 4)  # number only the cells present
    pieces = report.open_summary(path)
    assert sum(1 for _ in pieces.pieces()) == -(-len(s) // 7)
    for name in FIGURE_FUNCTIONS:
        part = plots.save_figure(getattr(plots, name)(pieces), tmp_path / f"pieces_{name}.png")
        assert filecmp.cmp(whole[name], part, shallow=False), name
    streamed = plots.representative_scenarios(pieces)
    assert streamed["scenario_id"].tolist() == chosen["scenario_id"].tolist()
    assert streamed["label"].tolist() == chosen["label"].tolist()


RENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pandas as pd
    from sweep import plots, report
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    summary = pd.read_parquet(root / "summary.parquet")
    with plots.styled(plots.FIG_REPORT):
        for name in {names}:
            fig = getattr(plots, name)(summary)
            plots.save_figure(fig, *(out / f"{{name}}.{{ext}}" for ext in ("png", "svg", "pdf")))
    report.paper(root / "summary.parquet", root / "iterations", out / "paper")
    """
).format(names=FIGURE_FUNCTIONS)


def test_figures_are_byte_identical_across_runs(sweep_files, tmp_path):
    """Two separate processes render every figure as PNG, SVG and PDF: same bytes."""
    root, _, _ = sweep_files
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        subprocess.run([sys.executable, "-c", RENDER, str(root), str(out)], check=True,
                       timeout=300)  # fmt: skip
    files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*") if p.is_file())
    assert len(files) == 3 * len(FIGURE_FUNCTIONS) + 2 * len(report.PAPER_FIGURES)
    assert {f.suffix for f in files} == {".png", ".svg", ".pdf"}
    different = [str(f) for f in files if not filecmp.cmp(runs[0] / f, runs[1] / f,
                                                           shallow=False)]  # fmt: skip
    assert different == []
    svg = (runs[0] / "phase_map.svg").read_text()
    assert "<dc:date>" not in svg
    pdf = (runs[0] / "phase_map.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"FontFile2" in pdf  # TrueType fonts embedded


def test_paper_sizes(sweep_files, tmp_path):
    root, _, _ = sweep_files
    written = report.paper(root / "summary.parquet", root / "iterations", tmp_path)
    assert sorted(p.name for p in written) == sorted(
        p.rsplit("/", 1)[1] for p in report.paper_targets(tmp_path)
    )
    for name, (_, style) in report.PAPER_FIGURES.items():
        head = (tmp_path / f"{name}.svg").read_text()[:2000]
        width_pt = float(head.split('width="', 1)[1].split("pt", 1)[0])
        assert width_pt == pytest.approx(style.width_in * 72, abs=0.5), name


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()] + [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]


@pytest.mark.parametrize(
    "parameter, status, words",
    [("postcopy_after_iterations", "completed-postcopy", "finished by postcopy"),
     ("pause_after_iterations", "completed-paused", "guest stopped")],
)  # fmt: skip
def test_scenarios_finished_by_the_manager_are_named_in_the_legends(parameter, status, words):
    """Postcopy, or the manager stopping the guest, finishes a migration without converging:
    the phase map's hatch says so, and the syncs scatter gives those scenarios their own
    colour.  Without that way out neither mentions it."""
    plain = sweep.simulate(small_grid()).summary
    summary = sweep.simulate([{**row, parameter: 3} for row in small_grid()]).summary
    assert (summary["status"] == status).any()
    assert not summary.loc[summary["status"] == status, "converged"].any()
    for figure in (plots.phase_map, plots.syncs_vs_ratio):
        for frame, named in ((summary, True), (plain, False)):
            fig = figure(frame)
            assert (words in " ".join(_legend_texts(fig))) == named, figure.__name__
            mpl.pyplot.close(fig)

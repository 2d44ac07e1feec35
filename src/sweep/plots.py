"""Figures of a sweep: convergence, downtime and planner views, in one fixed style.

Every figure function takes the collected summary (a DataFrame, or a
:class:`sweep.view.Summary` that reads it a piece at a time), the per-sync iterations or a
planner table, and returns a :class:`matplotlib.figure.Figure`; nothing here opens files.
:func:`save_figure` writes PNG, SVG or PDF byte-identically from run to run.

Style, fixed module-wide (:class:`FigStyle`): DejaVu Sans (shipped with matplotlib, so the
same glyphs on every machine), the Okabe-Ito colour-blind-safe palette for categories,
perceptually uniform sequential maps (viridis, rocket) for quantities, a unit on every axis,
log scales where a quantity spans decades, legends outside the data area.

Grids have many axes.  The heatmaps put the pre-copy bandwidth on y and the dirty rate on x,
facet by downtime limit (columns) and by at most one more swept axis (rows, see
:func:`row_axis`); every other swept axis is pooled, and the figure says so in a note line
(:func:`pooled_note`).  Statistics per cell are exact and taken piece by piece
(:mod:`sweep.aggregate`: counts, sums, quantiles bit-identical to numpy's), never by a Python
loop over scenarios: a million-scenario summary renders in seconds, and a report's memory
does not grow with the grid.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from . import aggregate
from .params import by_name_or_none
from .view import (
    AID,
    BW,
    DL,
    DR,
    LINK,
    MAX_ROW_VALUES,
    PARAM_COLUMNS,
    RATIO,
    ROW_PRIORITY,
    Axes,
    Cells,
    Rows,
    Summary,
    derive,
    other_axes,
    row_axis,
    varying_axes,
)
from .view import levels as _levels

__all__ = [
    "BW",
    "DL",
    "DR",
    "FIG_ONECOL",
    "FIG_REPORT",
    "FIG_TWOCOL",
    "RATIO",
    "FigStyle",
    "PlanCells",
    "derive",
    "downtime_vs_limit",
    "expected_vs_actual",
    "phase_map",
    "planner_bandwidth_heatmap",
    "planner_downtime_heatmap",
    "pooled_note",
    "remaining_curves",
    "representative_scenarios",
    "row_axis",
    "save_figure",
    "styled",
    "syncs_vs_ratio",
    "varying_axes",
    "violation_share",
]

# ---------------------------------------------------------------------------------------------
# Style

#: Okabe & Ito (2008), the colour-blind-safe qualitative palette.
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
STATUS_COLORS = {
    "completed": OKABE_ITO[0],
    "cancelled-time": OKABE_ITO[1],
    "cancelled-iterations": OKABE_ITO[2],
    "completed-postcopy": OKABE_ITO[4],
    "completed-paused": OKABE_ITO[5],
}
# finished, not converged: the manager's way out (postcopy, or stopping the guest)
WAYS_OUT = {"completed-postcopy": "finished by postcopy", "completed-paused": "guest stopped"}
STATUS_LABELS = {
    "completed": "converged",
    "cancelled-time": "cancelled at max_time",
    "cancelled-iterations": "cancelled at max_iterations",
    **WAYS_OUT,
}
NEVER_COLOR = "#d9d9d9"  # light grey under a hatch: "no scenario in this cell converged"
HATCH = "////"
SEQUENTIAL = "viridis"
HASH_SALT = "precopy-sweep"
TIMES = "\u00d7"  # the multiplication sign, for "2x guest RAM"


@dataclass(frozen=True)
class FigStyle:
    """Size and type of one output kind; every figure function takes one."""

    name: str
    width_in: float  # the full figure width; heights follow from the layout
    font_pt: float
    dpi: int
    notes: bool  # print the "pooled over ..." note on the figure (reports yes, papers no)
    max_facet_cols: int = 6
    annotate_cells: int = 120  # write values into heatmap cells up to this many cells a panel


FIG_REPORT = FigStyle("report", 9.0, 10.0, 130, True, max_facet_cols=4)
FIG_ONECOL = FigStyle("onecol", 3.5, 7.0, 300, False, max_facet_cols=3, annotate_cells=0)
FIG_TWOCOL = FigStyle("twocol", 7.16, 7.0, 300, False, max_facet_cols=6, annotate_cells=30)

#: rcParams that make saved files byte-identical (read at save time, so set in save_figure too).
DETERMINISTIC_RC = {
    "svg.hashsalt": HASH_SALT,
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "pdf.compression": 6,
    "path.simplify": True,
}


def rc_params(style: FigStyle) -> dict:
    """The matplotlib rcParams of a style (seaborn's ticks theme plus our fonts and colours)."""
    base = dict(sns.axes_style("ticks"))
    base.update(sns.plotting_context("paper", font_scale=1.0))
    small = style.font_pt * 0.88
    base.update(
        {
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"],
            "font.size": style.font_pt,
            "axes.titlesize": style.font_pt,
            "axes.labelsize": style.font_pt,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "legend.title_fontsize": style.font_pt,
            "figure.titlesize": style.font_pt,
            "axes.prop_cycle": mpl.cycler(color=list(OKABE_ITO)),
            "axes.grid": False,
            "grid.color": "#e5e5e5",
            "grid.linewidth": 0.6,
            "lines.linewidth": 1.4 if style.name == "report" else 1.0,
            "lines.markersize": 4.5 if style.name == "report" else 3.0,
            "axes.linewidth": 0.8,
            "hatch.linewidth": 0.6,
            "hatch.color": "#8c8c8c",
            "legend.frameon": False,
            "figure.dpi": style.dpi,
            "savefig.dpi": style.dpi,
            "image.cmap": SEQUENTIAL,
            "axes.spines.top": False,
            "axes.spines.right": False,
            **DETERMINISTIC_RC,
        }
    )
    return base


@contextmanager
def styled(style: FigStyle) -> Iterator[None]:
    """Run figure code under the style's rcParams (fonts are fixed when text is created)."""
    with mpl.rc_context(rc_params(style)):
        yield


def _metadata(fmt: str) -> dict:
    """No dates, no version strings: the same figure gives the same bytes."""
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}
    if fmt == "png":
        return {"Software": None}
    return {}


def save_figure(fig: Figure, *paths: str | Path, dpi: int | None = None) -> Path:
    """Write `fig` to each path (format from the suffix) deterministically, then close it.

    No dates or version strings in the metadata, a fixed ``svg.hashsalt`` (so SVG ids repeat),
    fonts embedded as TrueType (PDF) or paths (SVG).  Returns the first path.
    """
    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lstrip(".").lower()
        with mpl.rc_context(DETERMINISTIC_RC):
            fig.savefig(path, format=fmt, metadata=_metadata(fmt), dpi=dpi or fig.dpi)
    plt.close(fig)
    return Path(paths[0])


# ---------------------------------------------------------------------------------------------
# Columns, derived quantities and axis descriptions


def axis_name(column: str) -> str:
    """Short human name of a parameter column ('ram_size_bytes' -> 'ram_size')."""
    if column == BW:
        return "pre-copy bandwidth"
    if column == AID:
        return "convergence aid"
    param = by_name_or_none(column)
    return param.name if param else column


def fmt_value(column: str, value: object) -> str:
    """A parameter value in the unit people say it in ('4 GiB', '10 Gbit/s', '300 ms', 'on')."""
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    param = by_name_or_none(column)
    kind = "rate" if column == BW else (param.kind if param else "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not pd.isna(value):
        v = float(value)
        if kind == "size":
            return fmt_bytes(v)
        if kind == "rate":
            return fmt_bitrate(v) + " Gbit/s"
        if kind == "duration_ms":
            return fmt_ms(v)
        if kind == "duration_s":
            return f"{v:g} s"
        if kind == "dirty_rate":
            return fmt_count(v) + " pages/s"
        return f"{v:g}"
    return str(value)


def fmt_bytes(b: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def fmt_bitrate(bytes_per_s: float) -> str:
    """Bytes/s as a bare number of Gbit/s (decimal, as links are sold)."""
    return f"{bytes_per_s * 8 / 1e9:.3g}"


def fmt_count(x: float) -> str:
    """1000 -> '1k', 2.5e6 -> '2.5M'."""
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 1000 else f"{ms:.3g} ms"


def pooled_note(data: pd.DataFrame | Axes, shown: Sequence[str]) -> str:
    """'Pooled over auto_converge (off, on); ram_size (4 GiB ... 16 GiB, 2 values).'"""
    axes = Axes.of(data)
    parts = []
    for c in other_axes(axes):
        if c in shown:
            continue
        values = axes.levels[c]
        if len(values) <= 3:
            text = ", ".join(fmt_value(c, v) for v in values)
        else:
            text = f"{fmt_value(c, values[0])} ... {fmt_value(c, values[-1])}, {len(values)} values"
        parts.append(f"{axis_name(c)} ({text})")
    return "Pooled over " + "; ".join(parts) + "." if parts else ""


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of at most `most` evenly spread tick labels out of n (first and last kept)."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, most)).astype(int))


def _pick_levels(levels: list, most: int) -> list:
    return [levels[i] for i in _thin(len(levels), most)]


def _short(style: FigStyle, long: str, short: str) -> str:
    """The long axis label in reports and two-column figures, the short one in one column."""
    return short if style.name == "onecol" else long


def _legend_cols(style: FigStyle, n: int) -> int:
    """Legend columns that fit the figure width (at most 4, and 1-2 in one column)."""
    if style.name == "onecol":
        return 1 if n > 3 else max(1, min(n, 2))
    return max(1, min(n, 4))


def _add_note(fig: Figure, style: FigStyle, note: str) -> None:
    """The "pooled over ..." line (reports only), wrapped to the figure width.

    With a figure legend the note becomes that legend's title (constrained layout does not
    stack a suptitle and an outside legend); otherwise it is the suptitle.
    """
    if not (style.notes and note):
        return
    size = style.font_pt * 0.85
    chars = int(fig.get_figwidth() * 72 / (size * 0.56))
    text = textwrap.fill(note, chars)
    if fig.legends:
        legend = fig.legends[-1]
        legend.set_title(text, prop={"size": size})
        legend.get_title().set_color("#444444")
    else:
        fig.suptitle(text, fontsize=size, color="#444444")


# ---------------------------------------------------------------------------------------------
# Faceted categorical heatmaps (phase map, violation share, planner)


@dataclass
class Panel:
    values: np.ndarray  # ny x nx; NaN = "none" (hatched grey)
    missing: np.ndarray  # ny x nx bool; no scenario in the cell (left white)
    marks: np.ndarray | None = None  # ny x nx bool; a dot marks the cell
    text: np.ndarray | None = None  # ny x nx str labels, or None
    share: np.ndarray | None = None  # ny x nx in [0, 1]; on dense grids drawn as contours


#: Grids with more cells than this per panel get no cell borders, and contour lines
#: instead of a dot per partly converged cell.
DENSE_CELLS = 150


def _dense(nx: int, ny: int) -> bool:
    return nx * ny > DENSE_CELLS


def _cell_tables(
    agg: pd.DataFrame, column: str, y: str, x: str, ylev: list, xlev: list
) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing) arrays of one panel from an aggregated frame."""
    wide = agg.pivot_table(index=y, columns=x, values=column, aggfunc="first", dropna=False)
    present = agg.assign(_one=1.0).pivot_table(
        index=y, columns=x, values="_one", aggfunc="first", dropna=False
    )
    wide = wide.reindex(index=ylev, columns=xlev)
    present = present.reindex(index=ylev, columns=xlev)
    return wide.to_numpy(dtype=float), present.isna().to_numpy()


def _heatmap_grid(
    panels: dict[tuple[object, object], Panel],
    rows: list,
    cols: list,
    xlev: list,
    ylev: list,
    *,
    style: FigStyle,
    cmap: mcolors.Colormap,
    norm: mcolors.Normalize,
    xlabel: str,
    ylabel: str,
    xfmt: callable,
    yfmt: callable,
    col_title: callable,
    row_title: callable | None,
    cbar_label: str,
    cbar_ticks: Sequence[float] | None = None,
    cbar_ticklabels: Sequence[str] | None = None,
    legend: Sequence[object] = (),
    panel_height: float | None = None,
    text_colors: tuple[str, str] = ("white", "black"),
) -> Figure:
    """Draw panels[(row, col)] as categorical heatmaps in a rows x cols grid."""
    ny, nx = len(ylev), len(xlev)
    ncols = len(cols)
    panel_w = (style.width_in - 1.3) / ncols
    panel_h = panel_height or max(1.2, min(panel_w * max(ny, 2) / max(nx, 2) * 1.15, 3.2))
    fig = plt.figure(
        figsize=(style.width_in, panel_h * len(rows) + 1.3),
        layout="constrained",
    )
    axes = fig.subplots(len(rows), ncols, squeeze=False, sharex=True, sharey=True)
    xe, ye = np.arange(nx + 1), np.arange(ny + 1)
    dense = _dense(nx, ny)
    mesh = None
    # write values into cells only when they fit: few cells and about 3 characters wide
    cell_pt = panel_w / max(nx, 1) * 72
    fits = cell_pt >= style.font_pt * 0.68 * 2.4 and panel_h / max(ny, 1) * 72 >= style.font_pt
    annotate = style.annotate_cells and nx * ny <= style.annotate_cells and fits
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            panel = panels.get((r, c))
            ax.add_patch(
                Rectangle((0, 0), nx, ny, facecolor=NEVER_COLOR, hatch=HATCH, lw=0, zorder=0)
            )
            if panel is None:
                continue
            values = np.ma.masked_invalid(panel.values)
            mesh = ax.pcolormesh(
                xe, ye, values, cmap=cmap, norm=norm, edgecolors="face" if dense else "white",
                linewidth=0 if dense else 0.4, zorder=1, rasterized=nx * ny > 400,
            )  # fmt: skip
            if panel.missing.any():
                blank = np.ma.masked_where(~panel.missing, np.ones_like(panel.values))
                ax.pcolormesh(xe, ye, blank, cmap=mcolors.ListedColormap(["white"]), zorder=2)
            if dense and panel.share is not None:
                share = np.ma.masked_invalid(panel.share)
                if share.count() and share.max() > share.min():
                    cx, cy = np.arange(nx) + 0.5, np.arange(ny) + 0.5
                    for level, color, style_ in ((0.01, "black", "--"), (0.99, "white", "-")):
                        ax.contour(cx, cy, share, levels=[level], colors=color,
                                   linestyles=style_, linewidths=1.0, zorder=3)  # fmt: skip
            elif panel.marks is not None and panel.marks.any():
                yy, xx = np.nonzero(panel.marks)
                size = (3.2 if style.name == "report" else 2) ** 2
                ax.scatter(xx + 0.84, yy + 0.8, s=size, facecolor="white", edgecolor="black",
                           linewidth=0.5, zorder=3)  # fmt: skip
            if annotate and panel.text is not None:
                rgba = cmap(norm(np.nan_to_num(panel.values, nan=norm.vmin or 0.0)))
                lum = 0.2126 * rgba[..., 0] + 0.7152 * rgba[..., 1] + 0.0722 * rgba[..., 2]
                for yy, xx in zip(*np.nonzero(panel.text != ""), strict=True):
                    dark = np.isnan(panel.values[yy, xx]) or lum[yy, xx] > 0.5
                    ax.text(xx + 0.5, yy + 0.5, panel.text[yy, xx], ha="center", va="center",
                            fontsize=style.font_pt * 0.68,
                            color=text_colors[1] if dark else text_colors[0], zorder=4)  # fmt: skip
            ax.set_xlim(0, nx)
            ax.set_ylim(0, ny)
            ax.tick_params(length=2)
            for side in ("top", "right"):
                ax.spines[side].set_visible(True)
            if i == 0:
                ax.set_title(col_title(c))
            if row_title is not None and j == ncols - 1:
                ax.yaxis.set_label_position("right")
                ax.set_ylabel(row_title(r), rotation=270, labelpad=11)
    label_in = style.font_pt * 0.88 * 1.3 / 72  # one tick label's height, with a gap
    most_x = max(2, int(panel_w / label_in))
    most_y = max(2, int(panel_h / label_in))
    xi, yi = _thin(nx, most_x), _thin(ny, most_y)
    for ax in axes[-1, :]:
        ax.set_xticks(xi + 0.5, [xfmt(xlev[k]) for k in xi], rotation=90)
    for ax in axes[:, 0]:
        ax.set_yticks(yi + 0.5, [yfmt(ylev[k]) for k in yi])
    fig.supxlabel(xlabel, fontsize=style.font_pt)
    fig.supylabel(ylabel, fontsize=style.font_pt)
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=axes, shrink=0.9 if len(rows) > 1 else 1.0,
                            aspect=25 * max(1, len(rows)) ** 0.5, pad=0.01)  # fmt: skip
        cbar.set_label(cbar_label)
        if cbar_ticks is not None:
            cbar.set_ticks(cbar_ticks, labels=cbar_ticklabels)
            cbar.minorticks_off()
        elif isinstance(norm, mcolors.LogNorm):
            cbar.ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 3.0)))
            cbar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            cbar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    if legend:
        # above the panels: the shared x label owns the space below them
        fig.legend(handles=list(legend), loc="outside upper center",
                   ncols=_legend_cols(style, len(legend) if len(legend) < 3 else 2))  # fmt: skip
    return fig


def _facets(axes: Axes, style: FigStyle) -> tuple[str | None, list, list]:
    """(row axis, row levels, shown downtime limits) for the faceted heatmaps."""
    row = row_axis(axes)
    rows = axes.levels[row] if row else [None]
    cols = _pick_levels(axes.levels[DL], style.max_facet_cols)
    return row, rows, cols


def _row_title(row: str | None) -> callable | None:
    """Short facet titles: the convergence aid by its name alone ("no aid", "auto-converge")."""
    if row is None:
        return None
    if row == AID:
        return lambda r: "no aid" if r == "none" else str(r)
    return lambda r: f"{axis_name(row)} {fmt_value(row, r)}"


def dirty_axis(data: pd.DataFrame | Axes) -> tuple[str, callable]:
    """(label, tick formatter) for dirty-rate axes: MB/s (decimal, as configs write rates)
    when every scenario has the same page size, else pages/s."""
    if isinstance(data, Axes):
        return _dirty_unit(data.levels.get("page_size_bytes", [4096]))
    return _dirty_unit(data["page_size_bytes"].unique() if "page_size_bytes" in data else [4096])


def _dirty_unit(pages: Sequence[float]) -> tuple[str, callable]:
    if len(pages) == 1:
        page = float(pages[0])
        return "guest dirty rate (MB/s)", lambda v: _plain_number(v * page / 1e6)
    return "guest dirty rate (pages/s)", fmt_count


def _limits_note(axes: Axes, cols: list) -> str:
    n = axes.nunique(DL)
    return f" Showing {len(cols)} of {n} swept downtime limits." if len(cols) < n else ""


def _heatmap_cells(src: Summary, style: FigStyle) -> tuple:
    """Facets of the cell heatmaps, the filter to the shown limits, its axes and cells."""
    row, rows, cols = _facets(src.axes(), style)
    keys = ([row] if row else []) + [DL, BW, DR]
    where = Rows.where(DL, "in", cols)
    shown = src.axes(where)
    return row, rows, cols, where, shown, Cells(keys, shown.levels, lambda: src.pieces(where))


def phase_map(summary: pd.DataFrame | Summary, style: FigStyle = FIG_REPORT) -> Figure:
    """Converged or not over dirty rate x bandwidth, one panel per downtime limit.

    A cell is coloured by the median total migration time of its converged scenarios
    (log scale); hatched grey means no scenario in the cell converged (cancelled at
    max_time or max_iterations, switched to postcopy, or the guest stopped by the manager); a
    white dot means only some did (pooled axes differ)."""
    src = Summary.of(summary)
    row, rows, cols, where, shown, cells = _heatmap_cells(src, style)

    def converged() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for df in src.pieces(where):
            yield cells.codes(df), df["converged"].to_numpy(dtype=float)

    def times() -> Iterator[tuple[np.ndarray, np.ndarray]]:  # converged scenarios only
        for df in src.pieces(where):
            conv = df["converged"].to_numpy(dtype=bool)
            t = df["total_time_ms"].to_numpy(dtype=float) / 1000.0
            yield np.where(conv, cells.codes(df), -1), t

    n, n_conv = aggregate.group_sums(converged, cells.size)
    median = aggregate.median(times, cells.size, counts=n_conv.astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        agg = cells.frame(time_s=median, share=n_conv / n)
    agg = agg[n > 0].reset_index(drop=True)
    xlev, ylev = shown.levels[DR], shown.levels[BW]
    dirty_label, dirty_fmt = dirty_axis(shown)
    panels = {}
    for (r, c), part in _panel_groups(agg, row):
        values, missing = _cell_tables(part, "time_s", BW, DR, ylev, xlev)
        share, _ = _cell_tables(part, "share", BW, DR, ylev, xlev)
        partial = (share > 0) & (share < 1)
        text = _texts(values, _fmt_seconds)
        panels[(r, c)] = Panel(values, missing, partial, text, share)
    finite = agg["time_s"].dropna()
    vmin = max(finite.min(), 1e-3) if len(finite) else 1.0
    vmax = max(finite.max(), vmin * 10) if len(finite) else 10.0
    present = shown.levels.get("status", [])
    ways_out = "".join(f", or {label}" for s, label in WAYS_OUT.items() if s in present)
    legend = [
        Patch(facecolor=NEVER_COLOR, hatch=HATCH, edgecolor="#8c8c8c", lw=0.5,
              label=f"never converged (cancelled at max_time / max_iterations{ways_out})"),
    ]  # fmt: skip
    if _dense(len(xlev), len(ylev)):
        legend += [
            Line2D([], [], color="black", ls="--", lw=0.9,
                   label="boundary: some pooled scenarios converge"),
            Line2D([], [], color="#555555", ls="-", lw=1.1,
                   label="boundary: all converge (white line)"),
        ]  # fmt: skip
    else:
        legend.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", mew=0.5,
                             label="converged in some pooled scenarios only"))  # fmt: skip
    fig = _heatmap_grid(
        panels, rows, cols, xlev, ylev, style=style,
        cmap=plt.get_cmap(SEQUENTIAL), norm=mcolors.LogNorm(vmin, vmax),
        xlabel=dirty_label, ylabel="pre-copy bandwidth (Gbit/s)",
        xfmt=dirty_fmt, yfmt=fmt_bitrate, col_title=lambda c: f"limit {fmt_ms(c)}",
        row_title=_row_title(row), cbar_label="total migration time (s), median of converged",
        legend=legend,
    )  # fmt: skip
    _add_note(fig, style, pooled_note(shown, [row] if row else []) + _limits_note(src.axes(), cols))
    return fig


def _texts(values: np.ndarray, fmt: callable) -> np.ndarray:
    """Cell labels ("" for NaN); grids are small (cells, not scenarios), a loop is fine."""
    flat = ["" if np.isnan(v) else fmt(v) for v in values.ravel()]
    return np.array(flat, dtype=object).reshape(values.shape)


def _fmt_seconds(s: float) -> str:
    if np.isnan(s):
        return ""
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def _panel_groups(agg: pd.DataFrame, row: str | None) -> Iterator[tuple[tuple, pd.DataFrame]]:
    keys = [row, DL] if row else [DL]
    for key, part in agg.groupby(keys, observed=True, sort=True):
        yield ((key[0], key[1]) if row else (None, key[0])), part


def _exceeded(df: pd.DataFrame) -> np.ndarray:
    """Downtime over the limit as 1.0 or 0.0; NaN for a cancelled scenario (nothing to judge)."""
    return df["downtime_exceeded"].astype("Float64").astype(float).to_numpy()


def violation_share(summary: pd.DataFrame | Summary, style: FigStyle = FIG_REPORT) -> Figure:
    """Share of converged scenarios whose downtime exceeded the limit, per grid cell."""
    src = Summary.of(summary)
    row, rows, cols, where, shown, cells = _heatmap_cells(src, style)

    def judged_and_over() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for df in src.pieces(where):
            x = _exceeded(df)
            judged = ~np.isnan(x)
            yield cells.codes(df), np.stack([judged, np.where(judged, x, 0.0)])

    n, (n_judged, n_over) = aggregate.group_sums(judged_and_over, cells.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        agg = cells.frame(share=np.where(n_judged > 0, n_over / n_judged, np.nan))
    agg = agg[n > 0].reset_index(drop=True)
    xlev, ylev = shown.levels[DR], shown.levels[BW]
    dirty_label, dirty_fmt = dirty_axis(shown)
    panels = {}
    for (r, c), part in _panel_groups(agg, row):
        values, missing = _cell_tables(part, "share", BW, DR, ylev, xlev)
        text = _texts(values, _fmt_pct)
        panels[(r, c)] = Panel(values, missing, None, text)
    legend = [
        Patch(facecolor=NEVER_COLOR, hatch=HATCH, edgecolor="#8c8c8c", lw=0.5,
              label="no converged scenario (no downtime to judge)"),
    ]  # fmt: skip
    fig = _heatmap_grid(
        panels, rows, cols, xlev, ylev, style=style,
        cmap=sns.color_palette("rocket_r", as_cmap=True), norm=mcolors.Normalize(0, 1),
        xlabel=dirty_label, ylabel="pre-copy bandwidth (Gbit/s)",
        xfmt=dirty_fmt, yfmt=fmt_bitrate, col_title=lambda c: f"limit {fmt_ms(c)}",
        row_title=_row_title(row),
        cbar_label="converged scenarios with downtime > limit (%)",
        cbar_ticks=[0, 0.25, 0.5, 0.75, 1],
        cbar_ticklabels=["0 %", "25 %", "50 %", "75 %", "100 %"],
        legend=legend,
    )  # fmt: skip
    _add_note(fig, style, pooled_note(shown, [row] if row else []) + _limits_note(src.axes(), cols))
    return fig


def _fmt_pct(x: float) -> str:
    return "" if np.isnan(x) else f"{100 * x:.0f}"


# ---------------------------------------------------------------------------------------------
# Syncs and bytes against the dirty ratio


def _ratio_bins(
    distinct: Sequence[float], most: int = 40
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """(bin index of a ratio, bin centres) on a log scale; the exact values when there are
    few.  `distinct`: every ratio that will be binned, ascending."""
    distinct = np.asarray(distinct, dtype=float)
    if distinct.size <= most:
        return lambda ratio: np.searchsorted(distinct, ratio), distinct
    edges = np.logspace(np.log10(distinct[0]), np.log10(distinct[-1]), most + 1)

    def index(ratio: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, ratio, side="right") - 1, 0, most - 1)

    return index, np.sqrt(edges[:-1] * edges[1:])


Keyed = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]


def _quantile_lines(src: Summary, where: Callable, ratios: list, keyed: Keyed, n_keys: int):
    """Quartiles of y per (line, ratio bin): columns _key, _bin, q25, q50, q75, n, ratio.

    `keyed(piece)` gives every row's line number (-1: not drawn) and its y value.
    """
    columns = ["_key", "_bin", "q25", "q50", "q75", "n", RATIO]
    if not ratios:
        return pd.DataFrame(columns=columns)
    binned, centres = _ratio_bins(ratios)
    nb = len(centres)

    def pieces() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for df in src.pieces(where):
            key, y = keyed(df)
            b = binned(df[RATIO].to_numpy(dtype=float))
            yield np.where(key >= 0, key * nb + b, -1), y.astype(float)

    groups = n_keys * nb
    counts = aggregate.group_counts(pieces, groups)
    q = aggregate.group_quantiles(pieces, groups, [0.25, 0.5, 0.75], counts=counts)
    g = np.flatnonzero(counts)
    out = pd.DataFrame({"_key": g // nb, "_bin": g % nb, "q25": q[g, 0], "q50": q[g, 1],
                        "q75": q[g, 2], "n": counts[g]})  # fmt: skip
    out[RATIO] = centres[out["_bin"].to_numpy()]
    return out


LINESTYLES = ("-", "--", ":", "-.")


def _log_axis(axis: mpl.axis.Axis, fmt: callable, base: float = 10.0) -> None:
    """Log ticks that read as plain numbers; 1-2-5 steps when the range is under 2 decades."""
    lo, hi = sorted(axis.get_view_interval())
    span = np.log10(hi / lo) if lo > 0 and hi > 0 else 10.0
    if base == 10.0 and span < 2.0:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        axis.set_major_locator(ticker.LogLocator(base=base, numticks=8))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _fig(style: FigStyle, report: tuple[float, float], wide: float, tall: float) -> Figure:
    """A figure of (share of report width, height) in reports, `wide`/`tall` high in papers."""
    if style.name == "report":
        size = (style.width_in * report[0], report[1])
    else:
        size = (style.width_in, wide if style.name != "onecol" else tall)
    return plt.figure(figsize=size, layout="constrained")


def syncs_vs_ratio(summary: pd.DataFrame, style: FigStyle = FIG_REPORT) -> Figure:
    """Dirty syncs and data sent against dirty rate / bandwidth, by outcome (median, IQR).

    Colour: how the migration ended.  Line style: the row axis (auto_converge when swept),
    every other axis pooled.  Scenarios with dirty rate 0 have no ratio and are left out.
    """
    src = Summary.of(summary)
    split = row_axis(src.axes())
    where = Rows.where(RATIO, ">", 0)
    pos = src.axes(where)
    splits = pos.levels[split] if split else [0]
    statuses = list(STATUS_COLORS)

    def line(df: pd.DataFrame) -> np.ndarray:
        """One small integer per (status, split) line: no per-row strings."""
        status_code = pd.Index(statuses).get_indexer(df["status"])
        split_code = pd.Index(splits).get_indexer(df[split]) if split else 0
        return np.where(status_code >= 0, status_code * len(splits) + split_code, -1)

    values = {
        "dirty_sync_count": lambda df: df["dirty_sync_count"].to_numpy(dtype=float),
        "_data": lambda df: (
            df["transferred_bytes"].to_numpy(dtype=float) / df["ram_size_bytes"].to_numpy()
        ),
    }
    wide = style.name != "onecol"
    fig = _fig(style, (1.0, 4.0), 2.4, 3.9)
    axes = fig.subplots(1, 2, sharex=True) if wide else fig.subplots(2, 1, sharex=True)
    for ax, y, label in (
        (
            axes[0],
            "dirty_sync_count",
            _short(style, "dirty syncs (dirty-sync-count)", "dirty syncs (count)"),
        ),
        (
            axes[1],
            "_data",
            _short(style, f"data sent ({TIMES} guest RAM)", f"data sent ({TIMES} RAM)"),
        ),
    ):
        lines = _quantile_lines(
            src, where, pos.levels.get(RATIO, []), lambda df, y=y: (line(df), values[y](df)),
            len(statuses) * len(splits),
        )  # fmt: skip
        for si, status in enumerate(statuses):
            for k in range(len(splits)):
                part = lines[lines["_key"] == si * len(splits) + k]
                if part.empty:
                    continue
                color = STATUS_COLORS[status]
                ax.fill_between(part[RATIO], part["q25"], part["q75"], color=color, alpha=0.15,
                                lw=0)  # fmt: skip
                ax.plot(part[RATIO], part["q50"], color=color, ls=LINESTYLES[k % 4], marker="o",
                        ms=2.5)  # fmt: skip
        ax.axvline(1.0, color="#666666", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="major")
    axes[1].set_yscale("log")
    _log_axis(axes[1].yaxis, lambda v: f"{v:g}{TIMES}")
    _log_axis(axes[0].xaxis, lambda v: f"{v:g}")
    for ax in axes if wide else axes[-1:]:
        ax.set_xlabel(f"dirty rate {TIMES} page size / pre-copy bandwidth")
    present = set(pos.levels.get("status", []))
    handles = [Line2D([], [], color=c, marker="o", ms=2.5, label=STATUS_LABELS[s])
               for s, c in STATUS_COLORS.items() if s in present]  # fmt: skip
    handles.append(Line2D([], [], color="#666666", ls="--", lw=0.8, label="dirty rate = bandwidth"))
    if split:
        handles += [Line2D([], [], color="#555555", ls=LINESTYLES[k % 4],
                           label=_row_title(split)(v))
                    for k, v in enumerate(splits)]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(style, len(handles)))
    _add_note(
        fig, style, "Lines: median; bands: 25-75 %. " + pooled_note(pos, [split] if split else [])
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Remaining bytes per iteration for representative scenarios


def representative_scenarios(summary: pd.DataFrame | Summary, most: int = 5) -> pd.DataFrame:
    """Pick a few scenarios that show the range of behaviour, by a fixed, documented rule.

    1. Anchor every swept axis except the dirty rate at its lower-middle swept value
       (sorted distinct values, index (n - 1) // 2; booleans: off, the first value).
    2. Among the anchored scenarios with a dirty rate > 0, ordered by dirty rate, take: the
       smallest rate, the median one, the largest that converges, the smallest that does not
       converge and the largest; duplicates are dropped (so up to five).
    If the grid is not a full product and the anchor is empty, axes are released one at a
    time from the end of the parameter table until some scenarios match.
    """
    src = Summary.of(summary)
    moving = Rows.where(DR, ">", 0)
    axes = src.axes(moving)
    if axes.rows == 0:
        head = next(src.pieces(), None)
        empty = head.iloc[:0] if head is not None else pd.DataFrame(columns=["scenario_id"])
        return empty.assign(label=pd.Series(dtype=str))
    anchor_axes = [c for c in varying_axes(axes) if c != DR]
    anchors = {c: axes.levels[c][(axes.nunique(c) - 1) // 2] for c in anchor_axes}

    def first_per_rate(df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values([DR, "scenario_id"]).drop_duplicates(DR)

    for k in range(len(anchor_axes), -1, -1):
        found = []  # per piece, the first anchored scenario of every dirty rate
        for df in src.pieces(moving):
            mask = np.ones(len(df), dtype=bool)
            for c in anchor_axes[:k]:
                mask &= (df[c] == anchors[c]).to_numpy()
            if mask.any():
                found.append(first_per_rate(df[mask]))
        if found:
            break
    cand = first_per_rate(pd.concat(found))
    conv = cand["converged"].to_numpy()
    n = len(cand)
    picks = [0, (n - 1) // 2]
    if conv.any():
        picks.append(int(np.flatnonzero(conv)[-1]))
    if (~conv).any():
        picks.append(int(np.flatnonzero(~conv)[0]))
    picks.append(n - 1)
    chosen = cand.iloc[sorted(set(picks))[:most]].copy()
    dirty_label, dirty_fmt = dirty_axis(chosen)
    unit = dirty_label[dirty_label.index("(") + 1 : -1]
    chosen["label"] = [
        f"{dirty_fmt(r)} {unit} (ratio {q:.2g}), {STATUS_LABELS.get(str(s), str(s))}"
        for r, q, s in zip(chosen[DR], chosen[RATIO], chosen["status"], strict=True)
    ]
    chosen.attrs["anchor"] = {c: anchors[c] for c in anchor_axes[:k]}
    return chosen


def remaining_curves(
    iterations: pd.DataFrame, chosen: pd.DataFrame, style: FigStyle = FIG_REPORT
) -> Figure:
    """Remaining dirty bytes after each sync (log y) against sync number and time."""
    wide = style.name != "onecol"
    fig = _fig(style, (1.0, 4.3), 2.6, 4.2)
    axes = fig.subplots(1, 2, sharey=True) if wide else fig.subplots(2, 1, sharey=True)
    colors = sns.color_palette(SEQUENTIAL, max(len(chosen), 1))
    it = iterations[iterations["scenario_id"].isin(chosen["scenario_id"])]
    it = it.sort_values(["scenario_id", "dirty_sync_count"])
    handles = []
    for color, (_, sc) in zip(colors, chosen.iterrows(), strict=False):
        part = it[it["scenario_id"] == sc["scenario_id"]]
        if part.empty:
            continue
        y = part["remaining_bytes"].to_numpy(dtype=float)
        y = np.where(y > 0, y, np.nan)
        x_sync = part["dirty_sync_count"].to_numpy()
        x_time = part["time_ms"].to_numpy() / 1000.0
        end_marker = "o" if sc["converged"] else "X"
        for ax, x in zip(axes, (x_sync, x_time), strict=True):
            (h,) = ax.plot(x, y, color=color, marker=".", ms=3, label=sc["label"])
            ax.plot(x[-1:], y[-1:], ls="", marker=end_marker, color=color, ms=6, mec="black",
                    mew=0.5)  # fmt: skip
        handles.append(h)
    if not chosen.empty:
        thr = float(np.median(chosen["threshold_bytes"].to_numpy(dtype=float)))
        if thr > 0:
            for ax in axes:
                ax.axhline(thr, color="black", ls="--", lw=0.8)
            handles.append(Line2D([], [], color="black", ls="--", lw=0.8,
                                  label=f"switchover threshold ≈ {fmt_bytes(thr)}"))  # fmt: skip
    handles += [
        Line2D([], [], ls="", marker="o", color="#777777", mec="black", mew=0.5,
               label="switched over"),
        Line2D([], [], ls="", marker="X", color="#777777", mec="black", mew=0.5,
               label="cancelled"),
    ]  # fmt: skip
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="major")
    _log_axis(axes[0].yaxis, fmt_bytes, base=2.0)
    axes[0].set_ylabel(_short(style, "remaining dirty memory", "remaining dirty"))
    if wide:
        axes[1].set_ylabel("")
    axes[0].set_xlabel("dirty sync (dirty-sync-count)")
    axes[0].xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[1].set_xlabel("time since migrate (s)")
    fig.legend(handles=handles, loc="outside lower center", ncols=2 if wide else 1)
    anchor = chosen.attrs.get("anchor", {}) if not chosen.empty else {}
    note = ", ".join(f"{axis_name(c)} {fmt_value(c, v)}" for c, v in anchor.items())
    _add_note(fig, style, f"Scenarios at {note}; dirty rates picked by the rule in the caption."
              if note else "")  # fmt: skip
    return fig


# ---------------------------------------------------------------------------------------------
# Downtime


def downtime_vs_limit(summary: pd.DataFrame | Summary, style: FigStyle = FIG_REPORT) -> Figure:
    """Actual downtime against the limit: boxes per limit, and downtime/limit vs dirty ratio.

    Left: 5/25/50/75/95 % quantiles of downtime / limit for the converged scenarios of each
    swept limit, the share above the limit written on top.  When pre-copy was capped by
    max_bandwidth (the final copy then runs faster, at link speed) the boxes are split by
    that.  Right: median downtime / limit (band 25-75 %) against the dirty ratio, one line
    per limit.
    """
    src = Summary.of(summary)

    converged = Rows.where("converged", "true")

    def over(df: pd.DataFrame) -> np.ndarray:
        return df["downtime_ms"].to_numpy(dtype=float) / np.maximum(
            df[DL].to_numpy(dtype=float), 1e-9
        )

    seen = src.axes(converged)
    limits = seen.levels.get(DL, [])
    per_limit = Cells([DL], seen.levels)
    n_lim = len(limits)

    def boxes() -> Iterator[tuple[np.ndarray, np.ndarray]]:  # (capped, limit) groups
        for df in src.pieces(converged):
            capped = df[BW].to_numpy() < df[LINK].to_numpy() * 0.999
            yield capped * n_lim + per_limit.codes(df), over(df)

    counts = aggregate.group_counts(boxes, 2 * n_lim)
    box_q = aggregate.group_quantiles(boxes, 2 * n_lim, [0.05, 0.25, 0.5, 0.75, 0.95],
                                      counts=counts)  # fmt: skip
    has = {False: counts[:n_lim].sum() > 0, True: counts[n_lim:].sum() > 0}
    wide = style.name != "onecol"
    fig = _fig(style, (1.0, 4.2), 2.5, 4.4)
    axes = fig.subplots(1, 2, sharey=True) if wide else fig.subplots(2, 1)
    ax = axes[0]
    groups = [False, True] if has[True] and has[False] else [bool(has[True])]
    width = 0.7 / len(groups)
    colors = {False: OKABE_ITO[0], True: OKABE_ITO[3]}
    names = {False: "pre-copy at link speed", True: "pre-copy capped by max_bandwidth"}
    handles = []
    for gi, g in enumerate(groups):
        shown = [k for k in range(n_lim) if counts[g * n_lim + k]]
        stats = [dict(zip(("whislo", "q1", "med", "q3", "whishi"), box_q[g * n_lim + k],
                          strict=True), fliers=[]) for k in shown]  # fmt: skip
        pos = [k + (gi - (len(groups) - 1) / 2) * width for k in shown]
        if stats:
            ax.bxp(stats, positions=pos, widths=width * 0.85, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": colors[g], "alpha": 0.6, "lw": 0.6},
                   medianprops={"color": "black", "lw": 1.0}, whiskerprops={"lw": 0.6},
                   capprops={"lw": 0.6})  # fmt: skip
            handles.append(Patch(facecolor=colors[g], alpha=0.6, label=names[g]))
    for a in axes:
        a.axhline(1.0, color=OKABE_ITO[1], lw=1.4, zorder=0.5)
    handles.append(Line2D([], [], color=OKABE_ITO[1], lw=1.4, label="downtime = limit"))
    ax.set_yscale("log")

    def exceeded() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for df in src.pieces(converged):
            x = _exceeded(df)
            yield np.where(np.isnan(x), -1, per_limit.codes(df)), np.nan_to_num(x)

    judged, over_limit = aggregate.group_sums(exceeded, n_lim)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(judged > 0, over_limit / judged, np.nan)
    for k, s in enumerate(share):
        if not np.isnan(s):
            ax.text(k, 1.0, f"{100 * s:.0f} %\nover", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=style.font_pt * 0.75, color=OKABE_ITO[1],
                    linespacing=1.0)  # fmt: skip
    ax.set_xticks(range(len(limits)), [f"{v:g}" for v in limits])
    ax.set_xlim(-0.6, len(limits) - 0.4)
    ax.set_xlabel("downtime limit (ms)")
    ax.set_ylabel(
        _short(style, "actual downtime / limit (5-95 % of converged)", "downtime / limit")
    )
    ax.grid(True, axis="y")

    ax = axes[1]
    shown = _pick_levels(limits, 4)  # more lines than that are unreadable
    drawn = converged & Rows.where(RATIO, ">", 0) & Rows.where(DL, "in", shown)
    ratios = src.axes(drawn).levels.get(RATIO, [])
    lines = _quantile_lines(
        src, drawn, ratios, lambda df: (pd.Index(shown).get_indexer(df[DL]), over(df)),
        len(shown),
    )  # fmt: skip
    pal = sns.color_palette(SEQUENTIAL, len(shown))
    for i, (color, lim) in enumerate(zip(pal, shown, strict=True)):
        part = lines[lines["_key"] == i]
        if part.empty:
            continue
        ax.fill_between(part[RATIO], part["q25"], part["q75"], color=color, alpha=0.12, lw=0)
        ax.plot(part[RATIO], part["q50"], color=color, marker="o", ms=2.5,
                label=f"{fmt_ms(lim)}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"dirty rate {TIMES} page size / pre-copy bandwidth")
    if not wide:
        ax.set_ylabel("downtime / limit")
        ax.set_yscale("log")
    ax.grid(True, which="major")
    title = "limit" if len(shown) == len(limits) else f"limit ({len(shown)} of {len(limits)})"
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title=title)
    _log_axis(axes[0].yaxis, lambda v: f"{v:g}{TIMES}")
    if not wide:
        _log_axis(axes[1].yaxis, lambda v: f"{v:g}{TIMES}")
    _log_axis(axes[1].xaxis, lambda v: f"{v:g}")
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_cols(style, len(handles)))
    _add_note(fig, style, pooled_note(seen, []))
    return fig


def expected_vs_actual(summary: pd.DataFrame | Summary, style: FigStyle = FIG_REPORT) -> Figure:
    """QEMU's last expected-downtime against the actual downtime (2-D histogram, log-log)."""
    src = Summary.of(summary)

    def points() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for df in src.pieces(lambda df: df["converged"].to_numpy(dtype=bool)):
            x = np.clip(df["expected_downtime_ms"].to_numpy(dtype=float), 0.1, None)
            y = np.clip(df["downtime_ms"].to_numpy(dtype=float), 0.1, None)
            yield x, y

    n, least, most = 0, np.inf, -np.inf
    for x, y in points():
        if len(x):
            n += len(x)
            least = min(least, x.min(), y.min())
            most = max(most, x.max(), y.max())
    side = style.width_in * (0.62 if style.name == "report" else 1.0)
    fig = plt.figure(figsize=(side, side * 0.88), layout="constrained")
    ax = fig.subplots()
    if n:
        lo = math.floor(np.log10(least) * 4) / 4
        hi = math.ceil(np.log10(most) * 4) / 4 + 0.01
        edges = np.logspace(lo, hi, int((hi - lo) * 12) + 2)
        counts = np.zeros((len(edges) - 1, len(edges) - 1))
        above = 0
        for x, y in points():
            counts += np.histogram2d(x, y, bins=[edges, edges])[0]
            above += np.count_nonzero(y > x)
        above /= n
        ratio = aggregate.median(
            lambda: ((np.zeros(len(x), dtype=np.int64), y / x) for x, y in points()), 1,
            counts=np.array([n]),
        )[0]  # fmt: skip
        mesh = ax.pcolormesh(edges, edges, np.ma.masked_equal(counts.T, 0), cmap=SEQUENTIAL,
                             norm=mcolors.LogNorm(1, max(counts.max(), 10)),
                             rasterized=True)  # fmt: skip
        cbar = fig.colorbar(mesh, ax=ax, pad=0.01)
        cbar.set_label("converged scenarios per cell (count)")
        ax.plot(edges[[0, -1]], edges[[0, -1]], color=OKABE_ITO[1], lw=1.0, ls="--")
        ax.set_title(f"median actual / expected {ratio:.2g}; {100 * above:.0f} % above the line\n"
                     "(above: real downtime longer than QEMU expected)",
                     fontsize=style.font_pt * 0.8, color="#444444")  # fmt: skip
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(edges[0], edges[-1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    fmt = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.yaxis.set_major_formatter(fmt)
    ax.set_xlabel("QEMU expected-downtime, last reported (ms)")
    ax.set_ylabel("actual downtime (ms)")
    ax.set_aspect("equal")
    _add_note(fig, style, "Converged scenarios only; every swept axis pooled.")
    return fig


# ---------------------------------------------------------------------------------------------
# Planner heatmaps


#: What each planner heatmap shows: (the table's requirement column, its y axis).
PLAN_VIEWS = {
    "downtime": ("min_downtime_limit_ms", BW),
    "bandwidth": ("min_bandwidth_bytes_per_s", DL),
}


class PlanCells:
    """A planner table reduced to its heatmap, part by part: the worst case over the pooled
    axes per (row axis, y, dirty rate), i.e. the largest requirement, "never" if any is.

    `columns`, `nunique` and `pages` describe the whole table (its key columns, their
    number of values, the page sizes), so the layout is known before the first part.
    """

    def __init__(self, kind: str, columns: Sequence[str], nunique: Callable[[str], int],
                 pages: Sequence[float] | None) -> None:  # fmt: skip
        self.value, self.y = PLAN_VIEWS[kind]
        axes = (*PARAM_COLUMNS, AID)
        self.group_cols = [c for c in columns if c in axes and c not in (DR, DL)
                           and c != self.y and nunique(c) > 1]  # fmt: skip
        rows = [c for c in ROW_PRIORITY if c in self.group_cols and nunique(c) <= MAX_ROW_VALUES]
        self.row = rows[0] if rows else None
        self.pages = list(pages) if pages is not None else None
        self.keys = ([self.row] if self.row else []) + [self.y, DR]
        self._parts: list[pd.DataFrame] = []
        self._found: set = set()  # requirement values met in the table

    @classmethod
    def of(cls, kind: str, table: pd.DataFrame) -> PlanCells:
        pages = table["page_size_bytes"].unique() if "page_size_bytes" in table else None
        cells = cls(kind, list(table.columns), lambda c: table[c].nunique(), pages)
        cells.add(table)
        return cells

    def add(self, table: pd.DataFrame) -> None:
        self._found.update(table[self.value].dropna().unique().tolist())
        self._parts.append(self._worst(table.assign(_never=table[self.value].isna()),
                                       self.value, "_never"))  # fmt: skip

    def _worst(self, df: pd.DataFrame, value: str, never: str) -> pd.DataFrame:
        return (
            df.groupby(self.keys, observed=True, sort=True)
            .agg(v=(value, "max"), never=(never, "any"))
            .reset_index()
        )

    @property
    def found(self) -> list:
        return sorted(self._found)

    def table(self) -> pd.DataFrame:
        parts = self._parts
        agg = parts[0].copy() if len(parts) == 1 else self._worst(pd.concat(parts), "v", "never")
        agg.loc[agg["never"], "v"] = np.nan
        return agg


def _planner_grid(
    cells: PlanCells,
    style: FigStyle,
    ylabel: str,
    yfmt: callable,
    levels: list,
    level_fmt: callable,
    cell_fmt: callable,
    cbar_label: str,
    never_label: str,
) -> Figure:
    """Facet columns: the row axis (see row_axis); other pooled axes take the worst case."""
    row, y, group_cols = cells.row, cells.y, cells.group_cols
    agg = cells.table()
    # colour by level index so each swept value gets one clear colour
    idx = pd.Series(np.arange(len(levels), dtype=float), index=levels)
    agg["k"] = agg["v"].map(idx)
    xlev, ylev = _levels(agg[DR]), _levels(agg[y])
    dirty_label, dirty_fmt = _dirty_unit(cells.pages or [4096])
    cols = _levels(agg[row]) if row else [None]
    panels = {}
    for c in cols:
        part = agg[agg[row] == c] if row else agg
        values, missing = _cell_tables(part, "k", y, DR, ylev, xlev)
        text = np.array(
            [["" if np.isnan(k) else cell_fmt(levels[int(k)]) for k in line] for line in values],
            dtype=object,
        ).reshape(values.shape)
        panels[(0, c)] = Panel(values, missing, None, text)
    n = len(levels)
    cmap = mcolors.ListedColormap(sns.color_palette(SEQUENTIAL, n)) if n else plt.get_cmap()
    norm = mcolors.BoundaryNorm(np.arange(n + 1) - 0.5, max(n, 1))
    ticks_idx = _thin(n, 12)
    fig = _heatmap_grid(
        panels, [0], cols, xlev, ylev, style=replace(style, max_facet_cols=len(cols)),
        cmap=cmap, norm=norm, xlabel=dirty_label, ylabel=ylabel,
        xfmt=dirty_fmt, yfmt=yfmt,
        col_title=_row_title(row) if row else (lambda c: ""),
        row_title=None, cbar_label=cbar_label, cbar_ticks=list(ticks_idx),
        cbar_ticklabels=[level_fmt(levels[i]) for i in ticks_idx],
        legend=[Patch(facecolor=NEVER_COLOR, hatch=HATCH, edgecolor="#8c8c8c", lw=0.5,
                      label=never_label)],
        panel_height=min(3.4, 0.28 * len(ylev) + 0.8) if style.name == "report" else None,
    )  # fmt: skip
    pooled = [c for c in group_cols if c != row]
    if pooled:
        names = ", ".join(axis_name(c) for c in pooled)
        note = f"Worst case over {names} (the largest requirement; none if any never converges)."
    else:
        note = ""
    _add_note(fig, style, note)
    return fig


def _plain(v: float) -> str:
    return f"{v:g}"


def _plain_number(v: float) -> str:
    """3-4 significant digits without exponents: 0.5, 26.1, 4640, 10000."""
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def planner_downtime_heatmap(
    table: pd.DataFrame | PlanCells,
    levels: Sequence[float] | None = None,
    style: FigStyle = FIG_REPORT,
) -> Figure:
    """Smallest swept downtime limit that converges, per (bandwidth, dirty rate).

    ``table``: the planner table, or its :class:`PlanCells` gathered part by part.
    ``levels``: the swept downtime limits (default: those found in the table).
    """
    cells = table if isinstance(table, PlanCells) else PlanCells.of("downtime", table)
    levels = sorted(levels if levels is not None else cells.found)
    return _planner_grid(
        cells, style, "pre-copy bandwidth (Gbit/s)", fmt_bitrate,
        levels, _plain, _plain, "smallest downtime limit that converges (ms)",
        f"no swept limit (≤ {fmt_ms(max(levels))}) converges" if levels else "never converges",
    )  # fmt: skip


def planner_bandwidth_heatmap(
    table: pd.DataFrame | PlanCells,
    levels: Sequence[float] | None = None,
    style: FigStyle = FIG_REPORT,
) -> Figure:
    """Smallest swept pre-copy bandwidth that converges, per (downtime limit, dirty rate).

    ``table``: the planner table, or its :class:`PlanCells` gathered part by part.
    ``levels``: the swept pre-copy bandwidths (default: those found in the table).
    """
    cells = table if isinstance(table, PlanCells) else PlanCells.of("bandwidth", table)
    levels = sorted(levels if levels is not None else cells.found)
    return _planner_grid(
        cells, style, "downtime limit (ms)",
        lambda v: f"{v:g}", levels, fmt_bitrate, fmt_bitrate,
        "smallest pre-copy bandwidth that converges (Gbit/s)",
        f"no swept bandwidth (≤ {fmt_bitrate(max(levels))} Gbit/s) converges"
        if levels else "never converges",
    )  # fmt: skip

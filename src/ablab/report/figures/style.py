"""The figures' look, shared by every family: the report's rcParams (:data:`STYLE`),
one colour per variant in every figure (:func:`variant_colors`), and the layout helpers
(panels, margins, colour bars, a legend below the axes). Figures are built without pyplot
(``matplotlib.figure.Figure``: no global state, no GUI backend) with large fonts for print;
matplotlib is imported where a figure is built, not with this module."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis, Variant


STYLE = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 16,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "ablab",  # stable SVG ids
    "svg.fonttype": "none",
}

PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
]

def styled(fn: Callable) -> Callable:
    """Build the figure inside the report's style (rcParams are read at creation)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper

def variant_colors(a: StudyAnalysis) -> dict[str, str]:
    """The fixed variant → colour mapping (plan order; cycles past 10 variants)."""
    if len(a.variants) <= len(PALETTE):
        return {v.label: PALETTE[i] for i, v in enumerate(a.variants)}
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return {v.label: matplotlib.colors.to_hex(cmap(i % 20)) for i, v in enumerate(a.variants)}

def short_label(a: StudyAnalysis, v: Variant) -> str:
    """``activation=relu, dataset=moons``: each factor's first column only."""
    if not a.factors:
        return v.label or a.name
    return ", ".join(f.describe(v.values) for f in a.factors)

def new_figure(**kwargs) -> Figure:
    """A ``matplotlib.figure.Figure`` (no pyplot, no global state)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)

def integer_locator():
    """Ticks at integers only (epochs)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)

def legend_below(fig: Figure, axes, ncol: int | None = None) -> None:
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        ncol = ncol or min(3, len(labels))
        fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
        rows = math.ceil(len(labels) / ncol)
        fig.subplots_adjust(bottom=min(0.5, (0.75 + 0.32 * rows) / fig.get_figheight()))

def validated_on_test(a: StudyAnalysis) -> bool:
    return any((v.config.get("dataset") or {}).get("validate_on") == "test" for v in a.variants)

def margins(fig: Figure, left: float, right: float, top: float, bottom: float,
             wgap: float = 0.0, hgap: float = 0.0) -> None:
    """Place a figure's subplots with fixed margins and gaps in inches (what
    ``tight_layout`` would find for the report's figures, without measuring every tick
    label: most of the time of drawing them); the legend below sets its own bottom."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    gs = fig.axes[0].get_subplotspec().get_gridspec()
    rows, cols = gs.get_geometry()
    panel_w = max(0.5, (width - left - right - wgap * (cols - 1)) / cols)
    panel_h = max(0.5, (height - top - bottom - hgap * (rows - 1)) / rows)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, wspace=wgap / panel_w, hspace=hgap / panel_h)

def panels(fig: Figure, rows: int, cols: int, left: float, right: float, top: float,
            bottom: float, wgap: float, hgap: float) -> np.ndarray:
    """A rows × cols grid of axes with fixed margins and gaps in inches, and ``right``
    inches kept free for a colorbar (see :func:`colorbar`): the panel figures' layout,
    computed instead of solved (matplotlib's constrained layout measures every tick
    label of every panel, most of the time of drawing a many-panel figure)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    panel_w = max(0.5, (width - left - right - wgap * (cols - 1)) / cols)
    panel_h = max(0.5, (height - top - bottom - hgap * (rows - 1)) / rows)
    return fig.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width,
        "top": 1 - top / height, "bottom": bottom / height,
        "wspace": wgap / panel_w, "hspace": hgap / panel_h,
    })

def colorbar(fig: Figure, image, top: float, bottom: float, label: str,
              shrink: float = 1.0) -> None:
    """A colorbar in the right margin :func:`panels` left (0.22 in wide, 0.3 in from
    the panels), spanning ``shrink`` of the panels' height (margins in inches)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    span = (height - top - bottom) / height
    low = bottom / height + span * (1 - shrink) / 2
    right_of_panels = 1 - fig.subplotpars.right
    cax = fig.add_axes((1 - right_of_panels + 0.3 / width, low, 0.22 / width, span * shrink))
    fig.colorbar(image, cax=cax, label=label)

def power_norm(gamma: float):
    """Colour scale for shares in [0, 1] that spreads the small ones."""
    from matplotlib.colors import PowerNorm

    return PowerNorm(gamma, vmin=0, vmax=1)

def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols

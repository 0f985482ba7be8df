"""Figures of each class: the test confusion matrices and per-class recall, with the
class names the dataset gives."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ablab.report.figures.style import (
    grid_shape,
    legend_below,
    new_figure,
    panels,
    short_label,
    styled,
    variant_colors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis
    from ablab.analysis.runs import Variant


#: Confusion matrices and per-class figures are drawn for at most this many classes.
MAX_CLASSES = 30


def _confusion_of(v: Variant) -> tuple[np.ndarray, list[str]] | None:
    """The variant's test confusion matrix summed over its done runs (rows: true classes;
    predictions that are no class left out) and the class names the dataset gave (else
    the class numbers); None without one."""
    total, names = None, None
    for row in v.done:
        final = row.get("final") or {}
        confusion = final.get("confusion")
        if not confusion:
            continue
        m = np.asarray(confusion, dtype=float)
        m = m[:, : m.shape[0]]
        if total is None:
            total = m
        elif total.shape == m.shape:
            total = total + m
        names = names or final.get("class_names")
    if total is None or total.shape[0] > MAX_CLASSES:
        return None
    k = total.shape[0]
    names = [str(n) for n in names] if names and len(names) == k else [str(i) for i in range(k)]
    return total, names


def _recall(confusion: np.ndarray) -> np.ndarray:
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(actual > 0, np.diag(confusion) / actual, np.nan)


@styled
def fig_confusion_matrices(a: StudyAnalysis) -> Figure | None:
    """Each variant's test confusion matrix, summed over its seeds, as shares of each
    true class; the classes named as the dataset names them."""
    items = [(v, c) for v in a.variants if (c := _confusion_of(v)) is not None]
    if not items:
        return None
    rows, cols = grid_shape(len(items))
    k = max(len(names) for _, (_, names) in items)
    side = max(2.6, min(6.0, 0.4 * k + 1.2))  # inches per panel
    left, right, top, bottom, wgap, hgap = 1.4, 1.8, 0.9, 0.9, 1.5, 1.2
    fig = new_figure(figsize=(left + right + cols * side + (cols - 1) * wgap,
                               top + bottom + rows * side + (rows - 1) * hgap))
    axes = panels(fig, rows, cols, left=left, right=right, top=top, bottom=bottom,
                   wgap=wgap, hgap=hgap)
    image = None
    for ax, (v, (m, names)) in zip(axes.ravel(), items, strict=False):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = m / m.sum(axis=1, keepdims=True)
        image = ax.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=45 if len(names) > 4 else 0, ha="right"
                      if len(names) > 4 else "center")
        ax.set_yticks(ticks, names)
        ax.grid(False)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    if m[i, j]:
                        ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=9,
                                color="white" if share[i, j] > 0.5 else "#333")
        ax.set_title(short_label(a, v), fontsize=11)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in axes.ravel()[len(items):]:
        ax.set_visible(False)
    fig.suptitle("Test confusion matrices (counts summed over seeds)")
    if image is not None:  # in the right margin, 0.35 in from the panels
        width, height = fig.get_figwidth(), fig.get_figheight()
        cax = fig.add_axes((1 - (right - 0.35) / width, bottom / height, 0.22 / width,
                            (height - top - bottom) / height))
        fig.colorbar(image, cax=cax, label="share of the true class")
    return fig


@styled
def fig_per_class(a: StudyAnalysis) -> Figure | None:
    """Test recall of each class per variant (from the confusion matrices summed over
    seeds): which classes a choice helps or hurts."""
    items = [(v, c) for v in a.variants if (c := _confusion_of(v)) is not None]
    if not items:
        return None
    names = max((n for _, (_, n) in items), key=len)
    k = len(names)
    colors = variant_colors(a)
    fig = new_figure(figsize=(max(8.0, 0.5 * k * max(1, len(items) / 2) + 3), 5.2))
    ax = fig.subplots()
    width = 0.8 / len(items)
    for i, (v, (m, _)) in enumerate(items):
        recall = _recall(m) * 100
        xs = np.arange(len(recall)) + (i - (len(items) - 1) / 2) * width
        ax.bar(xs, recall, width=width, color=colors[v.label], label=short_label(a, v))
    ax.set_xticks(np.arange(k), names, rotation=45 if k > 6 else 0,
                  ha="right" if k > 6 else "center")
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class test recall (summed over seeds)")
    fig.tight_layout()
    legend_below(fig, ax)
    return fig

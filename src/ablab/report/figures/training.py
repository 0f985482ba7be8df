"""Figures of training over time: learning curves (median and middle half of the
seeds), per-batch losses, the learning rate, and one run's curves for a notebook."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ablab.analysis.curves import (
    batch_curve,
    has_history,
    history_curve,
)
from ablab.report.figures.style import (
    integer_locator,
    legend_below,
    margins,
    new_figure,
    short_label,
    styled,
    validated_on_test,
    variant_colors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis


def _regression(a: StudyAnalysis) -> bool:
    """The study's runs predict a number (no accuracy in their histories)."""
    return (any(has_history(v, "val_rmse") for v in a.variants)
            and not any(has_history(v, "train_accuracy") for v in a.variants))


@styled
def fig_learning_curves(a: StudyAnalysis) -> Figure | None:
    """Train / validation loss and accuracy per epoch: median over seeds with the
    interquartile band (a summary per variant, not one line per run, so the figure costs
    the same at 5 seeds and at 500)."""
    colors = variant_colors(a)
    val = "validation (= TEST set)" if validated_on_test(a) else "validation"
    panels = [
        ("train_loss", "train loss (own loss)", "loss"),
        ("val_loss", f"{val} loss (own loss)", "loss"),
        ("train_accuracy", "train accuracy", "accuracy"),
        ("val_accuracy", f"{val} accuracy", "accuracy"),
    ]
    if _regression(a):  # no accuracy: the validation RMSE and R², in the target's units
        panels[2:] = [("val_rmse", f"{val} RMSE", "RMSE"), ("val_r2", f"{val} R²", "R²")]
    if not any(has_history(v, "train_loss") for v in a.variants):
        return None
    fig = new_figure(figsize=(13, 9.5))
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (key, title, ylabel) in zip(axes.ravel(), panels, strict=True):
        for v in a.variants:
            if not has_history(v, key):
                continue
            c = history_curve(v, key)
            scale = 100.0 if key.endswith("accuracy") else 1.0
            ax.plot(c["epochs"], c["median"] * scale, color=colors[v.label], lw=2,
                    label=short_label(a, v))
            ax.fill_between(c["epochs"], c["low"] * scale, c["high"] * scale,
                            color=colors[v.label], alpha=0.18, lw=0)
        ax.set_title(title)
        ax.set_ylabel("accuracy (%)" if ylabel == "accuracy" else ylabel)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(integer_locator())
    fig.suptitle("Learning curves (median over seeds, band = 25–75 % of seeds)")
    margins(fig, left=1.0, right=0.25, top=0.95, bottom=0.9, wgap=1.0, hgap=0.55)
    legend_below(fig, axes)
    return fig

@styled
def fig_batch_losses(a: StudyAnalysis) -> Figure | None:
    """Training loss of every batch (mean over seeds; long runs drawn as the means of
    consecutive blocks of batches, at most ``MAX_CURVE_POINTS`` points)."""
    colors = variant_colors(a)
    curves = [(v, batch_curve(v)) for v in a.variants]
    curves = [(v, c) for v, c in curves if len(c["mean"])]
    if not curves:
        return None
    fig = new_figure(figsize=(13, 6))
    ax = fig.subplots()
    positive = True
    for v, c in curves:
        ax.plot(c["steps"], c["mean"], color=colors[v.label], lw=1.5, label=short_label(a, v))
        positive &= bool(np.nanmin(c["mean"]) > 0)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("training batch (step)")
    ax.xaxis.set_major_locator(integer_locator())
    ax.set_ylabel("training loss (own loss)" + (", log scale" if positive else ""))
    ax.set_title("Per-batch training loss (mean over seeds)")
    margins(fig, left=1.0, right=0.25, top=0.55, bottom=0.9)
    legend_below(fig, [ax])
    return fig

@styled
def fig_learning_rate(a: StudyAnalysis) -> Figure | None:
    """The learning rate of each epoch."""
    colors = variant_colors(a)
    items = [(v, history_curve(v, "lr")) for v in a.variants if has_history(v, "lr")]
    if not items:
        return None
    fig = new_figure(figsize=(13, 5))
    ax = fig.subplots()
    for k, (v, c) in enumerate(items):
        ax.plot(c["epochs"], c["mean"], color=colors[v.label], lw=2.5,
                ls=["-", "--", ":", "-."][k % 4], label=short_label(a, v))
    values = np.concatenate([c["mean"] for _, c in items])
    values = values[np.isfinite(values) & (values > 0)]
    title = "Learning rate per epoch"
    if len(values) and values.max() / values.min() > 20:
        ax.set_yscale("log")
    elif len(values) and values.max() == values.min():
        ax.set_ylim(0, values.max() * 1.5)
        title += f" (constant: {values.max():g} in every variant)"
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(integer_locator())
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    margins(fig, left=1.0, right=0.25, top=0.55, bottom=0.9)
    legend_below(fig, [ax])
    return fig

@styled
def fig_run_curves(history: list[dict], title: str = "") -> Figure | None:
    """One run's learning curves (a ``RunResult``'s history): loss and accuracy per epoch,
    train and validation; None without history."""
    if not history:
        return None
    fig = new_figure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    epochs = [h.get("epoch") for h in history]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            ys = [h.get(f"{split}_{metric}") for h in history]
            if any(isinstance(y, (int, float)) for y in ys):
                ys = [y if isinstance(y, (int, float)) else np.nan for y in ys]
                ax.plot(epochs, ys, style, lw=2, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig

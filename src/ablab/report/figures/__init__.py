"""The report's figures, one function each: ``fig_*(analysis) -> matplotlib Figure`` (or
None when the study has nothing to draw), so a notebook can call them directly::

    >>> from ablab.analysis import analyze                           # doctest: +SKIP
    >>> fig = fig_learning_curves(analyze(store)); fig                # doctest: +SKIP

``style`` holds the look every figure shares; ``results``, ``training``, ``diagnostics``
and ``tuning`` one family of figures each; ``registry`` the list the report draws
(:data:`FIGURES`); ``files`` rendering and writing (:func:`save_figure`: PNG + SVG).
"""

from ablab.report.figures.classes import fig_confusion_matrices, fig_per_class
from ablab.report.figures.diagnostics import (
    fig_activation_histograms,
    fig_dead_units,
    fig_decision_boundaries,
    fig_gradient_norms,
    fig_zero_activations,
)
from ablab.report.figures.files import figure_bytes, save_figure, write_figure_files
from ablab.report.figures.registry import FIGURES, FigureSpec
from ablab.report.figures.results import fig_final_metrics, fig_interactions
from ablab.report.figures.style import PALETTE, STYLE, short_label, styled, variant_colors
from ablab.report.figures.training import (
    fig_batch_losses,
    fig_learning_curves,
    fig_learning_rate,
    fig_run_curves,
)
from ablab.report.figures.tuning import fig_tuning_sensitivity

__all__ = [
    "FIGURES",
    "PALETTE",
    "STYLE",
    "FigureSpec",
    "fig_activation_histograms",
    "fig_batch_losses",
    "fig_confusion_matrices",
    "fig_dead_units",
    "fig_decision_boundaries",
    "fig_final_metrics",
    "fig_gradient_norms",
    "fig_interactions",
    "fig_learning_curves",
    "fig_learning_rate",
    "fig_per_class",
    "fig_run_curves",
    "fig_tuning_sensitivity",
    "fig_zero_activations",
    "figure_bytes",
    "save_figure",
    "short_label",
    "styled",
    "variant_colors",
    "write_figure_files",
]

"""Every figure of the report, declared once: :data:`FIGURES`, in the report's order,
each with its file stem, the report section (topic) it goes in, its title, its caption
and the function that draws it. A new figure is one function in its family's module and
one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ablab.analysis.curves import MAX_CURVE_POINTS
from ablab.report.figures.classes import fig_confusion_matrices, fig_per_class
from ablab.report.figures.diagnostics import (
    fig_activation_histograms,
    fig_dead_units,
    fig_decision_boundaries,
    fig_gradient_norms,
    fig_zero_activations,
)
from ablab.report.figures.results import fig_final_metrics, fig_interactions
from ablab.report.figures.training import fig_batch_losses, fig_learning_curves, fig_learning_rate
from ablab.report.figures.tuning import fig_tuning_sensitivity

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem
    topic: str
    title: str
    caption: str
    make: Callable[[StudyAnalysis], Figure | None]


FIGURES = [
    FigureSpec("final_metrics", "Results", "Final metrics",
               "Mean and 95 % CI of test accuracy and test softmax cross-entropy per variant; "
               "open circles are single seeds. Only finished (done) runs.", fig_final_metrics),
    FigureSpec("confusion_matrices", "Results", "Confusion matrices",
               "Each variant's test confusion matrix, counts summed over its finished seeds; "
               "rows are true classes, named as the dataset names them.",
               fig_confusion_matrices),
    FigureSpec("per_class", "Results", "Per-class recall",
               "Share of each class's test examples predicted right, per variant (summed "
               "over seeds).", fig_per_class),
    FigureSpec("learning_curves", "Training", "Learning curves",
               "Median over seeds with the band holding the middle half of the seeds "
               "(25–75 %). Loss panels show each run's own loss.",
               fig_learning_curves),
    FigureSpec("batch_losses", "Training", "Per-batch training loss",
               "Training loss of every batch, mean over seeds (runs of more than "
               f"{MAX_CURVE_POINTS} batches: the mean of each block of consecutive batches).",
               fig_batch_losses),
    FigureSpec("learning_rate", "Training", "Learning rate",
               "Learning rate in effect at each epoch.", fig_learning_rate),
    FigureSpec("dead_units", "Diagnostics", "Dead units",
               "Share of a layer's units that are off for every input of the probe batch.",
               fig_dead_units),
    FigureSpec("zero_activations", "Diagnostics", "Zero-activation fraction (sparsity)",
               "Share of all activation values that are off; not the same as dead units.",
               fig_zero_activations),
    FigureSpec("activation_histograms", "Diagnostics", "Activation distributions",
               "Histogram of each activation layer's outputs at every epoch (fixed range).",
               fig_activation_histograms),
    FigureSpec("gradient_norms", "Diagnostics", "Gradient norms per layer",
               "Mean L2 norm of each layer's weight gradient per epoch, log scale.",
               fig_gradient_norms),
    FigureSpec("decision_boundaries", "Diagnostics", "Decision boundaries",
               "Model probabilities on the input plane with the test points (first seed).",
               fig_decision_boundaries),
    FigureSpec("interactions", "Results", "Interactions between factors",
               "Mean test accuracy and its 95 % CI (logit scale) for each level of one factor, "
               "one line per level of the other; non-parallel lines with a small ANOVA p are an "
               "interaction: compare the first factor within each level of the second.",
               fig_interactions),
    FigureSpec("tuning_sensitivity", "Tuning", "Sensitivity to the tuned parameters",
               "The tuning metric on validation data against each tuned parameter: every "
               "tuning trial is a dot (open: pruned, cross: diverged or failed), one colour "
               "per variant, a star at the setting each variant was evaluated with. A flat "
               "curve means the variant is robust to that parameter; a best value at the "
               "edge of the range means the range should be widened.",
               fig_tuning_sensitivity),
]

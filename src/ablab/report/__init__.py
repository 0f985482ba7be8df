"""The report: figures (matplotlib) and the self-contained HTML / Markdown report.

``write_report(store)`` writes ``report.html``, ``report.md`` and ``figures/``;
``write_tables(store)`` writes ``results.csv`` and ``summary.csv``; the
``fig_*`` functions return matplotlib Figures for notebooks.

The global matplotlib backend is the user's: figures are built without pyplot
(``matplotlib.figure.Figure``) and written with ``Figure.savefig``, which renders through
the Agg canvas whatever the backend, so importing ablab never switches off a notebook's
inline plots.
"""

from ablab.report.figures import (
    FIGURES,
    fig_activation_histograms,
    fig_batch_losses,
    fig_dead_units,
    fig_decision_boundaries,
    fig_final_metrics,
    fig_gradient_norms,
    fig_learning_curves,
    fig_learning_rate,
    fig_zero_activations,
    save_figure,
    variant_colors,
)
from ablab.report.tables import write_tables
from ablab.report.writer import (
    render_html,
    render_markdown,
    report_context,
    write_report,
)

__all__ = [
    "FIGURES",
    "fig_activation_histograms",
    "fig_batch_losses",
    "fig_dead_units",
    "fig_decision_boundaries",
    "fig_final_metrics",
    "fig_gradient_norms",
    "fig_learning_curves",
    "fig_learning_rate",
    "fig_zero_activations",
    "render_html",
    "render_markdown",
    "report_context",
    "save_figure",
    "variant_colors",
    "write_report",
    "write_tables",
]

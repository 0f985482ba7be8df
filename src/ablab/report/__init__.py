"""The report: figures (matplotlib) and the self-contained HTML / Markdown report.

``write_report(store)`` writes ``report.html``, ``report.md`` and ``figures/``;
``write_tables(store)`` writes ``results.csv`` and ``summary.csv``; the
``fig_*`` functions return matplotlib Figures for notebooks.

The global matplotlib backend is the user's: figures are built without pyplot
(``matplotlib.figure.Figure``) and written with ``Figure.savefig``, which renders through
the Agg canvas whatever the backend, so importing ablab never switches off a notebook's
inline plots.

The names below are imported from their modules when first used (PEP 562):
``from ablab.report import write_tables`` (the runner, while a study runs) loads neither
matplotlib nor statsmodels, and matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from ablab.lazy import lazy_package

#: module (under ablab.report) → the public names it gives this package
_EXPORTS = {
    "figures": ("FIGURES", "fig_activation_histograms", "fig_batch_losses", "fig_dead_units",
                "fig_decision_boundaries", "fig_final_metrics", "fig_gradient_norms",
                "fig_learning_curves", "fig_learning_rate", "fig_zero_activations",
                "save_figure", "variant_colors"),
    "tables": ("write_tables",),
    "writer": ("render_html", "render_markdown", "report_context", "write_report"),
}

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), _EXPORTS)

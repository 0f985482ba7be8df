"""Analysis: aggregation over seeds, statistical tests, verdicts, methodology warnings.

Pure functions of the stored runs; :func:`analyze` reads a study directory and returns a
:class:`StudyAnalysis` holding everything the report says.

The names below are imported from their modules when first used (PEP 562), so that
``from ablab.analysis import history_metrics`` (the runner, for every finished run) loads
numpy only, not scipy, pandas and statsmodels.
"""

from __future__ import annotations

from ablab.lazy import lazy_package

#: module (under ablab.analysis) → the public names it gives this package
_EXPORTS = {
    "checks": ("methodology_warnings", "warn_confounds", "warn_few_seeds",
               "warn_loss_differs", "warn_noise", "warn_test_selection"),
    "comparison": ("Comparison", "Ranking", "decide_family"),
    "compare": ("DEFAULT_MARGIN", "compare_all", "compare_factor",
                "rank_factor"),
    "interactions": ("Interaction", "find_interactions", "interaction_sentence"),
    "methods": ("methods_used",),
    "power": ("detectable_difference", "seeds_needed"),
    "runs": ("Factor", "Variant", "build_factors", "build_variants", "history_metrics"),
    "sequential": ("Design", "apply_design", "load_design"),
    "stats": ("TwoSample", "bootstrap_ci", "cohens_d", "cohens_dz", "compact_letters",
              "compare_samples", "decision_levels", "describe", "holm", "mean_ci_in_scale",
              "metric_scale", "probability_of_improvement"),
    "study_analysis": ("StudyAnalysis", "analyze", "analyze_runs", "load_runs"),
    "summaries": ("study_tables",),
    "tables": ("mean_ci",),
    "verdicts": ("format_p", "ranking_sentence", "status_line", "terminal_lines", "verdict"),
}

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), _EXPORTS)

"""Analysis: aggregation over seeds, statistical tests, verdicts, methodology warnings.

Pure functions of the stored runs; :func:`analyze` reads a study directory and returns a
:class:`StudyAnalysis` holding everything the report says.

The names below are imported from their modules when first used (PEP 562), so that
``from ablab.analysis import history_metrics`` (the runner, for every finished run) loads
numpy only, not scipy, pandas and statsmodels.
"""

from __future__ import annotations

import importlib
import importlib.util

#: module (under ablab.analysis) → the public names it gives this package
_EXPORTS = {
    "checks": ("methodology_warnings", "warn_confounds", "warn_few_seeds",
               "warn_loss_differs", "warn_noise", "warn_test_selection"),
    "compare": ("DEFAULT_MARGIN", "Comparison", "Ranking", "compare_all", "compare_factor",
                "decide_family", "rank_factor"),
    "interactions": ("Interaction", "find_interactions", "interaction_sentence"),
    "methods": ("methods_used",),
    "power": ("detectable_difference", "seeds_needed"),
    "runs": ("Factor", "Variant", "build_factors", "build_variants", "history_metrics"),
    "sequential": ("Design", "apply_design", "load_design"),
    "stats": ("TwoSample", "bootstrap_ci", "cohens_d", "cohens_dz", "compact_letters",
              "compare_samples", "decision_levels", "describe", "holm", "mean_ci_in_scale",
              "metric_scale", "probability_of_improvement"),
    "study_analysis": ("StudyAnalysis", "analyze", "analyze_runs", "load_runs",
                       "study_tables"),
    "tables": ("mean_ci",),
    "verdicts": ("format_p", "ranking_sentence", "status_line", "terminal_lines", "verdict"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")  # a submodule
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

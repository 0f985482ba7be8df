"""Analysis: aggregation over seeds, statistical tests, verdicts, methodology warnings.

Pure functions of the stored runs; :func:`analyze` reads a study directory and returns a
:class:`StudyAnalysis` holding everything the report says.
"""

from ablab.analysis.checks import (
    methodology_warnings,
    warn_confounds,
    warn_few_seeds,
    warn_loss_differs,
    warn_noise,
    warn_test_selection,
)
from ablab.analysis.compare import (
    DEFAULT_MARGIN,
    Comparison,
    Ranking,
    compare_all,
    compare_factor,
    decide_family,
    rank_factor,
)
from ablab.analysis.interactions import Interaction, find_interactions, interaction_sentence
from ablab.analysis.methods import methods_used
from ablab.analysis.power import detectable_difference, seeds_needed
from ablab.analysis.runs import Factor, Variant, build_factors, build_variants, history_metrics
from ablab.analysis.sequential import Design, apply_design, load_design
from ablab.analysis.stats import (
    TwoSample,
    bootstrap_ci,
    cohens_d,
    cohens_dz,
    compact_letters,
    compare_samples,
    decision_levels,
    describe,
    holm,
    mean_ci_in_scale,
    metric_scale,
    probability_of_improvement,
)
from ablab.analysis.study_analysis import (
    StudyAnalysis,
    analyze,
    analyze_runs,
    load_runs,
    study_tables,
)
from ablab.analysis.tables import mean_ci
from ablab.analysis.verdicts import (
    format_p,
    ranking_sentence,
    status_line,
    terminal_lines,
    verdict,
)

__all__ = [
    "DEFAULT_MARGIN",
    "Design",
    "Interaction",
    "apply_design",
    "decide_family",
    "decision_levels",
    "detectable_difference",
    "find_interactions",
    "interaction_sentence",
    "load_design",
    "mean_ci_in_scale",
    "methods_used",
    "metric_scale",
    "probability_of_improvement",
    "seeds_needed",
    "terminal_lines",
    "Comparison",
    "Factor",
    "Ranking",
    "StudyAnalysis",
    "TwoSample",
    "Variant",
    "analyze",
    "analyze_runs",
    "bootstrap_ci",
    "build_factors",
    "build_variants",
    "cohens_d",
    "cohens_dz",
    "compact_letters",
    "compare_all",
    "compare_factor",
    "compare_samples",
    "describe",
    "format_p",
    "history_metrics",
    "holm",
    "load_runs",
    "mean_ci",
    "methodology_warnings",
    "rank_factor",
    "ranking_sentence",
    "status_line",
    "study_tables",
    "verdict",
    "warn_confounds",
    "warn_few_seeds",
    "warn_loss_differs",
    "warn_noise",
    "warn_test_selection",
]

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
from ablab.analysis.compare import Comparison, Ranking, compare_all, compare_factor, rank_factor
from ablab.analysis.runs import Factor, Variant, build_factors, build_variants, history_metrics
from ablab.analysis.stats import (
    TwoSample,
    bootstrap_ci,
    cohens_d,
    cohens_dz,
    compact_letters,
    compare_samples,
    describe,
    holm,
)
from ablab.analysis.study_analysis import (
    StudyAnalysis,
    analyze,
    analyze_runs,
    load_runs,
    study_tables,
)
from ablab.analysis.tables import mean_ci
from ablab.analysis.verdicts import format_p, ranking_sentence, status_line, verdict

__all__ = [
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

"""Statistics over seeds: summaries with confidence intervals, two-sample comparisons
(paired or Welch), effect sizes, Holm's correction and compact letter displays.

Pure functions of plain numbers; every one agrees with scipy where scipy has the same
thing (the tests check it)::

    >>> describe([0.90, 0.92, 0.91])["ci_method"]
    'bootstrap'
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]

This module is the face of the statistics: the names below come from
:mod:`~ablab.analysis.intervals` (one sample), :mod:`~ablab.analysis.significance` (tests,
Holm, letters), :mod:`~ablab.analysis.effect_sizes`, :mod:`~ablab.analysis.scales` and,
for a named metric's scale, :mod:`~ablab.analysis.outcomes`.
"""

from __future__ import annotations

from ablab.analysis.effect_sizes import cohens_d, cohens_dz, probability_of_improvement
from ablab.analysis.intervals import (
    BOOTSTRAP_BELOW_N,
    SKEW_LIMIT,
    bootstrap_ci,
    describe,
    mean_ci_in_scale,
)
from ablab.analysis.outcomes import difference_scale, metric_scale
from ablab.analysis.scales import (
    BOUND_CORRECTION,
    DIFFERENCE_SCALES,
    SCALES,
    Scale,
    difference_scale_for,
    scale_for_range,
)
from ablab.analysis.significance import (
    ALPHA,
    CONSTANT_TOL,
    ScaledT,
    TwoSample,
    compact_letters,
    compare_samples,
    decision_levels,
    holm,
    paired_t,
    rank_test_floor,
    seeds_to_resolve,
    sign_test_floor,
    welch_t,
)
from ablab.analysis.tables import mean_ci

# scipy.stats (about a second to import) is imported in the functions that compute with
# it, not with these modules: results.csv and summary.csv of a study with no finished run
# yet (the runner writes them at the start) never need it.

__all__ = [
    "ALPHA", "BOOTSTRAP_BELOW_N", "BOUND_CORRECTION", "CONSTANT_TOL", "DIFFERENCE_SCALES",
    "SCALES", "SKEW_LIMIT", "Scale", "ScaledT", "TwoSample", "bootstrap_ci", "cohens_d",
    "cohens_dz", "compact_letters", "compare_samples", "decision_levels", "describe",
    "difference_scale", "difference_scale_for", "holm", "mean_ci", "mean_ci_in_scale",
    "metric_scale", "paired_t", "probability_of_improvement", "rank_test_floor", "scale_for_range",
    "seeds_to_resolve", "sign_test_floor", "welch_t",
]

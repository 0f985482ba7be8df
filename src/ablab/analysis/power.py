"""Power of a comparison with the seeds it has: the smallest difference the current seeds
detect at 80 % power with the observed noise, and the seeds needed to decide the observed
difference. ``statsmodels.stats.power`` does the work (``TTestPower`` for paired
comparisons — a one-sample t-test on the per-seed differences — and ``TTestIndPower``
for unpaired ones, Cohen 1988).

    >>> round(detectable_difference(0.01, 5, 0.05, paired=True), 4)
    0.0168
    >>> seeds_needed(0.01, 0.01, 0.05, paired=True)
    10
"""

from __future__ import annotations

import functools
import math
import warnings


def _quiet() -> None:
    """The solver's "failed to converge" warnings are answered by NaN / None below. The
    catch_warnings blocks alone are not enough: another thread leaving its own
    catch_warnings restores the filters it saved, and the warning then reaches the user's
    terminal (seen in the disk-full test). A module-level filter survives that; it must
    come before statsmodels' own "always show ConvergenceWarning" filter, so it is put in
    again after statsmodels is imported (which puts that filter first)."""
    warnings.filterwarnings("ignore", message=r"\s*Failed to converge", module="statsmodels")
    warnings.filterwarnings("ignore", message=r"\s*Failed to converge",
                            module=r"ablab\.analysis")


_quiet()


@functools.cache
def _solvers():
    """statsmodels' (TTestPower, TTestIndPower), imported when a power computation first
    runs: importing statsmodels takes about a second, and writing the tables or an
    analysis with nothing undecided never needs it."""
    from statsmodels.stats.power import TTestIndPower, TTestPower
    from statsmodels.tools import sm_exceptions  # noqa: F401  (statsmodels' own filters)

    _quiet()
    return TTestPower, TTestIndPower


POWER = 0.8
#: seeds_needed gives up beyond this many seeds (None: "more than MAX_SEEDS").
MAX_SEEDS = 10_000


def _noise(diff_std: float, paired: bool) -> float:
    """The standard deviation an effect size is measured in: of the paired differences,
    or (unpaired; ``diff_std`` = sqrt(var_a + var_b)) the pooled per-run std."""
    return diff_std if paired else diff_std / math.sqrt(2)


def detectable_difference(
    diff_std: float, n: int, alpha: float, paired: bool, power: float = POWER
) -> float:
    """The smallest true difference that ``n`` seeds per variant detect with probability
    ``power`` in a two-sided t-test at ``alpha``, given the noise ``diff_std`` (the std of
    the per-seed differences when paired; sqrt(var_a + var_b) when not). NaN when it
    cannot be computed (fewer than 2 seeds, no noise estimate)."""
    if not (n >= 2 and math.isfinite(diff_std) and math.isfinite(alpha) and 0 < alpha < 1):
        return math.nan
    if diff_std == 0:
        return 0.0
    _solvers()  # before catch_warnings: the filters it puts in must outlive the block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            effect = _solve_effect(paired, n, alpha, power)
        except (ValueError, RuntimeError):
            return math.nan
    effect = float(effect)
    return effect * _noise(diff_std, paired) if math.isfinite(effect) else math.nan


@functools.lru_cache(maxsize=1024)
def _solve_effect(paired: bool, n: int, alpha: float, power: float) -> float:
    """The standardized effect detected at ``power`` (a study's comparisons share a few
    (n, Holm level) pairs: each is solved once)."""
    TTestPower, TTestIndPower = _solvers()
    if paired:
        return TTestPower().solve_power(
            effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided"
        )
    return TTestIndPower().solve_power(
        effect_size=None, nobs1=n, ratio=1.0, alpha=alpha, power=power, alternative="two-sided"
    )


def seeds_needed(
    diff: float, diff_std: float, alpha: float, paired: bool, power: float = POWER
) -> int | None:
    """Seeds per variant for which a true difference ``diff`` would be detected with
    probability ``power`` (two-sided t-test at ``alpha``), given the observed noise.
    None when the difference is 0 or needs more than MAX_SEEDS."""
    if not (math.isfinite(diff) and math.isfinite(diff_std)) or diff == 0:
        return None
    if diff_std == 0:
        return 2
    effect = abs(diff) / _noise(diff_std, paired)
    TTestPower, TTestIndPower = _solvers()  # before catch_warnings (see _solvers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if paired:
                n = TTestPower().solve_power(
                    effect_size=effect, nobs=None, alpha=alpha, power=power,
                    alternative="two-sided",
                )
            else:
                n = TTestIndPower().solve_power(
                    effect_size=effect, nobs1=None, ratio=1.0, alpha=alpha, power=power,
                    alternative="two-sided",
                )
        except (ValueError, RuntimeError):
            return None
    n = float(n[0] if hasattr(n, "__len__") else n)
    if not math.isfinite(n) or n > MAX_SEEDS:
        return None
    return max(2, math.ceil(n))

"""The report's methods section: every statistical procedure the analysis used, with its
reference, in one place. :func:`methods_used` builds the list from what was computed:
one paragraph function per procedure (:data:`PARAGRAPHS`, in report order), each saying
nothing when its procedure was not used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ablab.analysis.interactions import METHOD as INTERACTION_METHOD
from ablab.analysis.sequential import METHOD as SEQUENTIAL_METHOD
from ablab.analysis.stats import SCALES
from ablab.analysis.variance import METHOD as VARIANCE_METHOD

REFERENCES = {
    "meta": "Paule & Mandel (1982), J. Res. NBS 87:377; Higgins et al. (2003), BMJ 327:557",
    "t": "Student (1908), Biometrika 6:1",
    "welch": "Welch (1947), Biometrika 34:28",
    "bootstrap": "Efron & Tibshirani (1993), An Introduction to the Bootstrap",
    "holm": "Holm (1979), Scand. J. Statist. 6:65",
    "tost": "Schuirmann (1987), J. Pharmacokin. Biopharm. 15:657",
    "power": "Cohen (1988), Statistical Power Analysis; statsmodels.stats.power",
    "poi": "Bouthillier et al. (2021), MLSys; Agarwal et al. (2021), NeurIPS (rliable); "
    "Mann & Whitney (1947), Ann. Math. Statist. 18:50",
    "effect": "Cohen (1988); Lakens (2013), Front. Psychol. 4:863",
    "letters": "Piepho (2004), J. Comput. Graph. Statist. 13:456",
    "anova": "Fisher (1925), Statistical Methods for Research Workers; statsmodels anova_lm",
    "sequential": "Lan & DeMets (1983), Biometrika 70:659; O'Brien & Fleming (1979), "
    "Biometrics 35:549",
    "variance": "Bouthillier et al. (2021), \"Accounting for variance in machine learning "
    "benchmarks\", MLSys; Searle, Casella & McCulloch (1992), Variance Components, ch. 4; "
    "Weerahandi (1993), J. Amer. Statist. Assoc. 88:899; Burdick, Borror & Montgomery (2005), "
    "Design and Analysis of Gauge R&R Studies, ch. 3",
}


@dataclass(frozen=True)
class Computed:
    """What the analysis computed, as far as the methods section needs to know."""

    margin: float | None
    any_paired: bool
    any_welch: bool
    interactions: bool
    sequential_looks: tuple[int, ...] | None = None
    alpha: float = 0.05
    primary_label: str = "test accuracy"
    #: labels of the outcomes judged beside the primary one
    other_outcomes: tuple[str, ...] = ()
    pooled: bool = False
    variance_sources: bool = False


def _intervals(c: Computed) -> str:
    return (
        f"Per-variant 95 % intervals: accuracies (in [0, 1]) — {SCALES['unit'].method}; "
        f"losses (≥ 0) — {SCALES['positive'].method}; computed with "
        "scipy.stats.ttest_1samp(...).confidence_interval(), so every interval lies inside "
        f"its metric's range by construction [{REFERENCES['t']}]. Samples under 5 seeds or "
        "skewed also get a seeded percentile bootstrap interval (scipy.stats.bootstrap), "
        f"which lies inside the data's range [{REFERENCES['bootstrap']}]."
    )


def _paired(c: Computed) -> str | None:
    if not c.any_paired:
        return None
    return (
        f"Paired comparisons (same seeds, same data split): {SCALES['difference'].method}"
        f"; for losses the plain paired t-test (scipy.stats.ttest_rel) [{REFERENCES['t']}]."
    )


def _welch(c: Computed) -> str | None:
    if not c.any_welch:
        return None
    return (
        "Unpaired comparisons: Welch's t-test (scipy.stats.ttest_ind, equal_var=False); "
        "for accuracies its estimate and standard error are carried to the atanh scale "
        f"by the delta method, so the interval stays in [−1, 1] [{REFERENCES['welch']}]."
    )


def _holm(c: Computed) -> str:
    return (
        f"Multiplicity: Holm's step-down correction within each factor × metric family at "
        f"α = {c.alpha:g}; the interval printed beside a verdict is the one at the level of "
        "the Holm step that decided it (α/(m − j)), so it excludes 0 exactly when Holm "
        f"rejects [{REFERENCES['holm']}]."
    )


def _equivalence(c: Computed) -> str | None:
    if c.margin is None:
        return None
    return (
        f"Equivalence: two one-sided tests (TOST) against the margin ±{c.margin * 100:g} pp "
        "(the study's equivalence_margin) at the same α, Holm-corrected; "
        "\"equivalent\" when the (1 − 2·level) interval lies inside the margin "
        f"[{REFERENCES['tost']}]."
    )


def _power(c: Computed) -> str:
    return (
        "Power of undecided comparisons: the smallest difference detected at 80 % power "
        "with the observed noise and current seeds, and the seeds needed to decide the "
        "observed difference, from statsmodels' TTestPower (paired) / TTestIndPower "
        "(with zero spread, every seed the same difference: the seeds at which the sign "
        f"test, unpaired the exact rank test, would decide) [{REFERENCES['power']}]."
    )


def _improvement(c: Computed) -> str:
    return (
        "Probability of improvement P(A > B): the Mann–Whitney U statistic over all pairs "
        "of runs divided by n_A·n_B (ties count half), with a seeded percentile bootstrap "
        f"interval (scipy.stats.bootstrap) [{REFERENCES['poi']}]."
    )


def _effect_sizes(c: Computed) -> str:
    return (
        "Effect sizes: Cohen's d (pooled std) for unpaired, d_z (mean / std of the "
        f"differences) for paired comparisons [{REFERENCES['effect']}]."
    )


def _rankings(c: Computed) -> str:
    return (
        "Rankings: compact letter display of the Holm-decided pairs "
        f"[{REFERENCES['letters']}]."
    )


def _interactions(c: Computed) -> str | None:
    return f"{INTERACTION_METHOD} [{REFERENCES['anova']}]." if c.interactions else None


def _sequential(c: Computed) -> str | None:
    if not c.sequential_looks:
        return None
    looks = ", ".join(str(n) for n in c.sequential_looks)
    return (
        f"{SEQUENTIAL_METHOD} Planned looks at {looks} seeds per variant "
        f"[{REFERENCES['sequential']}]."
    )


def _other_outcomes(c: Computed) -> str | None:
    if not c.other_outcomes:
        return None
    return (
        "Outcomes beyond " + c.primary_label + " (" + ", ".join(c.other_outcomes)
        + ") are judged by the same tests, each outcome its own Holm family per factor "
        "(its p-values are corrected among its own comparisons, not with the "
        f"{c.primary_label} ones); a comparison where one level records no value of a "
        "diagnostic (no ReLU-like layer for dead units) is not applicable, not zero."
    )


def _pooled(c: Computed) -> str | None:
    if not c.pooled:
        return None
    return (
        "A treatment compared within two or more contexts also gets its effect pooled "
        "over them: a random-effects meta-analysis (Paule–Mandel τ², statsmodels' "
        "combine_effects) of the per-context differences on each outcome's difference "
        "scale, with τ² and I² (I² ≥ 50 %: the effect depends on the context); the "
        "pooled p-values of one factor and outcome are Holm-corrected together "
        f"[{REFERENCES['meta']}]."
    )


def _variance_sources(c: Computed) -> str | None:
    return f"{VARIANCE_METHOD} [{REFERENCES['variance']}]." if c.variance_sources else None


#: The methods section's paragraphs, in report order.
PARAGRAPHS: tuple[Callable[[Computed], str | None], ...] = (
    _intervals, _paired, _welch, _holm, _equivalence, _power, _improvement, _effect_sizes,
    _rankings, _interactions, _sequential, _other_outcomes, _pooled, _variance_sources,
)


def methods_used(
    margin: float | None,
    any_paired: bool,
    any_welch: bool,
    interactions: bool,
    sequential_looks: tuple[int, ...] | None = None,
    alpha: float = 0.05,
    **computed,
) -> list[str]:
    """One sentence per procedure used, each ending with its reference; ``computed``: the
    other fields of :class:`Computed` (outcomes beyond the primary one, pooling, variance
    sources)."""
    c = Computed(margin, any_paired, any_welch, interactions, sequential_looks, alpha,
                 **computed)
    return [text for paragraph in PARAGRAPHS if (text := paragraph(c)) is not None]

"""The report's methods section: every statistical procedure the analysis used, with its
reference, in one place. :func:`methods_used` builds the list from what was computed."""

from __future__ import annotations

from ablab.analysis.stats import SCALES

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


def methods_used(
    margin: float | None,
    any_paired: bool,
    any_welch: bool,
    interactions: bool,
    sequential_looks: tuple[int, ...] | None = None,
    alpha: float = 0.05,
) -> list[str]:
    """One sentence per procedure, each ending with its reference."""
    out = [
        f"Per-variant 95 % intervals: accuracies (in [0, 1]) — {SCALES['unit'].method}; "
        f"losses (≥ 0) — {SCALES['positive'].method}; computed with "
        "scipy.stats.ttest_1samp(...).confidence_interval(), so every interval lies inside "
        f"its metric's range by construction [{REFERENCES['t']}]. Samples under 5 seeds or "
        "skewed also get a seeded percentile bootstrap interval (scipy.stats.bootstrap), "
        f"which lies inside the data's range [{REFERENCES['bootstrap']}].",
    ]
    if any_paired:
        out.append(
            f"Paired comparisons (same seeds, same data split): {SCALES['difference'].method}"
            f"; for losses the plain paired t-test (scipy.stats.ttest_rel) [{REFERENCES['t']}]."
        )
    if any_welch:
        out.append(
            "Unpaired comparisons: Welch's t-test (scipy.stats.ttest_ind, equal_var=False); "
            "for accuracies its estimate and standard error are carried to the atanh scale "
            f"by the delta method, so the interval stays in [−1, 1] [{REFERENCES['welch']}]."
        )
    out.append(
        f"Multiplicity: Holm's step-down correction within each factor × metric family at "
        f"α = {alpha:g}; the interval printed beside a verdict is the one at the level of "
        "the Holm step that decided it (α/(m − j)), so it excludes 0 exactly when Holm "
        f"rejects [{REFERENCES['holm']}]."
    )
    if margin is not None:
        out.append(
            f"Equivalence: two one-sided tests (TOST) against the margin ±{margin * 100:g} pp "
            "(the study's equivalence_margin) at the same α, Holm-corrected; "
            "\"equivalent\" when the (1 − 2·level) interval lies inside the margin "
            f"[{REFERENCES['tost']}]."
        )
    out += [
        "Power of undecided comparisons: the smallest difference detected at 80 % power "
        "with the observed noise and current seeds, and the seeds needed to decide the "
        "observed difference, from statsmodels' TTestPower (paired) / TTestIndPower "
        f"[{REFERENCES['power']}].",
        "Probability of improvement P(A > B): the Mann–Whitney U statistic over all pairs "
        "of runs divided by n_A·n_B (ties count half), with a seeded percentile bootstrap "
        f"interval (scipy.stats.bootstrap) [{REFERENCES['poi']}].",
        "Effect sizes: Cohen's d (pooled std) for unpaired, d_z (mean / std of the "
        f"differences) for paired comparisons [{REFERENCES['effect']}].",
        "Rankings: compact letter display of the Holm-decided pairs "
        f"[{REFERENCES['letters']}].",
    ]
    if interactions:
        from ablab.analysis.interactions import METHOD as INTERACTION_METHOD

        out.append(f"{INTERACTION_METHOD} [{REFERENCES['anova']}].")
    if sequential_looks:
        from ablab.analysis.sequential import METHOD as SEQUENTIAL_METHOD

        looks = ", ".join(str(n) for n in sequential_looks)
        out.append(
            f"{SEQUENTIAL_METHOD} Planned looks at {looks} seeds per variant "
            f"[{REFERENCES['sequential']}]."
        )
    return out

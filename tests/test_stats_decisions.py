"""Intervals inside their scale (and their coverage), intervals that
agree with the decisions, equivalence, power, P(A > B), interactions, and the
group-sequential procedure behind --until-decided (simulated, no training)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from scipy import stats

from ablab.analysis import analyze_runs
from ablab.analysis.compare import Comparison, decide_family
from ablab.analysis.interactions import find_interactions, interaction_sentence
from ablab.analysis.power import detectable_difference, seeds_needed
from ablab.analysis.sequential import Design, apply_design, sequential_outcomes
from ablab.analysis.stats import (
    compare_samples,
    decision_levels,
    describe,
    holm,
    mean_ci_in_scale,
    paired_t,
    probability_of_improvement,
)
from ablab.analysis.verdicts import terminal_lines, verdict

# ---------------------------------------------------------------- intervals inside the scale


def test_accuracy_interval_of_issue_18_stays_in_unit_interval():
    # Adam at lr 0.1 in the issue: one seed near chance; the raw t-interval went to 119 %
    x = [0.99, 0.98, 0.665]
    raw = stats.ttest_1samp(x, 0).confidence_interval()
    assert raw.high > 1  # the old interval
    low, high = mean_ci_in_scale(x, "unit")
    assert 0 < low < high < 1
    d = describe(x, scale="unit")
    assert 0 < d["ci_low"] < d["ci_high"] < 1
    assert 0 <= d["boot_low"] <= d["boot_high"] <= 1


def test_loss_interval_stays_positive():
    x = [0.05, 0.07, 0.9]
    assert stats.ttest_1samp(x, 0).confidence_interval().low < 0
    low, high = mean_ci_in_scale(x, "positive")
    assert 0 < low < high


def test_unit_interval_is_scipys_interval_on_the_logit_scale():
    from scipy.special import expit, logit

    x = np.array([0.81, 0.84, 0.79, 0.86])
    ci = stats.ttest_1samp(logit(x), 0).confidence_interval(0.9)
    assert mean_ci_in_scale(x, "unit", 0.9) == pytest.approx((expit(ci.low), expit(ci.high)))


def test_values_at_the_bounds_get_the_continuity_correction():
    low, high = mean_ci_in_scale([1.0, 1.0, 0.98], "unit")
    assert 0 < low < high < 1
    assert mean_ci_in_scale([1.0, 1.0, 1.0], "unit") == (1.0, 1.0)


def test_difference_of_accuracies_stays_in_minus_one_to_one():
    a, b = [1.0, 0.6, 0.95], [0.0, 0.0, 0.5]
    for paired in (True, False):
        r = compare_samples(a, b, paired=paired, scale="difference")
        assert -1 <= r.ci_low < r.ci_high <= 1
    # the raw scale would leave [−1, 1] here
    assert stats.ttest_rel(a, b).confidence_interval().high > 1


def test_paired_interval_equals_scipy_result_object_on_transformed_scale():
    a = np.array([0.91, 0.90, 0.93, 0.92])
    b = np.array([0.85, 0.86, 0.88, 0.84])
    scaled, res = paired_t(a, b, "difference")
    for level in (0.95, 0.983):
        ci = res.confidence_interval(level)
        assert scaled.interval(level) == pytest.approx(tuple(np.tanh([ci.low, ci.high])))
    assert scaled.p_value() == pytest.approx(res.pvalue)
    # the real scale is exactly ttest_rel
    real, _ = paired_t(a, b, "real")
    rel = stats.ttest_rel(a, b)
    assert real.p_value() == pytest.approx(rel.pvalue)
    assert real.interval(0.95) == pytest.approx(tuple(rel.confidence_interval()))


@pytest.mark.parametrize("mean,sd", [(0.10, 0.03), (0.99, 0.005)])
def test_coverage_near_the_bounds(mean, sd):
    """Many small samples (n = 2..5) of Beta-distributed accuracies near 0.10 and 0.99:
    every interval inside [0, 1], coverage of the true mean near the nominal 95 %."""
    rng = np.random.default_rng(18)
    k = mean * (1 - mean) / sd**2 - 1
    for n in (2, 3, 4, 5):
        samples = rng.beta(mean * k, (1 - mean) * k, size=(4000, n))
        low, high = mean_ci_in_scale(samples, "unit")
        assert ((0 <= low) & (low <= high) & (high <= 1)).all()
        coverage = ((low <= mean) & (mean <= high)).mean()
        assert 0.91 <= coverage <= 0.985, (mean, n, coverage)
        # the vectorised path is the per-sample function
        assert mean_ci_in_scale(samples[0], "unit") == pytest.approx((low[0], high[0]))


# ---------------------------------------------------------------- decisions agree with intervals


def _family(rng, m, n, paired=True):
    comps = []
    for i in range(m):
        base = rng.uniform(0.5, 0.95)
        effect = rng.choice([0.0, 0.005, 0.02, 0.05]) * rng.choice([-1, 1])
        noise = rng.choice([0.001, 0.004, 0.01, 0.04])
        a = np.clip(base + effect + noise * rng.standard_normal(n), 0, 1)
        b = np.clip(base + noise * rng.standard_normal(n), 0, 1)
        if rng.random() < 0.05:
            a = b + 0.01  # constant difference: zero variance
        r = compare_samples(a, b, paired=paired, scale="difference")
        comps.append(Comparison("activation", "test_accuracy", "", f"x{i}", "y", "a", "b", r,
                                values_a=list(a), values_b=list(b)))
    return comps


def test_no_verdict_contradicts_its_interval_over_many_generated_families():
    rng = np.random.default_rng(14)
    seen = {"beats": 0, "equivalent": 0, "undecided": 0}
    for _ in range(120):
        m = int(rng.integers(1, 7))
        n = int(rng.integers(2, 9))
        comps = _family(rng, m, n, paired=bool(rng.random() < 0.8))
        decide_family(comps, 0.05, 0.01)
        for c in comps:
            seen[c.outcome] += 1
            low, high = c.decision_low, c.decision_high
            excludes = low > 0 or high < 0
            text = verdict(c)
            if c.outcome == "beats":
                assert excludes and c.p_holm < 0.05, text
                assert "beats" in text
            else:
                assert not excludes and not (c.p_holm < 0.05), text
                assert "beats" not in text
            if c.outcome == "equivalent":
                assert -0.01 < c.equivalence_low and c.equivalence_high < 0.01
                assert c.p_equivalence_holm < 0.05
    assert all(v >= 10 for v in seen.values()), seen


def test_decision_levels_match_holm():
    rng = np.random.default_rng(1)
    for _ in range(500):
        p = list(rng.uniform(0, 0.1, size=int(rng.integers(1, 8))))
        levels = decision_levels(p)
        adjusted = holm(p)
        for pi, li, ai in zip(p, levels, adjusted, strict=True):
            assert (pi < li) == (ai < 0.05)


def test_three_outcomes_in_words_with_factor_names():
    rng = np.random.default_rng(3)
    a = 0.9 + 0.003 * rng.standard_normal(8)
    beats = compare_samples(a, a - 0.05 + 0.003 * rng.standard_normal(8), True, scale="difference")
    equal = compare_samples(a, a + 0.001 * rng.standard_normal(8), True, scale="difference")
    vague = compare_samples([0.9, 0.8, 0.85], [0.86, 0.84, 0.83], True, scale="difference")
    comps = [
        Comparison("activation", "test_accuracy", "", "relu", lb, "", "", r)
        for lb, r in (("sigmoid", beats), ("tanh", equal), ("gelu", vague))
    ]
    decide_family(comps, 0.05, 0.01)
    assert [c.outcome for c in comps] == ["beats", "equivalent", "undecided"]
    texts = [verdict(c) for c in comps]
    assert texts[0].startswith("activation=relu beats activation=sigmoid by ")
    assert "are equivalent within ±1.0 pp test accuracy" in texts[1]
    assert "undecided — 3 seeds detect" in texts[2] and "needs ~" in texts[2]
    lines = terminal_lines(comps[::-1])
    assert [line.split()[0] for line in lines] == ["BEATS", "EQUIVALENT", "UNDECIDED"]


# ---------------------------------------------------------------- power, P(A > B)


def test_power_uses_statsmodels():
    from statsmodels.stats.power import TTestPower

    mdd = detectable_difference(0.02, 4, 0.05, paired=True)
    assert TTestPower().power(mdd / 0.02, 4, 0.05) == pytest.approx(0.8, abs=1e-3)
    n = seeds_needed(0.01, 0.02, 0.05, paired=True)
    assert TTestPower().power(0.5, n, 0.05) >= 0.8 > TTestPower().power(0.5, n - 1, 0.05)


def test_probability_of_improvement_is_mann_whitney_u():
    a, b = [0.9, 0.85, 0.88, 0.91], [0.86, 0.84, 0.88]
    u = stats.mannwhitneyu(a, b).statistic
    est, low, high = probability_of_improvement(a, b)
    assert est == pytest.approx(u / 12)
    assert 0 <= low <= est <= high <= 1
    assert probability_of_improvement(a, b, higher_is_better=False)[0] == pytest.approx(
        1 - u / 12
    )


# ---------------------------------------------------------------- interactions (#18)

GRID = {
    "name": "grid",
    "factors": [["optimizer.name"], ["optimizer.lr"]],
    "columns": {"optimizer.name": "optimizer", "optimizer.lr": "lr"},
}


def _grid_rows(means):
    from tests.test_analysis import BASE

    rows = []
    rng = np.random.default_rng(0)
    for (opt, lr), mean in means.items():
        for seed in range(3):
            cfg = copy.deepcopy(BASE)
            cfg["optimizer"] = {"name": opt, "lr": lr}
            label = f"optimizer={opt}, lr={lr}"
            acc = float(mean + 0.004 * rng.standard_normal())
            rows.append({
                "run_id": f"{label}-{seed}", "variant_id": label, "variant_label": label,
                "variant": {"optimizer": opt, "lr": str(lr)}, "seed": seed, "config": cfg,
                "status": "done", "error": None, "diverged_epoch": None,
                "final": {"test_accuracy": acc, "test_loss": 1 - acc,
                          "test_cross_entropy": 1 - acc, "best_val_accuracy": acc,
                          "chance_accuracy": 0.1, "at_chance": False},
            })
    return rows


def test_interaction_is_found_and_said_first():
    flips = {("adam", 0.1): 0.80, ("adam", 0.001): 0.95,
             ("sgd", 0.1): 0.93, ("sgd", 0.001): 0.82}
    a = analyze_runs(GRID, _grid_rows(flips), {})
    assert len(a.interactions) == 1 and a.interactions[0].found
    text = a.interaction_sentences[0]
    assert text.startswith("The effect of optimizer depends on lr (the best level changes")
    assert "at lr=0.1 optimizer=sgd is best" in text and "at lr=0.001 optimizer=adam" in text
    assert any("ANOVA" in m for m in a.methods)
    additive = {("adam", 0.1): 0.90, ("adam", 0.001): 0.85,
                ("sgd", 0.1): 0.88, ("sgd", 0.001): 0.83}
    b = analyze_runs(GRID, _grid_rows(additive), {})
    assert not b.interactions[0].found and b.interaction_sentences == []


def test_statsmodels_anova_is_what_is_reported():
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    from ablab.analysis.runs import build_factors, build_variants

    rows = _grid_rows({("adam", 0.1): 0.80, ("adam", 0.001): 0.95,
                       ("sgd", 0.1): 0.93, ("sgd", 0.001): 0.82})
    factors, variants = build_factors(GRID, rows), build_variants(rows)
    found = find_interactions(factors, variants)[0]
    frame = pd.DataFrame([{"o": r["variant"]["optimizer"], "l": r["variant"]["lr"],
                           "y": r["final"]["test_accuracy"]} for r in rows])
    table = anova_lm(smf.ols("y ~ C(o) * C(l)", frame).fit(), typ=2)
    assert found.p == pytest.approx(table.loc["C(o):C(l)", "PR(>F)"])
    assert "Compare optimizer levels tuned" in interaction_sentence(found)


# ---------------------------------------------------------------- group-sequential (#14.4)


def test_design_spends_alpha_over_planned_looks():
    d = Design.plan(3, 10)
    assert d.looks == (3, 5, 8, 10)
    assert sum(d.increments()) == pytest.approx(0.05)
    assert all(x > 0 for x in d.increments())
    assert d.next_look(5) == 8 and d.next_look(10) is None


def test_sequential_error_rates_in_simulation():
    """Thousands of simulated studies (per-seed accuracies with noise SD 0.01, one
    comparison each, seeds 3 → 10 in looks 3, 5, 8, 10), fixed random state."""
    rng = np.random.default_rng(2026)
    design, sd, margin, studies = Design.plan(3, 10), 0.01, 0.01, 4000

    def run(delta):
        a = 0.85 + delta + sd * rng.standard_normal((studies, 10))
        b = 0.85 + sd * rng.standard_normal((studies, 10))
        outcome, used = sequential_outcomes(a, b, design, margin)
        return outcome, used

    null, _ = run(0.0)
    assert (null == "beats").mean() <= 0.05
    effect, used = run(2 * sd)
    assert (effect == "beats").mean() >= 0.80
    assert used.max() <= 10
    at_margin, _ = run(margin)
    assert (at_margin == "equivalent").mean() <= 0.05


def test_vectorised_procedure_agrees_with_the_report_path():
    """The simulated procedure and apply_design (what the report says) decide alike."""
    rng = np.random.default_rng(7)
    design = Design.plan(3, 10)
    for _ in range(30):
        delta = rng.choice([0.0, 0.01, 0.02, 0.04])
        a = 0.85 + delta + 0.01 * rng.standard_normal(10)
        b = 0.85 + 0.01 * rng.standard_normal(10)
        expected, _ = sequential_outcomes([a], [b], design, 0.01)
        r = compare_samples(a, b, True, scale="difference")
        c = Comparison("f", "test_accuracy", "", "a", "b", "A", "B", r,
                       seeds=list(range(10)), values_a=list(a), values_b=list(b))
        (c,) = apply_design([c], design, 0.01)
        assert c.outcome == expected[0]
        if c.decided:
            assert c.look is not None and "look" in verdict(c)


def test_plan_next_round_adds_seeds_only_where_undecided():
    from ablab.adaptive import plan_next_round
    from tests.test_analysis import ACT, study_rows

    design = Design.plan(3, 10)
    clear = study_rows(a=(0.90, 0.91, 0.92), b=(0.70, 0.711, 0.72))  # not constant
    a = analyze_runs(ACT, clear, {}, design=design)
    vague = study_rows(a=(0.90, 0.80, 0.85), b=(0.86, 0.84, 0.83))
    b = analyze_runs(ACT, vague, {}, design=design)
    assert plan_next_round(b) == {
        "activation=relu, dataset=moons": 2, "activation=tanh, dataset=moons": 2
    }
    assert all(c.look == 1 for c in b.comparisons_on("test_accuracy"))
    decided = [c for c in a.comparisons_on("test_accuracy")]
    assert plan_next_round(a) == {} or all(c.decided for c in decided)
    assert math.isfinite(decided[0].level)
    assert "P(better) = " in verdict(b.comparisons_on("test_accuracy")[0])


def test_summary_csv_report_tables_and_verdicts_share_the_bounded_interval():
    from ablab.analysis import study_tables
    from tests.test_analysis import ACT, study_rows

    rows = study_rows(a=(0.99, 0.98, 0.665), b=(0.80, 0.82, 0.81))
    csv_table = study_tables(ACT, rows, {})[1]
    report = analyze_runs(ACT, rows, {}).summary
    for table in (csv_table, report):
        low, high = table["test_accuracy_ci_low"].iloc[0], table["test_accuracy_ci_high"].iloc[0]
        assert 0 < low < high < 1
        assert table["test_cross_entropy_ci_low"].iloc[0] > 0
    assert csv_table["test_accuracy_ci_high"].iloc[0] == pytest.approx(
        report["test_accuracy_ci_high"].iloc[0]
    )


# ---------------------------------------------------------------- zero spread of the differences


@pytest.mark.parametrize("a, b", [
    ((0.70, 0.71), (0.56, 0.57)),  # 0.70 − 0.56 and 0.71 − 0.57 differ only by rounding
    ((0.93, 0.87), (0.81, 0.75)),  # exactly the same difference in both seeds
])
def test_the_same_nonzero_difference_in_every_seed_reads_plainly(a, b):
    """Two seeds, both +14 / +12 pp: no d_z of 10^15, no interval of ±100 pp, no "2 seeds
    detect 0.0 pp" — the verdict says the spread is zero, gives the difference, and what
    the sign test would need."""
    from tests.test_analysis import ACT, study_rows

    diff = round((a[0] - b[0]) * 100, 1)
    analysis = analyze_runs(ACT, study_rows(a=a, b=b), {})
    (c,) = analysis.comparisons_on("test_accuracy")
    text = verdict(c)
    assert c.zero_spread and c.outcome == "undecided"
    assert f"+{diff:.1f} pp" in text and "zero spread" in text, text
    assert "100.0" not in text and "d_z =" not in text and "detect" not in text, text
    assert c.result.effect == math.inf and c.result.diff_std == 0
    assert math.isnan(c.result.ci_low) and math.isnan(c.decision_low)  # no interval
    assert math.isnan(c.detectable)
    # the sign test's smallest p, 2·0.5^n, first falls below 0.05 at n = 6
    assert c.seeds_needed == 6 and "6 seeds per variant" in text
    six = analyze_runs(ACT, study_rows(a=a * 3, b=b * 3), {})  # and so they do
    assert six.comparisons_on("test_accuracy")[0].outcome == "beats"

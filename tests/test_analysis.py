"""Statistics, comparisons, warnings and verdict wording, on hand-built studies."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from conftest import HAND_BUILT_RUN
from scipy import stats

from ablab.analysis import (
    Comparison,
    TwoSample,
    analyze_runs,
    bootstrap_ci,
    build_factors,
    build_variants,
    cohens_d,
    cohens_dz,
    compact_letters,
    compare_all,
    compare_samples,
    describe,
    format_p,
    history_metrics,
    holm,
    mean_ci,
    status_line,
    study_tables,
    verdict,
    warn_confounds,
    warn_few_seeds,
    warn_loss_differs,
    warn_noise,
    warn_test_selection,
)
from ablab.analysis.checks import config_differences
from ablab.analysis.compare import compare_variants
from ablab.analysis.verdicts import variant_status_sentences

# ---------------------------------------------------------------- hand-built studies

BASE = HAND_BUILT_RUN
ACT = {
    "name": "t",
    "factors": [["model.activation"]],
    "columns": {"model.activation": "activation"},
}


def make_row(act, seed, acc, status="done", dataset="moons", config=None, at_chance=False):
    cfg = copy.deepcopy(config or BASE)
    cfg["seed"] = seed
    cfg["model"]["activation"] = {"name": act}
    cfg["dataset"]["name"] = dataset
    values = {"activation": act, "dataset": dataset}
    label = f"activation={act}, dataset={dataset}"
    final = None
    if status == "done":
        final = {
            "test_accuracy": acc,
            "test_loss": 1 - acc,
            "test_cross_entropy": 1 - acc,
            "best_val_accuracy": acc,
            "chance_accuracy": 0.5,
            "at_chance": at_chance,
            "epochs_run": 5,
        }
    return {
        "run_id": f"{act}-{dataset}-{seed}",
        "variant_id": label,
        "variant_label": label,
        "variant": values,
        "seed": seed,
        "config": cfg,
        "status": status,
        "final": final,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "diverged_epoch": 3 if status == "diverged" else None,
    }


def study_rows(a=(0.90, 0.91, 0.92), b=(0.80, 0.82, 0.81), seeds_b=None, **kw):
    rows = [make_row("relu", s, x, **kw) for s, x in enumerate(a)]
    seeds_b = seeds_b or range(len(b))
    rows += [make_row("tanh", s, x, **kw) for s, x in zip(seeds_b, b, strict=True)]
    return rows


def analysis_of(rows, info=ACT):
    return analyze_runs(info, rows, {})


# ---------------------------------------------------------------- statistics vs scipy


def test_mean_ci_matches_scipy_t_interval():
    x = [0.81, 0.84, 0.79, 0.86, 0.83]
    got = mean_ci(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert got["ci_low"] == pytest.approx(low) and got["ci_high"] == pytest.approx(high)
    assert got["std"] == pytest.approx(np.std(x, ddof=1))


def test_describe_adds_bootstrap_for_small_or_skewed_samples():
    small = describe([0.8, 0.85, 0.9])
    assert small["ci_method"] == "bootstrap" and small["boot_low"] <= 0.85 <= small["boot_high"]
    symmetric = describe([1, 2, 3, 4, 5, 6, 7, 8])
    assert symmetric["ci_method"] == "t" and math.isnan(symmetric["boot_low"])
    skewed = describe([1, 1, 1, 1, 1, 1, 1, 1, 1, 10])
    assert abs(skewed["skew"]) > 1 and skewed["ci_method"] == "bootstrap"
    constant = describe([0.5, 0.5, 0.5])
    assert constant["ci_low"] == constant["ci_high"] == 0.5


def test_bootstrap_ci_is_an_interval_of_the_mean():
    # A large symmetric sample: any bootstrap CI of the mean is close to mean ± 1.96 SE
    # (an interval of the median, or of the data's spread, is not).
    x = np.random.default_rng(7).normal(0.8, 0.05, size=400)
    low, high = bootstrap_ci(x)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert low < x.mean() < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert (low + high) / 2 == pytest.approx(x.mean(), abs=0.5 * se)
    assert bootstrap_ci(x) == (low, high)  # seeded: a report is reproducible
    skewed = [0.1, 0.1, 0.12, 0.11, 0.9]  # small and skewed: inside the data's range
    s_low, s_high = bootstrap_ci(skewed)
    assert min(skewed) <= s_low < np.mean(skewed) < s_high <= max(skewed)


def test_paired_comparison_matches_ttest_rel():
    a, b = [0.90, 0.91, 0.95, 0.88], [0.85, 0.88, 0.90, 0.86]
    r = compare_samples(a, b, paired=True)
    ref = stats.ttest_rel(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert r.test == "paired t" and r.p == pytest.approx(ref.pvalue)
    assert (r.ci_low, r.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.effect_name == "d_z" and r.effect == pytest.approx(d.mean() / d.std(ddof=1))


def test_welch_comparison_matches_ttest_ind():
    a, b = [0.90, 0.91, 0.95, 0.88, 0.93], [0.85, 0.80, 0.90]
    r = compare_samples(a, b, paired=False)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert r.test == "Welch t" and r.p == pytest.approx(ref.pvalue)
    assert r.statistic == pytest.approx(ref.statistic)
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert r.ci_high - r.ci_low == pytest.approx(2 * half)


def test_zero_variance_and_too_few_runs():
    same = compare_samples([0.5, 0.5], [0.5, 0.5], paired=True)
    assert same.p == 1.0 and same.diff == 0
    # constant differences: the sign test decides (3 seeds: p = 0.25, no interval)
    shifted = compare_samples([0.6, 0.6, 0.6], [0.5, 0.5, 0.5], paired=True)
    assert shifted.p == 0.25 and math.isnan(shifted.ci_low) and math.isnan(shifted.ci_high)
    six = compare_samples([0.6] * 6, [0.5] * 6, paired=True)
    assert six.p == 0.03125 and six.ci_low == six.ci_high == pytest.approx(0.1)
    single = compare_samples([0.9], [0.8, 0.7], paired=False)
    assert single.test == "none" and math.isnan(single.p)


def test_holm_against_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])
    got = holm([0.01, math.nan, 0.02])  # NaN is not in the family
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1]) and got[2] == pytest.approx(0.02)


def test_cohens_d_by_hand():
    a, b = [1, 2, 3, 4], [3, 4, 5, 6]
    pooled = math.sqrt((3 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 6)
    assert cohens_d(a, b) == pytest.approx(-2 / pooled)
    assert cohens_dz([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert cohens_d([1, 1], [0, 0]) == math.inf


def test_compact_letters():
    assert compact_letters(["a", "b", "c"], set()) == {"a": "a", "b": "a", "c": "a"}
    letters = compact_letters(["x", "y", "z"], {frozenset("xy"), frozenset("xz")})
    assert letters["x"] != letters["y"] and letters["y"] == letters["z"]


def test_history_metrics():
    h = [
        {"epoch": e, "train_accuracy": t, "val_accuracy": v}
        for e, (t, v) in enumerate(
            [(0.5, 0.5), (0.7, 0.6), (0.9, 0.8), (0.95, 0.85), (0.97, 0.84), (0.99, 0.86)], 1
        )
    ]
    m = history_metrics(h)
    assert m["convergence_epoch"] == 4  # 0.95 * 0.86 = 0.817
    assert m["stability"] == pytest.approx(np.std([0.6, 0.8, 0.85, 0.84, 0.86]))
    assert m["overfit_gap"] == pytest.approx(0.13)
    assert history_metrics([{"epoch": 1, "train_accuracy": 0.5, "val_accuracy": None}]) == {
        "convergence_epoch": None, "stability": None, "overfit_gap": None,
    }


# ---------------------------------------------------------------- paired vs Welch


def test_paired_when_same_seeds_and_split_else_welch():
    variants = build_variants(study_rows())
    assert compare_variants(variants[0], variants[1], "test_accuracy").test == "paired t"
    other_seeds = build_variants(study_rows(seeds_b=[5, 6, 7]))
    assert compare_variants(*other_seeds, "test_accuracy").test == "Welch t"
    rows = study_rows()
    for r in rows[3:]:
        r["config"]["dataset"]["split_seed"] = 7  # another data split
    assert compare_variants(*build_variants(rows), "test_accuracy").test == "Welch t"


def test_comparisons_within_strata_and_holm_family():
    info = {
        "name": "t",
        "factors": [["model.activation"], ["dataset.name"]],
        "columns": {"model.activation": "activation", "dataset.name": "dataset"},
    }
    rows = study_rows() + study_rows(dataset="circles", a=(0.7, 0.72, 0.71), b=(0.7, 0.7, 0.73))
    a = analysis_of(rows, info)
    act = [c for c in a.comparisons if c.factor == "activation" and c.metric == "test_accuracy"]
    assert {c.stratum for c in act} == {"dataset=moons", "dataset=circles"}
    assert all(c.family_size == 2 for c in act)
    assert holm([c.result.p for c in act]) == pytest.approx([c.p_holm for c in act])
    by_data = [c for c in a.comparisons if c.factor == "dataset" and c.metric == "test_accuracy"]
    assert all(c.result.test == "Welch t" for c in by_data)  # different data: not paired


# ---------------------------------------------------------------- warnings


def _factors_and_variants(rows, info=ACT):
    return build_factors(info, rows), build_variants(rows)


def test_warn_few_seeds():
    factors, variants = _factors_and_variants(study_rows(a=(0.9, 0.91), b=(0.8, 0.82)))
    assert len(warn_few_seeds(compare_all(factors, variants))) == 1
    factors, variants = _factors_and_variants(study_rows())
    assert warn_few_seeds(compare_all(factors, variants)) == []


def test_warn_loss_differs():
    rows = study_rows()
    for r in rows[3:]:
        r["config"]["loss"] = {"name": "bce_onehot"}
    (warning,) = warn_loss_differs(build_variants(rows))
    assert "cross_entropy" in warning and "bce_onehot" in warning
    assert "accuracy" in warning and "cross-entropy" in warning
    assert warn_loss_differs(build_variants(study_rows())) == []


def test_warn_test_selection():
    config = copy.deepcopy(BASE)
    config["dataset"]["validate_on"] = "test"
    config["early_stopping"] = {"monitor": "val_loss", "patience": 3}
    config["schedule"] = {"name": "reduce_on_plateau", "monitor": "val_loss"}
    warnings = warn_test_selection(build_variants(study_rows(config=config)))
    assert len(warnings) == 3  # early stopping, ReduceLROnPlateau, best-val = test figures
    assert all("test set" in w for w in warnings)
    only_peek = copy.deepcopy(BASE)
    only_peek["dataset"]["validate_on"] = "test"
    assert len(warn_test_selection(build_variants(study_rows(config=only_peek)))) == 1
    assert warn_test_selection(build_variants(study_rows())) == []


def test_warn_confounds():
    rows = study_rows()
    for r in rows[3:]:
        r["config"]["optimizer"]["lr"] = 0.1
    factors, variants = _factors_and_variants(rows)
    (warning,) = warn_confounds(variants, factors)
    assert "optimizer.lr" in warning
    factors, variants = _factors_and_variants(study_rows())
    assert warn_confounds(variants, factors) == []


def test_confounds_ignore_options_of_a_varied_component():
    a = {"dataset": {"name": "moons", "noise": 0.3}, "seed": 1}
    b = {"dataset": {"name": "circles", "noise": 0.2, "factor": 0.5}, "seed": 2}
    assert config_differences(a, b, ["dataset.name", "dataset.noise"]) == []
    assert config_differences(a, b, ["model.activation"]) == [
        "dataset.factor", "dataset.name", "dataset.noise",
    ]


def test_warn_noise():
    factors, variants = _factors_and_variants(study_rows(b=(0.89, 0.93, 0.90)))
    (warning,) = warn_noise(compare_all(factors, variants))
    assert "relu vs tanh" in warning and "noise" in warning
    factors, variants = _factors_and_variants(study_rows())
    assert warn_noise(compare_all(factors, variants)) == []


def test_a_decided_difference_smaller_than_the_seed_to_seed_std_is_not_called_noise():
    """Paired by seed, relu is 0.7 pp above tanh in every seed (plus a little jitter),
    while the seeds themselves spread by ~3 pp: the paired test decides "beats", and the
    noise warning must not then call the same difference "no evidence of an effect"."""
    a = (0.90, 0.95, 0.87, 0.93, 0.89, 0.96, 0.91, 0.88)
    b = tuple(round(x - 0.007 + j, 4) for x, j in
              zip(a, (0.0005, -0.0005, 0.0, 0.0004, -0.0003, 0.0, 0.0002, -0.0002), strict=True))
    factors, variants = _factors_and_variants(study_rows(a=a, b=b))
    (c,) = [c for c in compare_all(factors, variants) if c.metric == "test_accuracy"]
    assert abs(c.result.diff) < c.result.noise_std and c.outcome == "beats"
    assert warn_noise(compare_all(factors, variants)) == []


def test_sound_study_has_no_warnings():
    assert analysis_of(study_rows()).warnings == []


# ---------------------------------------------------------------- verdict wording


def _comparison(p_holm, ci=(0.01, 0.05), diff=0.03, metric="test_accuracy", family=3):
    """A comparison whose decision interval (at the Holm step's level, here 95 %) is
    ``ci``: the interval decides, so it must agree with p_holm."""
    r = TwoSample("paired t", 5, 5, 0.9, 0.87, diff, *ci, 3.0, p_holm / 3, 2.1, "d_z", 0.01)
    return Comparison("activation", metric, "dataset=moons", "tanh", "relu",
                      "activation=tanh", "activation=relu", r, p_holm, family,
                      level=0.05, decision_low=ci[0], decision_high=ci[1])


def test_verdict_beats_just_below_005():
    text = verdict(_comparison(0.049))
    assert text == (
        "On dataset=moons, activation=tanh beats activation=relu by 3.0 pp test accuracy "
        "(95 % CI 1.0 to 5.0, Holm-adjusted, p = 0.049 after Holm, d_z = 2.1, n = 5, "
        "paired by seed)."
    )


def test_verdict_undecided_just_above_005():
    text = verdict(_comparison(0.051, ci=(-0.001, 0.05)))
    assert "beats" not in text and "undecided" in text
    assert "+3.0 pp test accuracy" in text and "p = 0.051 after Holm" in text


def test_verdict_is_undecided_when_the_decision_interval_includes_zero():
    text = verdict(_comparison(0.01, ci=(-0.001, 0.05)))
    assert "beats" not in text and "undecided" in text


def test_verdict_for_lower_is_better_metric_and_winner_b():
    text = verdict(_comparison(0.01, ci=(0.02, 0.04), diff=0.03, metric="test_cross_entropy"))
    assert text.startswith(
        "On dataset=moons, activation=relu beats activation=tanh by 0.030 lower test "
        "cross-entropy"
    )
    assert "95 % CI 0.020 to 0.040" in text


def test_format_p_never_rounds_across_alpha():
    assert format_p(0.0496) == "0.0496"
    assert format_p(0.0504) == "0.0504"
    assert format_p(0.049) == "0.049" and format_p(0.051) == "0.051"
    assert format_p(0.0004) == "< 0.001"


def test_untestable_verdict_with_one_seed():
    a = analysis_of(study_rows(a=(0.9,), b=(0.8,)))
    assert "no test possible" in a.verdicts[0] and "beats" not in a.verdicts[0]


# ---------------------------------------------------------------- diverged, at chance, partial


def test_status_sentences_and_means_leave_out_diverged_runs():
    rows = study_rows()
    rows[1] = make_row("relu", 1, None, status="diverged")
    rows[2] = make_row("relu", 2, None, status="failed")
    for r in rows[3:]:
        r["final"].update(test_accuracy=0.5, at_chance=True)
    a = analysis_of(rows)
    relu, tanh = a.variants
    assert variant_status_sentences(tanh) == [
        "activation=tanh, dataset=moons did not learn: 3 of 3 runs at chance (50 %)."
    ]
    sentences = variant_status_sentences(relu)
    assert "1 of 3 runs diverged (at epoch 3)" in sentences[0]
    assert "1 of 3 runs failed (RuntimeError: boom)" in sentences[1]
    first = a.summary.iloc[0]
    assert first["test_accuracy_n"] == 1 and first["test_accuracy_mean"] == pytest.approx(0.9)
    assert (first["diverged"], first["failed"]) == (1, 1)
    assert a.summary.iloc[1]["at_chance"] == 3
    assert a.status == "4 of 6 runs done; 1 diverged; 1 failed; 3 of the done runs at chance"


def test_partial_study_status():
    rows = study_rows()
    for r in rows[4:]:
        r.update(status="pending", final=None)
    a = analysis_of(rows)
    assert a.status == "4 of 6 runs done; 2 pending" and not a.complete
    assert status_line({"done": 12, "pending": 6}) == "12 of 18 runs done; 6 pending"


def test_csv_tables_are_the_analysis_tables():
    rows = study_rows()
    rows[1]["status"], rows[1]["final"] = "diverged", None
    runs, summary = study_tables(ACT, rows)
    a = analysis_of(rows)
    pd.testing.assert_frame_equal(summary, a.summary)
    pd.testing.assert_frame_equal(runs, a.runs)
    assert list(summary["done"]) == [2, 3] and list(summary["diverged"]) == [1, 0]
    assert summary["test_accuracy_mean"].iloc[0] == pytest.approx(0.91)  # 0.90 and 0.92
    assert summary["epochs_run_mean"].iloc[0] == 5 and summary["epochs_run_n"].iloc[0] == 2
    assert list(runs["variant"]) == [r["variant_label"] for r in rows]


def test_comparison_and_ranking_sentences_are_separate_fields():
    rows = study_rows() + [make_row("elu", s, x) for s, x in enumerate((0.6, 0.63, 0.61))]
    a = analysis_of(rows)
    assert len(a.verdicts) == len(a.comparisons_on("test_accuracy")) == 3  # pairs of 3
    assert len(a.ranking_sentences) == len(a.rankings) >= 1
    assert not set(a.ranking_sentences) & set(a.verdicts)


def test_a_labelled_factor_is_one_column_with_its_labels():
    info = {"name": "t", "factors": [["model", "optimizer"]], "columns": {"_labels": "recipe"}}
    rows = study_rows()
    for row in rows:
        row["variant"] = {"recipe": "base" if row["run_id"].startswith("relu") else "better"}
    a = analyze_runs(info, rows, {})
    assert [f.columns for f in a.factors] == [("recipe",)]
    assert a.factors[0].levels == (("base",), ("better",))
    assert len(a.comparisons_on("test_accuracy")) == 1  # the recipes are compared


def test_factors_that_change_the_test_data_are_contexts_not_compared():
    from ablab.analysis.runs import Factor

    assert Factor(("dataset.name", "dataset.noise"), ("dataset", "noise")).changes_task
    assert Factor(("dataset",), ("dataset",)).changes_task
    assert Factor(("dataset.test_fraction",), ("test_fraction",)).changes_task
    assert not Factor(("dataset.augment",), ("augment",)).changes_task
    assert not Factor(("dataset.normalize",), ("normalize",)).changes_task
    assert not Factor(("model.activation",), ("activation",)).changes_task

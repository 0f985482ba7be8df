"""Declared outcomes, outcomes beyond accuracy, factor roles, pooled verdicts across
contexts, trade-offs, and a report that leads with its answers (issues #29 item 3, #32)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import HAND_BUILT_RUN

from ablab.analysis import analyze_runs, compare_samples, mean_ci_in_scale
from ablab.analysis.compare import Comparison
from ablab.analysis.interactions import Interaction, interaction_sentence
from ablab.analysis.outcomes import (
    CATALOGUE,
    declared,
    difference_scale_of,
    outcome_of,
    scale_of,
    study_outcomes,
)
from ablab.analysis.pooled import pool_family
from ablab.analysis.sequential import Design, sequential_outcomes
from ablab.analysis.stats import scale_for_range

ROOT = Path(__file__).resolve().parents[1]

BASE = HAND_BUILT_RUN


def row(factor: str, column: str, level, seed: int, final: dict, dataset: str = "moons",
        probes: list | None = None):
    cfg = copy.deepcopy(BASE)
    cfg["seed"] = seed
    cfg["dataset"]["name"] = dataset
    cfg["probes"] = probes or []
    parts = factor.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = level
    values = {column: str(level), "dataset": dataset}
    label = f"{column}={level}, dataset={dataset}"
    return {
        "run_id": f"{level}-{dataset}-{seed}", "variant_id": label, "variant_label": label,
        "variant": values, "seed": seed, "config": cfg, "status": "done",
        "final": {"epochs_run": 5, "chance_accuracy": 0.5, "at_chance": False, **final},
        "error": None, "diverged_epoch": None,
    }


def info(factor: str, column: str, datasets: bool = False, **extra) -> dict:
    out = {"name": "t", "factors": [[factor]], "columns": {factor: column}, **extra}
    if datasets:
        out["factors"].append(["dataset.name"])
        out["columns"]["dataset.name"] = "dataset"
    return out


# ---------------------------------------------------------------- catalogue and ranges


def test_builtin_outcomes_keep_todays_direction_and_scale():
    assert scale_of(outcome_of("test_accuracy")).name == "unit"
    assert difference_scale_of(outcome_of("test_accuracy")).name == "difference"
    assert scale_of(outcome_of("test_cross_entropy")).name == "positive"
    assert not outcome_of("test_cross_entropy").higher_is_better
    assert outcome_of("test_rmse").goal == "min" and outcome_of("test_r2").goal == "max"
    assert (outcome_of("test_r2").low, outcome_of("test_r2").high) == (-math.inf, 1.0)
    roc = declared({"name": "roc_auc", "goal": "max", "range": [0, 1]})
    assert scale_of(roc).name == "unit" and roc.has_margin
    loss = declared({"name": "val_bleu", "goal": "min", "range": [0, math.inf]})
    assert scale_of(loss).name == "positive" and not loss.higher_is_better


@pytest.mark.parametrize("low, high", [(0, 1), (0, math.inf), (-math.inf, 1), (2, 5),
                                       (-1, 1), (10, math.inf)])
def test_every_interval_stays_inside_its_range(low, high):
    """Means' intervals on the outcome's scale, and differences on its difference scale,
    lie inside the range (and the differences inside ±width), however close to a bound."""
    rng = np.random.default_rng(3)
    scale = scale_for_range(low, high)
    lo = low if math.isfinite(low) else high - 3
    hi = high if math.isfinite(high) else lo + 3
    for _ in range(50):
        centre = rng.uniform(lo, hi)
        x = np.clip(centre + rng.normal(0, (hi - lo) / 4, size=4), lo, hi)
        a, b = mean_ci_in_scale(x, scale)
        assert low <= a <= b <= high
        y = np.clip(centre + rng.normal(0, (hi - lo) / 4, size=4), lo, hi)
        from ablab.analysis.stats import difference_scale_for

        r = compare_samples(x, y, paired=True, scale=difference_scale_for(scale))
        width = high - low
        if math.isfinite(r.ci_low):
            assert -width <= r.ci_low <= r.ci_high <= width


def test_study_outcomes_defaults_probes_and_cost():
    plain = study_outcomes({})
    assert plain.primary.name == "test_accuracy"
    assert [o.name for o in plain.others] == ["test_cross_entropy", "seconds"]
    probed = study_outcomes({}, {"dead_units", "gradients"})
    assert {"zero_activation_fraction_mean", "dead_unit_fraction", "grad_norm"} <= set(
        probed.names)
    asked = study_outcomes({"metric": {"name": "test_r2", "goal": "max", "range": None},
                            "outcomes": ["steps_per_second"]})
    assert asked.names == ("test_r2", "steps_per_second")


# ---------------------------------------------------------------- the study file


def _load(tmp_path, text):
    from ablab.study import load_study

    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_study(path)


STUDY = """
name = "o"
seeds = [0, 1]
{top}
[base]
epochs = 1
dataset = {{ name = "moons", n_samples = 100 }}
model = {{ name = "mlp", hidden = [4] }}
[[vary]]
"model.activation" = ["relu", "tanh"]
{vary}
"""


def test_study_file_declares_metric_outcomes_and_roles(tmp_path):
    study = _load(tmp_path, STUDY.format(
        top='metric = { name = "test_r2", goal = "max", range = [-inf, 1] }\n'
            'outcomes = ["seconds", "zero_activation_fraction_mean"]',
        vary='[[vary]]\n"dataset.noise" = [0.1, 0.3]\n_role = "treatment"'))
    resolved = study.resolved()
    assert resolved["metric"] == {"name": "test_r2", "goal": "max", "range": [-math.inf, 1.0]}
    assert resolved["outcomes"] == ["seconds", "zero_activation_fraction_mean"]
    assert resolved["roles"] == [None, "treatment"]


@pytest.mark.parametrize("top, vary, message", [
    ('outcomes = ["dead_units_fraction"]', "",
     "outcomes[0]: unknown outcome 'dead_units_fraction' (did you mean 'dead_unit_fraction'?)"),
    ("", '[[vary]]\n"dataset.noise" = [0.1, 0.3]\n_role = "judged"',
     'vary[1]."_role": must be "treatment" (judged) or "context"'),
    ('metric = { name = "auc", goal = "up" }', "", "metric.goal"),
    ('metric = { name = "auc", range = [1, 0] }', "", "range must be [low, high]"),
])
def test_bad_outcome_declarations_name_the_field(tmp_path, top, vary, message):
    from ablab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _load(tmp_path, STUDY.format(top=top, vary=vary))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_tune_objective_is_the_validation_counterpart_of_the_primary(tmp_path):
    tune = '[tune]\nparams = { "optimizer.lr" = "loguniform(1e-3, 1e-1)" }\ntrials = 2'
    default = _load(tmp_path, STUDY.format(top="", vary=tune))
    assert default.config.tune.metric == "val_accuracy"
    assert default.config.tune_direction() == "maximize"
    declared_one = _load(tmp_path, STUDY.format(
        top='metric = { name = "test_rmse" }', vary=tune))
    assert declared_one.config.tune.metric == "val_rmse"
    assert declared_one.config.tune_direction() == "minimize"


# ---------------------------------------------------------------- verdicts on any outcome


def test_a_declared_metric_drives_verdicts_with_intervals_in_its_range():
    rows = [row("model.activation", "activation", "relu", s, {"roc_auc": v})
            for s, v in enumerate([0.97, 0.985, 0.99, 0.975, 0.98])]
    rows += [row("model.activation", "activation", "tanh", s, {"roc_auc": v})
             for s, v in enumerate([0.90, 0.91, 0.93, 0.89, 0.92])]
    a = analyze_runs(info("model.activation", "activation",
                          metric={"name": "roc_auc", "goal": "max", "range": [0, 1]}), rows, {})
    # no run recorded its time: cost is not judged (no "no finished runs" sentences)
    assert a.primary == "roc_auc" and [c.metric for c in a.comparisons] == ["roc_auc"]
    (c,) = a.comparisons_on("roc_auc")
    assert c.outcome == "beats" and c.winner == "relu"
    assert a.verdicts[0].startswith("activation=relu beats activation=tanh by 0.070 roc auc")
    assert -1 <= c.decision_low <= c.decision_high <= 1
    summary = a.summary.set_index("variant")  # the declared metric is summarised, in [0, 1]
    assert 0 <= summary["roc_auc_ci_low"].min() <= summary["roc_auc_ci_high"].max() <= 1
    assert "2 seeds" not in a.headline and a.headline.startswith("1 decided, 0 undecided")


def test_regression_outcome_lower_is_better():
    rows = [row("model.hidden", "hidden", w, s, {"test_rmse": v})
            for w, vals in ((8, [0.50, 0.52, 0.51]), (32, [0.40, 0.41, 0.42]))
            for s, v in enumerate(vals)]
    a = analyze_runs(info("model.hidden", "hidden", metric={"name": "test_rmse"}), rows, {})
    (c,) = a.comparisons_on("test_rmse")
    assert c.winner == "32" and "lower test RMSE" in a.verdicts[0]


def test_identical_levels_read_as_identical_and_equivalent():
    # the same accuracy in every seed, but not bit-identical runs (their losses differ)
    rows = [row("model.activation", "activation", act, s,
                {"test_accuracy": v, "test_cross_entropy": 0.3 + (0.01 if act == "tanh" else 0)})
            for act in ("relu", "tanh") for s, v in enumerate([0.9, 0.85, 0.95])]
    a = analyze_runs(info("model.activation", "activation"), rows, {})
    (c,) = a.comparisons_on("test_accuracy")
    assert c.outcome == "equivalent" and c.decided
    assert a.verdicts[0] == (
        "activation=relu and activation=tanh gave identical results in every seed (n = 3): "
        "test accuracy the same in each of the 3 seeds, judged equivalent.")
    assert a.headline.startswith("1 decided, 0 undecided")


def _probed(act, seed, zero, dead):
    units = None if act == "sigmoid" else [[dead, dead]]
    probe = {"dead_units": {
        "dead_unit_fraction": units,
        "zero_activation_fraction": None if units is None else [[zero, zero]],
        "zero_activation_fraction_mean": None if units is None else zero,
    }}
    r = row("model.activation", "activation", act, seed,
            {"test_accuracy": 0.9 + 0.01 * seed + 0.001 * len(act), "seconds": 2.0 + 0.1 * seed},
            probes=["dead_units"])
    return r, {"probes": probe, "final": r["final"]}


def test_a_diagnostic_a_variant_lacks_is_not_applicable_never_zero():
    rows, records = [], {}
    for act, zeros in (("relu", [0.55, 0.57, 0.56, 0.58]), ("leaky_relu", [0.45, 0.44, 0.46,
                                                                           0.43]),
                       ("sigmoid", [0, 0, 0, 0])):
        for s, z in enumerate(zeros):
            r, rec = _probed(act, s, z, z / 10)
            rows.append(r)
            records[r["run_id"]] = rec
    a = analyze_runs(info("model.activation", "activation"), rows, records)
    names = [name for name, *_ in a.outcome_verdicts]
    assert names[:2] == ["zero_activation_fraction_mean", "dead_unit_fraction"]
    zero = a.comparisons_on("zero_activation_fraction_mean")
    assert [c.outcome for c in zero] == ["beats", "not applicable", "not applicable"]
    assert zero[0].winner == "leaky_relu" and zero[0].family_size == 1
    sentences = dict((n, s) for n, _, _, s in a.outcome_verdicts)["zero_activation_fraction_mean"]
    assert "lower zero-activation fraction" in sentences[0]
    assert sentences[1].endswith("not applicable — activation=sigmoid records no "
                                 "zero-activation fraction (mean over layers and epochs) (it "
                                 "has no layer the figure is defined for), which is not a "
                                 "value of 0.")
    assert any("its own Holm family" in m for m in a.methods)


# ---------------------------------------------------------------- pooled across contexts


def _two_datasets(effect_moons, effect_circles, n=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, effect in (("moons", effect_moons), ("circles", effect_circles)):
        base = 0.85 + 0.01 * rng.standard_normal(n)
        for act, shift in (("relu", effect), ("sigmoid", 0.0)):
            noise = 0.004 * rng.standard_normal(n)
            for s in range(n):
                rows.append(row("model.activation", "activation", act, s,
                                {"test_accuracy": float(base[s] + shift + noise[s])},
                                dataset=dataset))
    return rows


def test_pooled_estimate_is_statsmodels_random_effects():
    from statsmodels.stats.meta_analysis import combine_effects

    rows = _two_datasets(0.05, 0.03)
    a = analyze_runs(info("model.activation", "activation", datasets=True), rows, {})
    comps = a.comparisons_on("test_accuracy")
    (p,) = [q for q in a.pooled if q.metric == "test_accuracy"]
    eff = np.array([c.result.scaled.estimate for c in comps])
    var = np.array([c.result.scaled.se ** 2 for c in comps])
    ref = combine_effects(eff, var, method_re="iterated", use_t=False)
    assert p.z == pytest.approx(ref.mean_effect_re) and p.se == pytest.approx(ref.sd_eff_w_re)
    assert p.tau2 == pytest.approx(ref.tau2) and p.i2 == pytest.approx(max(0.0, ref.i2))
    assert p.estimate == pytest.approx(np.tanh(ref.mean_effect_re))  # accuracy: atanh scale
    low, high = np.tanh(ref.conf_int(alpha=p.level)[1])
    assert (p.low, p.high) == (pytest.approx(low), pytest.approx(high))
    assert -1 <= p.low <= p.high <= 1
    sentence = a.pooled_sentences[0]
    assert sentence.startswith("Across dataset=moons and dataset=circles, activation=relu "
                               "beats activation=sigmoid by ")
    assert re.search(r"τ² = [^,]+, I² = \d+ %\)", sentence)


def test_pooled_sentence_says_when_the_effect_depends_on_the_context():
    rows = _two_datasets(0.06, -0.06)
    a = analyze_runs(info("model.activation", "activation", datasets=True), rows, {})
    (p,) = [q for q in a.pooled if q.metric == "test_accuracy"]
    assert p.heterogeneous and not p.significant
    assert a.pooled_sentences[0].endswith(": the effect depends on the dataset.")


def test_pool_family_needs_two_contexts():
    rows = _two_datasets(0.05, 0.03)
    a = analyze_runs(info("model.activation", "activation", datasets=True), rows, {})
    one = [c for c in a.comparisons_on("test_accuracy") if c.stratum == "dataset=moons"]
    assert pool_family(one) == []


# ---------------------------------------------------------------- trade-offs


def test_equivalent_accuracy_and_faster_gives_the_trade_off_sentence():
    rows = []
    for prec, secs in (("bf16", [1.00, 1.02, 0.98, 1.01, 0.99]),
                       ("fp32", [1.60, 1.63, 1.58, 1.61, 1.62])):
        for s in range(5):
            acc = 0.90 + 0.001 * ((s * 7) % 5) + (0.0005 if prec == "bf16" and s % 2 else 0)
            rows.append(row("precision", "precision", prec, s,
                            {"test_accuracy": acc, "seconds": secs[s]}))
    a = analyze_runs(info("precision", "precision", equivalence_margin=0.005), rows, {})
    acc = a.comparisons_on("test_accuracy")[0]
    cost = a.comparisons_on("seconds")[0]
    assert acc.outcome == "equivalent" and cost.winner == "bf16"
    assert len(a.tradeoff_sentences) == 1
    assert a.tradeoff_sentences[0].startswith(
        "precision=bf16 is equivalent in test accuracy within ±0.5 pp and 1.6× faster per "
        "run than precision=fp32 (time per run 1 s vs 1.61 s")


# ---------------------------------------------------------------- interactions


def test_interaction_naming_an_unseparated_best_level_says_not_decided():
    i = Interaction("activation", "dataset", "test_accuracy", 9.0, 2, 24, 0.001,
                    cells={"moons": [("sigmoid", 0.929, 0.9, 0.95, 3),
                                     ("relu", 0.917, 0.9, 0.93, 3)]},
                    levels=["relu", "sigmoid"])
    i.p_holm = 0.001
    undecided = Comparison("activation", "test_accuracy", "dataset=moons", "relu", "sigmoid",
                           "a", "b", compare_samples([0.91, 0.92, 0.92], [0.93, 0.92, 0.94],
                                                     paired=True, scale="difference"))
    undecided.decision_low, undecided.decision_high = -0.03, 0.01
    text = interaction_sentence(i, [undecided])
    assert ("sigmoid is best (92.9 %; relu 91.7 %) — not decided: the pairwise test cannot "
            "tell it from activation=relu (91.7 %)") in text


# ---------------------------------------------------------------- error rates


@pytest.mark.parametrize("name, centre, sd", [
    ("zero_activation_fraction_mean", 0.55, 0.02), ("dead_unit_fraction", 0.03, 0.01),
    ("seconds", 2.0, 0.2), ("test_r2", 0.6, 0.05), ("test_rmse", 0.4, 0.03),
])
def test_new_families_keep_the_error_rates_in_simulation(name, centre, sd):
    """The group-sequential procedure on each new outcome's own difference scale: under
    no difference "beats" at most 5 % of the time, a 2-SD effect found at least 80 %."""
    rng = np.random.default_rng(11)
    design, studies = Design.plan(3, 10), 3000
    o = CATALOGUE[name]

    def draw(delta):
        x = centre + delta + sd * rng.standard_normal((studies, 10))
        return np.clip(x, o.low, o.high)

    null, _ = sequential_outcomes(draw(0.0), draw(0.0), design, 0.01, metric=name)
    assert (null == "beats").mean() <= 0.05 + 0.01  # Monte Carlo tolerance
    effect, _ = sequential_outcomes(draw(2 * sd), draw(0.0), design, 0.01, metric=name)
    assert (effect == "beats").mean() >= 0.80


# ---------------------------------------------------------------- README and report


def test_readme_and_report_say_the_same_about_at_chance_runs():
    from ablab.analysis.verdicts import variant_status_sentences  # noqa: F401

    readme = (ROOT / "README.md").read_text()
    html = (ROOT / "src/ablab/report/templates/report.html").read_text()
    md = (ROOT / "src/ablab/report/templates/report.md").read_text()
    said = "kept in their variant's means"
    assert said in " ".join(readme.split()) and said in html and said in md
    assert "at-chance runs are counted and named, and kept" in " ".join(readme.split())


def test_a_treatment_on_other_test_data_says_so():
    rows = []
    for noise, vals in ((0.1, [0.95, 0.96, 0.94]), (0.3, [0.85, 0.86, 0.84])):
        for s, v in enumerate(vals):
            r = row("dataset.noise", "noise", noise, s, {"test_accuracy": v})
            rows.append(r)
    plain = analyze_runs(info("dataset.noise", "noise"), rows, {})
    assert plain.comparisons == []  # a context by default: other test data
    asked = analyze_runs(info("dataset.noise", "noise", roles=["treatment"]), rows, {})
    (c,) = asked.comparisons_on("test_accuracy")
    assert c.different_data and not c.paired  # other test samples: not paired
    assert asked.verdicts[0].startswith("Tested on different data, noise=0.1 beats noise=0.3")


def test_a_layers_diagnostic_can_be_judged_on_its_own():
    rows, records = [], {}
    for act, zeros in (("relu", [0.55, 0.57, 0.56, 0.58]), ("leaky_relu", [0.45, 0.44, 0.46,
                                                                           0.43])):
        for s, z in enumerate(zeros):
            r, rec = _probed(act, s, z, z / 10)
            rec["probes"]["dead_units"]["dead_unit_fraction"] = [[0.9, 0.9], [z / 10, z]]
            rows.append(r)
            records[r["run_id"]] = rec
    a = analyze_runs(info("model.activation", "activation",
                          outcomes=["dead_unit_fraction[1]"]), rows, records)
    (c,) = a.comparisons_on("dead_unit_fraction[1]")
    assert c.winner == "leaky_relu" and c.values_a == [0.55, 0.57, 0.56, 0.58]
    assert a.outcome_verdicts[0][1] == "dead-unit fraction of activation layer 1 (last epoch)"


def test_the_report_leads_with_headline_table_and_decided_verdicts():
    """In report.html: the headline, the compact verdict table, the decided verdicts, then
    the undecided ones, and the study's description only after them."""
    from ablab.report.writer import render_html, render_markdown, report_context

    rows = []
    for act, vals in (("relu", [0.90, 0.91, 0.92, 0.905]), ("tanh", [0.80, 0.82, 0.81, 0.815]),
                      ("gelu", [0.905, 0.90, 0.93, 0.90])):
        for s, v in enumerate(vals):
            rows.append(row("model.activation", "activation", act, s, {"test_accuracy": v}))
    a = analyze_runs(info("model.activation", "activation",
                          description="How the source was reconstructed. " * 30), rows, {})
    assert a.headline == "2 decided, 1 undecided (on test accuracy)"
    html = render_html(report_context(a, []))
    marks = ['<p class="headline">2 decided, 1 undecided (on test accuracy)</p>',
             'class="verdict-table"', '<ul class="verdicts decided">',
             "<h3>Undecided</h3>", 'id="about"', "How the source was reconstructed."]
    at = [html.index(m) for m in marks]
    assert at == sorted(at)
    table = html[at[1]:at[2]]
    assert table.count("<tr class=\"decided\">") == 2 and table.count('<tr class="open">') == 1
    assert "relu vs tanh</td><td class=\"text\">relu</td>" in table
    md = render_markdown(report_context(a, []))
    assert md.index("**2 decided, 1 undecided") < md.index("| factor | context |") < md.index(
        "## About the study")

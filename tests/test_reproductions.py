"""Faithful reproductions: the data options the sources used (per-feature
standardization fitted where the source fitted it, no validation hold-out, a fixed split),
source 001's dead-ReLU scalar, and study files' reference figures and claims in the report
("Against the source")."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ablab.config import parse_run, run_id
from ablab.data.loading import load_data, split_indices
from ablab.errors import ConfigError
from ablab.probes.units import DeadUnits
from ablab.references import Reference, references_from_text
from ablab.report.against_source import find_variants
from ablab.runner import run_study
from ablab.study import builtin_studies, load_study, resolve_study_path

ROOT = Path(__file__).resolve().parents[1]


def digits_cfg(**dataset):
    data = {"name": "digits", "val_fraction": 0.0, "split_seed": 42, **dataset}
    return parse_run({"epochs": 1, "dataset": data, "model": {"name": "mlp"}}).dataset


# ---------------------------------------------------------------- data options


def test_fixed_split_is_the_sources_train_test_split():
    """split_seed = 42, test_fraction = 0.2 is train_test_split(test_size=0.2,
    random_state=42, stratify=y) -- for every run seed."""
    y = load_digits().target
    _, expected = train_test_split(np.arange(len(y)), test_size=0.2, random_state=42, stratify=y)
    for seed in (0, 7):
        bundle = load_data(digits_cfg(), seed=seed)
        assert bundle.sizes() == {"train": 1437, "val": 0, "test": 360}
    ids = split_indices(y, has_test=False, val_fraction=0.0, test_fraction=0.2, subset=None,
                        seed=42)
    assert np.array_equal(ids["test"], np.sort(expected)) and ids["val"] is None
    y2 = make_moons(n_samples=1000, noise=0.3, random_state=42)[1]
    _, expected2 = train_test_split(np.arange(1000), test_size=0.3, random_state=42,
                                    stratify=y2)
    ids2 = split_indices(y2, has_test=False, val_fraction=0.0, test_fraction=0.3, subset=None,
                         seed=42)
    assert np.array_equal(ids2["test"], np.sort(expected2)) and len(ids2["train"]) == 700


def test_per_feature_fitted_on_all_equals_standard_scaler_on_all():
    d = load_digits()
    scaled = StandardScaler().fit_transform(d.data)
    bundle = load_data(digits_cfg(normalize="per_feature", normalize_fit_on="all"), seed=0)
    assert tuple(bundle.mean.shape) == (1, 1, 8, 8)
    _, test_idx = train_test_split(np.arange(1797), test_size=0.2, random_state=42,
                                   stratify=d.target)
    ours = bundle.normalize(bundle.test.x).reshape(360, 64).numpy()
    assert np.allclose(ours, scaled[np.sort(test_idx)], atol=1e-5)


def test_per_feature_fitted_on_train_uses_the_training_split_only():
    d = load_digits()
    train_idx, test_idx = train_test_split(np.arange(1797), test_size=0.2, random_state=42,
                                           stratify=d.target)
    scaler = StandardScaler().fit(d.data[np.sort(train_idx)])
    bundle = load_data(digits_cfg(normalize="per_feature"), seed=0)
    ours = bundle.normalize(bundle.test.x).reshape(360, 64).numpy()
    assert np.allclose(ours, scaler.transform(d.data[np.sort(test_idx)]), atol=1e-5)
    # constant pixels (the corners of Digits) keep scale 1, as StandardScaler does
    assert float(bundle.std[0, 0, 0, 0]) == 1.0 and float(bundle.mean[0, 0, 0, 0]) == 0.0


def test_fit_on_all_needs_a_fitted_mode_and_leaves_old_run_ids_alone():
    with pytest.raises(ConfigError, match=r"dataset\.normalize_fit_on: .*\"unit\""):
        digits_cfg(normalize="unit", normalize_fit_on="all")
    base = {"epochs": 1, "dataset": {"name": "digits"}, "model": {"name": "mlp"}}
    cfg = parse_run(base)
    assert "normalize_fit_on" not in cfg.resolved()["dataset"]
    explicit = parse_run({**base, "dataset": {"name": "digits", "normalize_fit_on": "train"}})
    assert run_id(explicit) == run_id(cfg)
    fitted = parse_run({**base, "dataset": {"name": "digits", "normalize": "standard",
                                             "normalize_fit_on": "all"}})
    assert fitted.resolved()["dataset"]["normalize_fit_on"] == "all"


@pytest.mark.parametrize("table", [
    {"early_stopping": {"monitor": "val_loss"}},
    {"schedule": {"name": "reduce_on_plateau", "monitor": "val_loss"}},
])
def test_no_validation_hold_out_refuses_what_monitors_it(table):
    data = {"epochs": 1, "dataset": {"name": "digits", "val_fraction": 0.0},
            "model": {"name": "mlp"}, **table}
    with pytest.raises(ConfigError, match="val_fraction is 0"):
        parse_run(data)


def test_no_validation_hold_out_trains_on_everything_and_records_no_val_metrics():
    from ablab.train import fit

    cfg = parse_run({"epochs": 2, "seed": 0, "device": "cpu",
                     "dataset": {"name": "moons", "n_samples": 200, "val_fraction": 0.0},
                     "model": {"name": "mlp", "hidden": [8]}})
    result = fit(cfg)
    assert result.sizes == {"train": 160, "val": 0, "test": 40}
    assert all(h["val_accuracy"] is None for h in result.history)
    assert result.final["best_val_accuracy"] is None


# ---------------------------------------------------------------- dead ReLU scalar


def test_zero_activation_fraction_mean_is_source_001s_scalar():
    """Averaged over layers (equal weight), then over the states each epoch started from
    (epochs 0 .. E-1; the state after the last step is left out), as the source did."""
    from ablab.train import fit

    cfg = parse_run({"epochs": 6, "seed": 1, "device": "cpu", "batch_size": "full",
                     "dataset": {"name": "moons", "n_samples": 200, "val_fraction": 0.0},
                     "model": {"name": "mlp", "hidden": [16, 8], "init": "normal(0, 0.01)"},
                     "optimizer": {"name": "adam", "lr": 0.05},
                     "probes": ["dead_units"]})
    out = fit(cfg).probes["dead_units"]
    zero = np.array(out["zero_activation_fraction"], dtype=float)
    assert out["epochs"] == list(range(7)) and zero.shape == (7, 2)
    assert out["zero_activation_fraction_mean"] == pytest.approx(zero[:6].mean(axis=1).mean())


def test_zero_activation_fraction_mean_skips_layers_without_a_value():
    probe = DeadUnits.__new__(DeadUnits)
    probe.last, probe.epochs = 3, [0, 2, 3]
    probe.zero = [[0.5, None], [0.7, 0.1], [0.9, 0.9]]
    assert probe.mean_zero_fraction() == pytest.approx((0.5 + 0.4) / 2)
    probe.zero = [[None, None]] * 3
    assert probe.mean_zero_fraction() is None


# ---------------------------------------------------------------- references


def test_reference_values_are_validated():
    with pytest.raises(ValueError, match=r"write 0\.9833 for 98\.33 %"):
        Reference(value=98.33, source="x")
    refs, claims = references_from_text(
        '[[reference]]\nlevels = { loss = "mse_softmax" }\nvalue = 0.9\nsource = "s"\n'
        '[[reference_claim]]\nclaim = "a beats b"\nbetter = { x = 1 }\nworse = { x = 2 }\n'
        'source = "s"\n'
    )
    assert refs[0].levels == {"loss": "mse_softmax"} and refs[0].metric == "test_accuracy"
    assert claims[0].better == {"x": 1}
    assert references_from_text("not toml [") == ([], [])


def test_a_bad_reference_in_a_study_file_is_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[base]\nepochs = 1\ndataset = "moons"\nmodel = "mlp"\n'
                    '[[reference]]\nvalue = 0.5\nsource = "s"\nmetrc = "test_loss"\n')
    with pytest.raises(ConfigError, match=r"reference\[0\]\.metrc: unknown field"):
        load_study(path)


def _planned_variants(study):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from reproduce import _variants_of

    return _variants_of(study)


@pytest.mark.parametrize("name", sorted(builtin_studies()))
def test_builtin_references_each_name_exactly_one_variant(name):
    study = load_study(name)
    if study.config.tune is not None:
        pytest.skip("a tuned study compares settings its source never ran: no figures to "
                    "set beside")
    if not study.config.description.strip().startswith("Source report"):
        pytest.skip("a demonstration study (digits-variance-sources): it reproduces no source")
    refs, claims = references_from_text(resolve_study_path(name).read_text())
    variants = _planned_variants(study)
    for ref in refs:
        assert len(find_variants(ref.levels, variants)) == 1, ref
    for claim in claims:
        assert len(find_variants(claim.better, variants)) == 1, claim
        assert len(find_variants(claim.worse, variants)) == 1, claim
    assert refs or claims


STUDY = """
name = "tiny-against-source"
seeds = [0, 1, 2]

[base]
epochs = 3
batch_size = "full"
device = "cpu"
dataset = { name = "moons", n_samples = 200, noise = 0.2, val_fraction = 0.0 }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.05 }
probes = ["dead_units"]

[[vary]]
"model.activation" = ["relu", "sigmoid"]

[[reference]]
levels = { "model.activation" = "relu" }
value = 0.0
source = "made up: far below"

[[reference]]
levels = { activation = "sigmoid" }
value = SIGMOID
source = "made up: ablab's own mean"

[[reference]]
levels = { "model.activation" = "relu" }
metric = "zero_activation_fraction_mean"
value = 0.5
source = "made up"

[[reference]]
levels = { "model.activation" = "tanh" }
value = 0.5
source = "made up: no such variant"

[[reference_claim]]
claim = "ReLU beats Sigmoid"
better = { "model.activation" = "relu" }
worse = { "model.activation" = "sigmoid" }
source = "made up"
"""


def test_report_sets_reference_figures_beside_ablabs(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace("SIGMOID", "0.5"))
    study = load_study(path)
    run_study(study, tmp_path / "out", workers=1, threads=1)
    from ablab.analysis import analyze
    from ablab.report.against_source import against_source, metric_by_seed
    from ablab.store import StudyStore

    a = analyze(StudyStore.existing(tmp_path / "out"))
    sigmoid = next(v for v in a.variants if "sigmoid" in v.label)
    values = list(metric_by_seed(sigmoid, "test_accuracy").values())
    mean = float(np.mean(values))
    section = against_source(a)
    rows = section["figures_data"]
    assert [r["verdict"].split(";")[0] for r in rows[:1]] == ["below the CI"]
    assert rows[0]["n"] == 3 and math.isclose(rows[1]["mean"], mean)
    assert rows[2]["metric"] == "zero_activation_fraction_mean" and 0 <= rows[2]["mean"] <= 1
    assert rows[3]["verdict"].startswith("matches no variant")
    assert section["claims"][0].startswith("The source's \u201cReLU beats Sigmoid\u201d")
    assert re.search(r"(holds|is reversed|is not distinguishable) over 3 / 3 seeds",
                     section["claims"][0])
    md = (tmp_path / "out" / "report.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    for text in (md, html):
        assert "Against the source" in text and "made up: far below" in text
        assert "below the CI" in text and "ReLU beats Sigmoid" in text


def test_inside_when_the_figure_is_ablabs_mean(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.replace("SIGMOID", "0.5"))
    run_study(load_study(path), tmp_path / "out", workers=1, threads=1, report=False)
    from ablab.analysis import analyze
    from ablab.report.against_source import compare_reference, metric_by_seed
    from ablab.store import StudyStore

    a = analyze(StudyStore.existing(tmp_path / "out"))
    relu = next(v for v in a.variants if "relu" in v.label)
    values = list(metric_by_seed(relu, "test_accuracy").values())
    ref = Reference(levels={"model.activation": "relu"}, value=float(np.mean(values)),
                    source="s")
    row = compare_reference(ref, a.variants)
    if np.std(values) > 0:
        assert row["inside"] is True and row["verdict"] == "inside"
    else:  # a constant sample: the CI is the value itself, which is the figure
        assert row["ci_low"] == row["ci_high"] == row["value"] and row["inside"] is True


def test_report_without_references_has_no_such_section(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.split("[[reference]]")[0])
    run_study(load_study(path), tmp_path / "out", workers=1, threads=1, report=False)
    from ablab.analysis import analyze
    from ablab.report import render_html, render_markdown, report_context
    from ablab.store import StudyStore

    context = report_context(analyze(StudyStore.existing(tmp_path / "out")), [])
    assert context["against_source"]["figures"]["rows"] == []
    # the heading and the nav link, not the stylesheet's comment that names the section
    markdown, html = render_markdown(context), render_html(context)
    assert "## Against the source" not in markdown and "Methodology warnings" in markdown
    assert 'id="against-source"' not in html and 'href="#against-source"' not in html
    assert "Methodology warnings" in html


def _variant(name: str, accuracies: list[float]):
    from ablab.analysis.runs import Variant

    runs = [{"run_id": f"{name}{s}", "seed": s, "status": "done"} for s in range(len(accuracies))]
    metrics = {f"{name}{s}": {"test_accuracy": a} for s, a in enumerate(accuracies)}
    return Variant(name, f"loss={name}", {"loss": name}, {"loss": name, "dataset": {}},
                   runs=runs, run_metrics=metrics)


def test_a_claim_with_the_same_difference_in_every_seed_says_so_not_an_infinite_interval():
    """fashion-digits-losses on Digits: CE and MSE gave the same test accuracy in each of 5
    seeds. The sign test cannot decide that at 95 % with 5 seeds, and the sentence says so
    instead of printing the interval [-inf, inf]."""
    from ablab.references import ReferenceClaim
    from ablab.report.against_source import judge_claim

    same = [0.9778, 0.9722, 0.9722, 0.9833, 0.9806]
    claim = ReferenceClaim(claim="CE beats MSE", better={"loss": "ce"}, worse={"loss": "mse"},
                           source="source report 001")
    out = judge_claim(claim, [_variant("ce", same), _variant("mse", same)])
    assert out["judgement"] == "not distinguishable"
    assert "inf" not in out["text"]
    assert "the same difference in every seed" in out["text"]
    # an ordinary difference still prints its interval
    out = judge_claim(claim, [_variant("ce", [0.98, 0.97, 0.99, 0.985, 0.975]),
                              _variant("mse", [0.95, 0.96, 0.94, 0.955, 0.945])])
    assert out["judgement"] == "holds" and "95 % CI [" in out["text"]

"""Sources of variance (issue #18): split, init and order seeds; the nested design a study
with ``variance = "sources"`` runs; the variance-components estimator; the report section."""

import itertools

import numpy as np
import pytest
import torch
from conftest import tiny_run
from reference_fit import assert_trains_as_reference, reference_fit, without_timings

from ablab.analysis import analyze_runs
from ablab.analysis.variance import (
    SOURCES,
    Decomposition,
    NotEstimated,
    decompose,
    decompose_study,
    nested_mean_squares,
    resplit_threshold,
    terminal_lines,
    without_design_runs,
)
from ablab.config import parse_run, run_id
from ablab.errors import ConfigError
from ablab.study import DESIGN_SEED_STRIDE, StudyConfig, expand
from ablab.train import fit
from ablab.train import state as train_state
from ablab.train.state import start_run

DROPOUT_MLP = {"name": "mlp", "hidden": [16], "dropout": 0.3}




# ---------------------------------------------------------------- the three seeds


def test_unset_seeds_leave_ids_and_configs_as_they_were():
    cfg = parse_run(tiny_run())
    assert run_id(cfg) == "9a5cd1bf6f59"  # as test_identity pins it
    assert "init_seed" not in cfg.resolved() and "order_seed" not in cfg.resolved()
    assert (cfg.split_seed, cfg.init_seed_value, cfg.order_seed_value) == (0, 0, 0)
    other = parse_run(tiny_run(init_seed=5, order_seed=6))
    assert other.resolved()["init_seed"] == 5 and run_id(other) != run_id(cfg)
    # a top-level split_seed is dataset.split_seed: one place, one run id
    top = parse_run(tiny_run(split_seed=7))
    inside = parse_run(tiny_run(dataset={**tiny_run()["dataset"], "split_seed": 7}))
    assert run_id(top) == run_id(inside) and top.split_seed == 7
    with pytest.raises(ConfigError, match="split_seed: is dataset.split_seed, which is "
                                          "already 3"):
        parse_run(tiny_run(split_seed=7, dataset={"name": "moons", "split_seed": 3}))


def test_defaults_train_what_one_seed_trained_before_the_three_seeds(one_thread, monkeypatch):
    """With none of the three seeds set, a run trains as every run did before they existed
    (#18): one ``torch.manual_seed(seed)`` before the model is built, dropout continuing
    that stream, the loader shuffling from ``seed``. Compared bit for bit with a plain
    loop doing just that on this machine (tests/reference_fit.py); a dropout MLP, so the
    order stream (dropout masks after the init) is covered too. The run id is the one
    main gave (a hash of the config: the same on every machine)."""
    cfg = parse_run(tiny_run(seed=1, model=DROPOUT_MLP))
    assert cfg.init_seed_value == cfg.order_seed_value == cfg.seed == 1  # one seed, one stream
    result = fit(cfg)
    assert result.run_id == "68684bdfb09f"
    reference = reference_fit(cfg)
    assert_trains_as_reference(result, reference)
    # Were dropout's stream restarted after the build (as a separate order seed does),
    # the masks, and so the losses, would differ: the comparison tells.
    build = train_state.build_model

    def restarted(*args, **kwargs):
        model = build(*args, **kwargs)
        torch.manual_seed(cfg.seed)
        return model

    monkeypatch.setattr(train_state, "build_model", restarted)
    with pytest.raises(AssertionError):
        assert_trains_as_reference(fit(cfg), reference)


def _start(**over):
    run = start_run(parse_run(tiny_run(model=DROPOUT_MLP, **over)), torch.device("cpu"))
    weights = torch.cat([p.detach().flatten() for p in run.model.parameters()])
    first_batch = next(iter(run.loader))[1]
    return run.bundle.train.x, weights, first_batch


def test_each_seed_drives_its_own_source():
    base_x, base_w, base_batch = _start()
    # order_seed: same split, same initial weights, another batch order
    x, w, batch = _start(order_seed=11)
    assert torch.equal(x, base_x) and torch.equal(w, base_w)
    assert not torch.equal(batch, base_batch)
    # init_seed: same split and order, other weights
    x, w, batch = _start(init_seed=11)
    assert torch.equal(x, base_x) and not torch.equal(w, base_w)
    assert torch.equal(batch, base_batch)
    # split_seed: another split, same initial weights
    x, w, _ = _start(split_seed=11)
    assert x.shape == base_x.shape and not torch.equal(x, base_x) and torch.equal(w, base_w)


def test_changing_only_the_order_seed_changes_results_not_the_split(one_thread):
    a = fit(parse_run(tiny_run(model=DROPOUT_MLP)))
    b = fit(parse_run(tiny_run(model=DROPOUT_MLP, order_seed=11)))
    assert a.sizes == b.sizes
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]
    # the order seed restarts dropout's stream: same batches, other masks
    c = fit(parse_run(tiny_run(model=DROPOUT_MLP, order_seed=11, init_seed=0, seed=0)))
    assert without_timings(c.to_dict())["history"] != without_timings(a.to_dict())["history"]
    assert c.batch_losses != a.batch_losses


# ---------------------------------------------------------------- the design


BASE = {"epochs": 1, "device": "cpu", "dataset": {"name": "moons", "n_samples": 200},
        "model": {"name": "mlp", "hidden": [8]}}


def _study(seeds=(0, 1, 2), **extra):
    data = {"name": "t", "seeds": list(seeds), "base": BASE,
            "vary": [{"model.activation": ["relu", "tanh"]}], **extra}
    return expand(StudyConfig.model_validate(data), "s.toml")


def test_design_expansion():
    plain, design = _study(), _study(variance="sources")
    k = 3
    assert len(design.runs) == 2 * k**3 and len(design.variants()) == 2
    assert len({r.run_id for r in design.runs}) == len(design.runs)
    # the study's own runs come first, unchanged
    assert [r.run_id for r in design.runs[:6]] == [r.run_id for r in plain.runs]
    assert not any(r.in_design_only for r in design.runs[:6])
    for vid, runs in design.variants().items():
        cells = {(r.variance_cell["split"], r.variance_cell["init"], r.variance_cell["order"])
                 for r in runs}
        assert cells == set(itertools.product(range(k), repeat=3))
        assert {r.variance_cell["of"] for r in runs} == {vid}
        for r in runs:
            c, cfg = r.variance_cell, r.config
            assert r.seed == [0, 1, 2][c["split"]]  # the split is the study seed's
            assert cfg.dataset.split_seed is None and cfg.split_seed == r.seed
            assert (cfg.init_seed is None) == (c["init"] == 0)
            assert (cfg.order_seed is None) == (c["init"] == c["order"] == 0)
        inits = [r.config.init_seed_value for r in runs]
        orders = [r.config.order_seed_value for r in runs]
        # a fresh draw per level: k inits per split, k orders per init, all distinct
        assert len(set(zip([r.seed for r in runs], inits, strict=True))) == k * k
        assert len(set(orders)) == k**3
    resolved = design.resolved()
    assert resolved["variance"] == "sources"
    assert sum(1 for r in resolved["runs"] if r["variance_cell"]["order"]) == 2 * k * k * (k - 1)
    assert design.runs[-1].config.init_seed == 2 + 2 * DESIGN_SEED_STRIDE
    assert "order_seed=" in design.runs[-1].label


@pytest.mark.parametrize("extra,message", [
    ({"base": {**BASE, "init_seed": 3}}, r"base.init_seed: variance = \"sources\" draws"),
    ({"base": {**BASE, "dataset": {"name": "moons", "split_seed": 42}}},
     "base.dataset: variance"),
    ({"vary": [{"order_seed": [1, 2]}]}, r"vary\[0\].order_seed: variance"),
])
def test_design_refuses_seeds_it_draws_itself(extra, message):
    data = {"name": "t", "seeds": [0, 1], "base": BASE, "variance": "sources", **extra}
    with pytest.raises(ConfigError, match=message):
        expand(StudyConfig.model_validate(data), "s.toml")


def test_variance_field_is_validated():
    with pytest.raises(Exception, match="sources"):
        StudyConfig.model_validate({"name": "t", "base": BASE, "variance": "split"})


def test_seed_fields_vary_like_any_field():
    study = expand(StudyConfig.model_validate(
        {"name": "t", "seeds": [0, 1], "base": BASE, "vary": [{"init_seed": [5, 6]}]}), "s.toml")
    assert len(study.variants()) == 2
    assert {r.config.init_seed for r in study.runs} == {5, 6}


# ---------------------------------------------------------------- the estimator


def _nested(rng, sds, shape):
    a, b, c = shape
    return (rng.normal(0, sds[0], (a, 1, 1)) + rng.normal(0, sds[1], (a, b, 1))
            + rng.normal(0, sds[2], (a, b, c)))


TRUTH = {"split": 4.0, "init": 1.0, "order": 0.25}


def test_estimator_recovers_known_components():
    rng = np.random.default_rng(7)
    d = decompose(_nested(rng, [2.0, 1.0, 0.5], (60, 4, 4)))
    for s in SOURCES:
        low, high = d.component_ci[s]
        assert low <= d.components[s] <= high
        assert d.components[s] == pytest.approx(TRUTH[s], rel=0.35)
        assert d.shares[s] == pytest.approx(TRUTH[s] / 5.25, abs=0.12)
    assert sum(d.shares.values()) == pytest.approx(1.0)
    assert high - low < 0.1  # 720 degrees of freedom for the order component


@pytest.mark.slow
def test_intervals_cover_the_components_in_simulation():
    """200 designs of the built-in study's size (3 × 3 × 3) with known components: each
    95 % interval covers its component and its share close to 95 % of the time (0.90 to
    0.99 allows for 200 samples; measured over 400: 93.5 to 97 %)."""
    rng = np.random.default_rng(11)
    hits = {(s, kind): 0 for s in SOURCES for kind in ("component", "share")}
    n, total = 200, sum(TRUTH.values())
    for i in range(n):
        d = decompose(_nested(rng, [2.0, 1.0, 0.5], (3, 3, 3)), draws=1000, seed=i)
        for s in SOURCES:
            low, high = d.component_ci[s]
            hits[s, "component"] += low <= TRUTH[s] <= high
            low, high = d.share_ci[s]
            hits[s, "share"] += low <= TRUTH[s] / total <= high
    assert all(0.90 <= h / n <= 0.99 for h in hits.values()), hits


def test_estimator_equals_reml_on_a_balanced_design():
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    y = _nested(rng, [1.5, 1.0, 0.7], (12, 3, 3))
    d = decompose(y, draws=10)
    split, init, _ = np.meshgrid(range(12), range(3), range(3), indexing="ij")
    frame = pd.DataFrame({"y": y.ravel(), "split": split.ravel(), "init": init.ravel()})
    fit_ = smf.mixedlm("y ~ 1", frame, groups="split", re_formula="1",
                       vc_formula={"init": "0 + C(init)"}).fit(reml=True)
    assert all(v > 0 for v in d.components.values())  # interior: ANOVA = REML
    assert d.components["split"] == pytest.approx(float(fit_.cov_re.iloc[0, 0]), rel=1e-3)
    assert d.components["init"] == pytest.approx(float(fit_.vcomp[0]), rel=1e-3)
    assert d.components["order"] == pytest.approx(float(fit_.scale), rel=1e-3)


def test_mean_squares_and_a_source_without_variance():
    y = np.zeros((3, 2, 2))
    y[:, :, 1] = 1.0  # only the order changes anything
    ms = nested_mean_squares(y)
    assert {s: df for s, (_, df) in ms.items()} == {"split": 2, "init": 3, "order": 6}
    d = decompose(y)
    assert d.components["split"] == d.components["init"] == 0.0
    assert d.shares["order"] == 1.0
    with pytest.raises(ValueError, match="every size >= 2"):
        decompose(np.zeros((3, 1, 2)))


# ---------------------------------------------------------------- study analysis, report


def _synthetic_study(missing: int = 0):
    """study.json info and index rows of a 1-factor design study, no training: accuracies
    with a known split component."""
    study = _study(seeds=(0, 1, 2), variance="sources")
    info = {**study.resolved(), "equivalence_margin": 0.01}
    rng = np.random.default_rng(0)
    split_effect = rng.normal(0, 0.02, 3)
    rows = []
    for r in study.runs:
        c = r.variance_cell
        value = 0.85 + split_effect[c["split"]] + rng.normal(0, 0.005)
        if r.config.model.activation.name == "tanh":
            value += 0.003
        rows.append({
            "run_id": r.run_id, "variant_id": r.variant_id, "variant_label": r.variant_label,
            "variant": r.variant, "seed": r.seed, "config": r.config.resolved(),
            "status": "done", "final": {"test_accuracy": float(value)},
        })
    for row in rows[-missing:] if missing else []:
        row["status"], row["final"] = "pending", None
    return info, rows


def test_analysis_keeps_design_runs_out_of_the_verdicts():
    info, rows = _synthetic_study()
    assert len(without_design_runs(info, rows)) == 6
    a = analyze_runs(info, rows)
    assert a.counts["done"] == 54
    assert [len(v.runs) for v in a.variants] == [3, 3]  # the study's own runs
    assert len(a.runs) == 6
    decomps = a.variance_sources
    assert len(decomps) == 2 and all(isinstance(d, Decomposition) for d in decomps)
    assert all(d.shares["split"] > 0.5 for d in decomps)  # the split dominates, by design
    assert a.variance_sentences[0].startswith("Re-splitting the data alone")
    limit = resplit_threshold(decomps)
    assert f"under {limit * 100:.1f} pp" in a.variance_sentences[0]
    assert any("within the noise of re-splitting" in s for s in a.variance_sentences[2:])
    assert any("Sources of variance" in m and "Bouthillier" in m for m in a.methods)
    lines = terminal_lines(a.variance_sources, a.variance_sentences)
    assert len(lines) == 3 and all(line.startswith("SOURCES ") for line in lines)
    assert "the data split" in lines[0] and "Re-splitting" in lines[2]


def test_incomplete_design_is_not_estimated():
    info, rows = _synthetic_study(missing=2)
    out = decompose_study(info, rows)
    assert isinstance(out[0], Decomposition)
    assert isinstance(out[1], NotEstimated) and "2 of 27" in out[1].reason


def test_report_shows_the_section():
    from ablab.report.writer import render_html, render_markdown, report_context

    info, rows = _synthetic_study()
    context = report_context(analyze_runs(info, rows), [])
    md, html = render_markdown(context), render_html(context)
    assert "## Sources of variance" in md and "### What it means for the verdicts" in md
    assert "data split: share" in md and "within the noise of re-splitting the data" in md
    assert 'id="variance-sources"' in html and "Sources of variance" in html
    plain = report_context(analyze_runs(*_plain_study()), [])
    assert "Sources of variance" not in render_markdown(plain)


def _plain_study():
    info, rows = _synthetic_study()
    info = {k: v for k, v in info.items() if k != "variance"}
    return info, without_design_runs({**info, "variance": "sources"}, rows)


@pytest.mark.slow
def test_tiny_design_study_end_to_end(tmp_path):
    from ablab.runner import run_study
    from ablab.study import load_study

    path = tmp_path / "v.toml"
    path.write_text(
        'name = "v"\ndescription = "tiny"\nseeds = [0, 1]\nvariance = "sources"\n[base]\n'
        'epochs = 2\nbatch_size = 32\ndevice = "cpu"\n'
        'dataset = { name = "moons", n_samples = 200, noise = 0.3 }\n'
        'model = { name = "mlp", hidden = [8], dropout = 0.2 }\n'
    )
    outcome = run_study(load_study(path), tmp_path / "out", workers=1)
    assert outcome.counts["done"] == 8
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Sources of variance" in md and "2 × 2 × 2" in md
    design = (tmp_path / "out" / "variance_runs.csv").read_text().splitlines()
    assert len(design) == 9 and design[0].startswith("run_id,variant,seed,split,init,order")
    assert len((tmp_path / "out" / "results.csv").read_text().splitlines()) == 3


def test_until_decided_refuses_a_variance_design(tmp_path):
    # each round would re-expand the k³ design; the design's runs never reach the verdicts
    from ablab.adaptive import run_until_decided
    from ablab.errors import UserError

    study = tmp_path / "s.toml"
    study.write_text(
        'name = "s"\nseeds = [0, 1]\nvariance = "sources"\n'
        '[base]\nepochs = 1\ndataset = "moons"\nmodel = { name = "mlp", hidden = [4] }\n'
        '[[vary]]\n"model.activation" = ["relu", "tanh"]\n'
    )
    with pytest.raises(UserError, match=r"--until-decided: s asks for variance = 'sources'"):
        run_until_decided(str(study), tmp_path / "out")
    assert not (tmp_path / "out").exists()

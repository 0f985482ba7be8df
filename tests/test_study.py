"""Study files: expansion (product, zip), stable ids, labels, validation errors."""

import pytest

from ablab.errors import ConfigError
from ablab.study import StudyConfig, builtin_studies, expand, load_study

BASE = {
    "epochs": 2,
    "batch_size": 32,
    "device": "cpu",
    "dataset": {"name": "moons", "n_samples": 200},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "adam", "lr": 0.01},
}


def make(vary, seeds=(0, 1), base=None, source="s.toml"):
    cfg = StudyConfig.model_validate(
        {"name": "t", "seeds": list(seeds), "base": base or BASE, "vary": vary}
    )
    return expand(cfg, source)


def error_of(vary, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        make(vary, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_factors_multiply_and_zipped_keys_move_together():
    study = make([
        {"model.activation": ["relu", "tanh", "sigmoid"]},
        {"dataset.name": ["moons", "circles"], "dataset.noise": [0.3, 0.2]},
    ])
    assert len(study.runs) == 3 * 2 * 2
    assert len(study.variants()) == 6
    labels = {r.label for r in study.runs}
    assert "activation=tanh, dataset=circles, noise=0.2, seed=1" in labels
    for run in study.runs:
        noise = run.config.dataset.options["noise"]
        assert noise == (0.3 if run.config.dataset.name == "moons" else 0.2)
    assert study.columns == {"model.activation": "activation", "dataset.name": "dataset",
                             "dataset.noise": "noise"}


def test_ids_are_stable_under_unrelated_edits():
    a = make([{"model.activation": ["relu", "tanh"]}])
    b = make([{"model.activation": ["relu", "tanh", "gelu"]}])
    ids_a = {r.label: r.run_id for r in a.runs}
    ids_b = {r.label: r.run_id for r in b.runs}
    for label, rid in ids_a.items():
        assert ids_b[label] == rid
    assert len({r.run_id for r in b.runs}) == len(b.runs)
    # Seeds share the variant id; variants differ.
    tanh = [r for r in a.runs if "tanh" in r.label]
    assert tanh[0].variant_id == tanh[1].variant_id != a.runs[0].variant_id


def test_no_factor_gives_one_variant_per_seed():
    study = make([], seeds=(0, 1, 2))
    assert [r.label for r in study.runs] == ["seed=0", "seed=1", "seed=2"]


@pytest.mark.parametrize("vary, fragment", [
    ([{"model.activaton": ["relu"]}], 'vary[0]."model.activaton": unknown option'),
    ([{"optimizer.lrr": [0.1]}], 'vary[0]."optimizer.lrr": unknown option'),
    ([{"epochs": [0, 1]}], 'vary[0]."epochs": must be an integer > 0'),
    ([{"model.activation": []}], 'vary[0]."model.activation": empty list'),
    ([{"dataset.name": ["moons", "circles"], "dataset.noise": [0.1]}],
     "vary[0]: keys inside one factor move together"),
    ([{"model.activation": ["relu", "relu"]}], "resolve to the same runs"),
    ([{"model.activation": ["relu"]}, {"model.activation": ["tanh"]}], "already varied"),
    ([{}], "vary[0]: a factor needs at least one key"),
    ([{"seed": [1, 2]}], "use the top-level seeds list"),
])
def test_bad_factors_name_the_file_and_key(vary, fragment):
    message = error_of(vary)
    assert message.startswith("s.toml: ")
    assert fragment in message


def test_bad_base_names_base_path():
    base = dict(BASE, optimizer={"name": "adam", "lr": -1})
    assert "s.toml: base.optimizer.lr: must be a finite number > 0 (got -" in error_of(
        [{"model.activation": ["relu"]}], base=base)


def test_study_level_errors(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "x"\nseeds = []\n[base]\nepochs = 1\n')
    with pytest.raises(ConfigError, match=r"study.toml: seeds: List should have at least 1"):
        load_study(path)
    path.write_text('name = "x"\ncolour = 1\n[base]\nepochs = 1\n')
    with pytest.raises(ConfigError, match=r"study.toml: colour: unknown field; allowed: name"):
        load_study(path)
    with pytest.raises(ConfigError, match="no such study file or built-in study"):
        load_study("moons-circles-activation")
    with pytest.raises(ConfigError, match="did you mean 'moons-circles-activations'"):
        load_study("moons-circles-activation")


def test_seeds_and_set_override_the_file():
    study = load_study("moons-circles-activations", seeds=2, sets=["epochs=1"])
    assert {r.seed for r in study.runs} == {0, 1}
    assert all(r.config.epochs == 1 for r in study.runs)
    # --set on a varied key gives every variant that value; collapsing variants is an error.
    keras = load_study("cifar10-keras-baseline-vs-improved", seeds=1, sets=["epochs=1"])
    assert [r.config.epochs for r in keras.runs] == [1, 1, 1]
    with pytest.raises(ConfigError, match="resolve to the same runs"):
        load_study("moons-circles-activations", sets=["model.activation=tanh"])


EXPECTED_BUILTINS = {
    "cifar10-activations", "cifar10-deep-activations", "fashion-digits-losses",
    "moons-circles-activations", "fashion-digits-optimizers", "fashion-cnn-losses-optimizers",
    "cifar10-heads", "cifar10-keras-baseline-vs-improved",
}


def test_every_builtin_study_validates():
    assert set(builtin_studies()) >= EXPECTED_BUILTINS
    for name in builtin_studies():
        study = load_study(name)
        assert study.config.seeds == [0, 1, 2], name
        assert study.config.description.strip(), name
        # "seed" means the random seed in this tool; the sources are "source report 00N"
        assert "Seed 00" not in study.config.description, name
        assert len(study.runs) >= 3

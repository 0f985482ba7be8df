"""Run-config validation: every bad value gets one line naming the field and what is allowed."""

import pytest
from conftest import tiny_run

from ablab.config import apply_overrides, load_run, parse_init, parse_run, run_id
from ablab.errors import ConfigError


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_run(data, "run.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("run.toml: ")
    return message


def test_valid_config_resolves_defaults():
    cfg = parse_run(tiny_run(), "run.toml")
    assert cfg.loss.name == "cross_entropy" and cfg.loss.options == {"label_smoothing": 0.0}
    assert cfg.optimizer.options["lr"] == 0.01
    assert cfg.optimizer.options["beta1"] == 0.9  # defaults filled in
    assert cfg.model.options == {"hidden": [16]}
    assert cfg.model.activation.name == "relu"
    assert cfg.schedule.name == "none"


@pytest.mark.parametrize(
    "over, expected",
    [
        ({"epochs": 0}, "epochs: must be an integer > 0"),
        ({"batch_size": 0}, 'batch_size: must be a positive integer or "full"'),
        ({"batch_size": "half"}, 'batch_size: must be a positive integer or "full"'),
        ({"learning_rate": 1}, "learning_rate: unknown field; allowed: name, seed, epochs"),
        ({"optimizer": {"name": "adam", "lr": -1}}, "optimizer.lr: must be a finite number > 0"),
        ({"optimizer": {"name": "adamm"}}, "optimizer.name: unknown optimizer 'adamm'"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "optimizer.momentum: unknown option"),
        (
            {"optimizer": {"name": "sgd", "nesterov": True}},
            "optimizer.nesterov: nesterov = true needs momentum > 0",
        ),
        ({"model": {"name": "mlp", "dropout": 1.5}}, "model.dropout: must be a finite number in"),
        ({"model": {"name": "mlp", "activation": "relux"}}, "did you mean 'relu'?"),
        ({"model": {"name": "mlp", "hidden": "big"}}, "model.hidden: "),
        ({"model": {"name": "mlp", "init": "uniform"}}, "model.init: unknown init 'uniform'"),
        ({"model": {"name": "resnet"}}, "model.name: unknown model 'resnet'; allowed:"),
        ({"dataset": {"name": "cifar100"}}, "dataset.name: unknown dataset 'cifar100'"),
        ({"dataset": {"name": "moons", "val_fraction": 1.0}}, "dataset.val_fraction: "),
        ({"dataset": {"name": "moons", "colour": 1}}, "dataset.colour: unknown option"),
        ({"dataset": {"name": "moons", "augment": {"rotate": 5}}}, "dataset.augment.rotate"),
        ({"loss": "hinge"}, "loss.name: unknown loss 'hinge'"),
        ({"loss": {"name": "cross_entropy", "label_smoothing": 2}}, "loss.label_smoothing"),
        ({"schedule": {"name": "exponential", "gamma": 0}}, "schedule.gamma"),
        ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"dataset": None}, "dataset: "),
        ({"probes": ["telepathy"]}, "probes[0].name: unknown probe 'telepathy'"),
    ],
)
def test_bad_values_name_the_field(over, expected):
    assert expected in error_of(tiny_run(**over))


def test_missing_required_field():
    data = tiny_run()
    del data["epochs"]
    assert "epochs: required field is missing" in error_of(data)


def test_monitoring_without_validation_data_is_rejected():
    data = tiny_run(early_stopping={"patience": 2})
    data["dataset"]["val_fraction"] = 0.0
    assert "early_stopping.monitor: monitors validation metrics" in error_of(data)


def test_string_shorthand_for_components():
    cfg = parse_run(tiny_run(loss="mse_softmax", schedule="cosine"))
    assert cfg.loss.name == "mse_softmax" and cfg.schedule.options["t_max"] is None


def test_init_specs():
    assert parse_init("normal(0, 0.01)") == ("normal", (0.0, 0.01))
    assert parse_init("glorot_uniform") == ("glorot_uniform", ())
    with pytest.raises(ValueError):
        parse_init("normal(0, -1)")


def test_overrides_by_dotted_path(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'epochs = 5\ndataset = "moons"\nloss = "cross_entropy"\n[model]\nname = "mlp"\n'
        '[optimizer]\nname = "adam"\n'
    )
    cfg = load_run(
        path,
        [
            "optimizer.lr=0.05",
            "epochs=2",
            "loss.label_smoothing=0.1",
            "model.hidden=[4, 4]",
            "model.activation=tanh",
        ],
    )
    assert cfg.optimizer.options["lr"] == 0.05 and cfg.epochs == 2
    assert cfg.loss.options["label_smoothing"] == 0.1
    assert cfg.model.options["hidden"] == [4, 4] and cfg.model.activation.name == "tanh"
    with pytest.raises(ConfigError, match=r"run.toml \(with --set\): optimizer.lr: "):
        load_run(path, ["optimizer.lr=-3"])
    with pytest.raises(ConfigError, match="expected dotted.path=value"):
        apply_overrides({}, ["epochs"])


def test_toml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("epochs = [1,\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_run(path)
    with pytest.raises(ConfigError, match="nothere.toml: no such file"):
        load_run(tmp_path / "nothere.toml")


def test_run_id_is_stable_and_ignores_labels():
    a = parse_run(tiny_run())
    b = parse_run(tiny_run(name="other label", device="auto"))
    c = parse_run(tiny_run(seed=1))
    # Spelling out a default does not change the id: ids hash the resolved config.
    d = parse_run(tiny_run(optimizer={"name": "adam", "lr": 0.01, "beta1": 0.9}))
    assert run_id(a) == run_id(b) == run_id(d)
    assert run_id(a) != run_id(c)
    assert len(run_id(a)) == 12

"""What a new user finds out by asking: ``ablab list`` (every field an entry accepts, from
the validation schema) and error messages that name the unknown key with the closest of
*all* valid fields."""

import re

import pytest
from conftest import cli_in_process, tiny_run

import ablab  # noqa: F401  (fills the registries)
from ablab.config import ModelConfig, parse_run
from ablab.errors import ConfigError
from ablab.registry import DATASETS, MODELS
from ablab.schema import COMPONENTS, entry_fields


def test_list_alone_is_an_index_of_every_catalogue(capsys):
    code, out, err = cli_in_process(["list"], capsys)
    assert code == 0, err
    for catalogue in ["studies", *COMPONENTS, "run", "study"]:
        assert catalogue in out
    assert re.search(rf"^models\s+{len(MODELS.names())}\s", out, re.M)
    assert "simple_cnn" in out and "moons-circles-activations" in out


def test_list_models_shows_generic_options_with_each_architectures_defaults(capsys):
    code, out, err = cli_in_process(["list", "models"], capsys)
    assert code == 0, err
    for field in ("dropout", "batch_norm", "activation", "init", "hidden", "head"):
        assert field in out
    code, out, _ = cli_in_process(["list", "models", "simple_cnn"], capsys)
    assert "0.5 (simple_cnn's own)" in out and "true (simple_cnn's own)" in out
    assert "mlp" not in out.split("\n", 1)[0]


def test_list_datasets_shows_split_and_normalisation_fields(capsys):
    code, out, err = cli_in_process(["list", "datasets", "moons"], capsys)
    assert code == 0, err
    for field in ("n_samples", "subset", "eval_subset", "normalize", "normalize_fit_on",
                  "val_fraction", "split_seed", "augment"):
        assert field in out
    assert '"per_feature"' in out  # allowed values, not just the name


def test_list_rows_come_from_the_validation_models():
    """Every declared field of the component class and every registry option is listed:
    a new field shows up without editing the listing."""
    for catalogue, cls in COMPONENTS.items():
        for entry in cls.registry:
            names = [row.name for row in entry_fields(catalogue, entry)]
            assert set(names) == set(cls.generic_fields()) | set(entry.options.model_fields)


def test_list_unknown_entry_is_one_line(capsys):
    code, _, err = cli_in_process(["list", "models", "simple_cnm"], capsys)
    assert code == 2 and "did you mean 'simple_cnn'" in err


def test_list_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    import ablab.cli

    monkeypatch.setattr(ablab.cli.console, "_width", 80)
    code, out, _ = cli_in_process(["list", "datasets"], capsys)
    assert code == 0
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_run(data, "run.toml")
    return str(info.value)


def test_misspelt_generic_model_option_is_named_with_the_right_suggestion():
    msg = _error(tiny_run(model={"name": "mlp", "dropuot": 0.2}))
    assert "model.dropuot: unknown option for 'mlp'" in msg
    assert "dropout" in msg.split("its options are:")[1]  # listed, so clearly supported
    assert msg.endswith("(did you mean 'dropout'?)")


def test_unknown_key_is_named_before_the_missing_one_it_explains():
    data = tiny_run()
    data["epoch"] = data.pop("epochs")
    msg = _error(data)
    assert "run.toml: epoch: unknown field" in msg and "(did you mean 'epochs'?)" in msg
    assert "required field is missing" not in msg


def test_unknown_dataset_option_suggests_a_generic_dataset_field():
    msg = _error(tiny_run(dataset={"name": "moons", "subest": 100}))
    assert "every dataset's:" in msg and msg.endswith("(did you mean 'subset'?)")


@pytest.mark.parametrize("given", ["Relu", "RELU", "relu"])
def test_registry_names_match_without_regard_to_case(given):
    cfg = parse_run(tiny_run(model={"name": "MLP", "hidden": [8], "activation": given}))
    assert cfg.model.name == "mlp" and cfg.model.activation.name == "relu"
    assert cfg.model_dump() == parse_run(
        tiny_run(model={"name": "mlp", "hidden": [8], "activation": "relu"})
    ).model_dump()


def test_a_misspelt_name_suggests_ignoring_case():
    msg = _error(tiny_run(model={"name": "mlp", "activation": "Rleu"}))
    assert msg.endswith("(did you mean 'relu'?)")
    assert "did you mean 'moons'" in _error(tiny_run(dataset={"name": "MONS"}))


def test_generic_fields_are_the_component_classes_own():
    assert ModelConfig.generic_fields() == ["activation", "dropout", "batch_norm", "init"]
    assert "subset" in COMPONENTS["datasets"].generic_fields()
    assert DATASETS.canonical("Moons") == "moons" and DATASETS.canonical("nope") is None


def test_verdicts_and_rankings_name_their_factor_as_written():
    import numpy as np

    from ablab.analysis.compare import Comparison, Ranking, compare_samples, decide_family
    from ablab.analysis.verdicts import ranking_sentence, terminal_lines, verdict

    rng = np.random.default_rng(0)
    a = 0.9 + 0.003 * rng.standard_normal(6)
    result = compare_samples(a, a - 0.05 + 0.003 * rng.standard_normal(6), True,
                             scale="difference")
    c = Comparison("batch_norm", "test_accuracy", "", "True", "False", "", "", result)
    decide_family([c], 0.05, 0.01)
    assert verdict(c).startswith("batch_norm=True beats batch_norm=False by ")
    assert terminal_lines([c])[0].startswith("BEATS      batch_norm=True beats batch_norm=")
    ranking = Ranking("batch_norm", "test_accuracy", "", ["True", "False"], [0.9, 0.85],
                      ["a", "b"])
    assert ranking_sentence(ranking).startswith("batch_norm by test accuracy: True 90.0 %")


def test_factor_columns_keep_their_types():
    from ablab.results import typed_levels

    assert typed_levels(["0", "0.5", "0"]) == [0, 0.5, 0]
    assert typed_levels(["True", "False"]) == [True, False]
    assert typed_levels(["1e-05", "0.001"]) == [1e-05, 0.001]
    assert typed_levels(["relu", "tanh"]) == ["relu", "tanh"]
    assert typed_levels(["0", "relu"]) == ["0", "relu"]  # mixed: labels as they are
    assert typed_levels(["True", "0"]) == ["True", "0"]


def test_study_variants_slice_and_short_reprs():
    study = ablab.load_study("moons-circles-activations")
    variants = study.variants()
    first_two = variants[:2]
    assert list(first_two) == list(variants)[:2] and len(first_two) == 2
    assert variants[0] == variants[list(variants)[0]]
    assert len(repr(study)) < 200 and len(repr(study.runs[0])) < 120
    assert len(repr(variants)) < 600


def test_dry_run_trains_nothing_and_prints_plan_holdings_and_estimate(tmp_path, capsys):
    from conftest import MOONS_STUDY

    path = tmp_path / "s.toml"
    path.write_text(MOONS_STUDY.format(name="dry", description="d", seeds="[0, 1]", epochs=2,
                                       activations='["relu", "tanh"]', base=""))
    out = tmp_path / "out"
    code, stdout, err = cli_in_process(["run", str(path), "--out", str(out), "--dry-run"],
                                       capsys)
    assert code == 0, err
    assert not out.exists()  # nothing written, nothing trained
    stdout = " ".join(stdout.split())
    assert "2 variants × 2 seeds = 4 runs" in stdout
    assert "activation=relu" in stdout and "activation=tanh" in stdout
    assert "is new; 4 runs to train" in stdout
    assert "estimate: ~" in stdout and "from each model's FLOP count" in stdout
    # --calibrate: the estimate from a few training steps timed here instead
    code, stdout, err = cli_in_process(
        ["run", str(path), "--out", str(out), "--dry-run", "--calibrate"], capsys)
    assert code == 0, err
    assert not out.exists()
    stdout = " ".join(stdout.split())
    assert "estimate: ~" in stdout and "training steps timed for each of 1 model-dataset pair" \
        in stdout


def test_remaining_time_uses_each_variants_own_time():
    from ablab.ui import RemainingTime, format_left, variant_of

    assert variant_of("activation=relu, seed=2") == "activation=relu" and variant_of("seed=0") == ""
    # Two variants: "fast" measured at 1 s per run, "slow" not measured yet; priors say
    # slow costs 10x fast. Two workers.
    pending = {f"f{i}": ("fast", 0.1) for i in range(3)} | {f"s{i}": ("slow", 1.0)
                                                            for i in range(2)}
    left = RemainingTime(pending, workers=2)
    assert left.seconds_left() is None
    assert format_left(None) == "left: estimated after the first run"
    left.finished("f0", "fast, seed=0", 1.0)
    # 2 fast runs at their own 1 s + 2 slow runs at prior x (1.0 / 0.1) = 10 s; / 2 workers
    assert left.seconds_left() == pytest.approx((2 * 1.0 + 2 * 10.0) / 2)
    left.finished("s0", "slow, seed=0", 4.0)  # slow measured: its own mean from now on
    assert left.seconds_left() == pytest.approx((2 * 1.0 + 4.0) / 2)
    assert format_left(3725) == "left: 1:02:05"


@pytest.mark.parametrize("command", [["run", "--help"], ["--help"], ["list", "--help"]])
def test_help_is_readable_at_80_columns(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # click wraps its help to the terminal's width
    code, out, err = cli_in_process(command, capsys)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # nothing cut off
    if command[0] == "run":
        for flag in ("--retry-failed", "--force-new-variants", "--until-decided",
                     "--dry-run", "--rerun-changed", "--allow-plugins"):
            assert flag in out

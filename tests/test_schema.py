"""``ablab schema``: a JSON Schema of study files from the pydantic models and the
registries, which every built-in study file passes and typical mistakes fail."""

import json
import tomllib

import jsonschema
import pytest
from conftest import cli_in_process, tiny_run

import ablab  # noqa: F401  (fills the registries)
from ablab.schema import run_schema, study_schema
from ablab.study import builtin_studies


@pytest.fixture(scope="module")
def study_validator():
    schema = study_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(builtin_studies()))
def test_every_builtin_study_file_passes_the_schema(name, study_validator):
    data = tomllib.loads(builtin_studies()[name].read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in study_validator.iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize(
    "base, where",
    [
        ({"epoch": 20}, ["base"]),  # unknown top-level run field
        ({"model": {"name": "mlp", "dropuot": 0.1}}, ["base", "model"]),  # unknown option
        ({"model": {"name": "simple_cnn", "hidden": [8]}}, ["base", "model"]),  # mlp's option
        ({"model": "no_such_model"}, ["base", "model"]),
        ({"dataset": {"name": "moons", "normalize": "zscore"}}, ["base", "dataset"]),
        ({"batch_size": "all"}, ["base", "batch_size"]),
        ({"model": {"name": "mlp", "init": "normal(0)"}}, ["base", "model"]),
        ({"seed": 3}, ["base"]),  # a study's seeds are the top-level list
    ],
)
def test_schema_rejects_what_validation_rejects(base, where, study_validator):
    data = {"name": "s", "base": {"epochs": 1, "dataset": "moons", "model": "mlp", **base}}
    errors = list(study_validator.iter_errors(data))
    assert errors, f"{base} passed the schema"
    assert any(list(e.absolute_path)[: len(where)] == where for e in errors)


def test_schema_accepts_the_generic_options_and_shorthands(study_validator):
    data = {
        "name": "s",
        "base": {
            "epochs": 1,
            "batch_size": "full",
            "early_stopping": False,
            "dataset": {"name": "moons", "subset": 100, "normalize": "standard"},
            "model": {"name": "simple_cnn", "dropout": 0.2, "batch_norm": False,
                      "activation": {"name": "leaky_relu", "negative_slope": 0.1},
                      "init": "normal(0, 0.01)"},
            "probes": ["dead_units", {"name": "boundary", "grid": 50}],
        },
        "vary": [{"model.activation": ["relu", "tanh"]}],
    }
    assert list(study_validator.iter_errors(data)) == []


def test_run_schema_accepts_a_run_file():
    validator = jsonschema.Draft202012Validator(run_schema())
    assert list(validator.iter_errors(tiny_run())) == []
    assert list(validator.iter_errors({k: v for k, v in tiny_run().items() if k != "epochs"}))


def test_ablab_schema_prints_the_study_schema(capsys):
    code, out, err = cli_in_process(["schema"], capsys)
    assert code == 0, err
    assert json.loads(out) == json.loads(json.dumps(study_schema()))
    code, out, _ = cli_in_process(["schema", "--run"], capsys)
    assert code == 0 and json.loads(out)["title"] == "ablab run file"

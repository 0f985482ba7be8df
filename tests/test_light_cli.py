"""Commands that only list, describe, read or plan answer without importing torch (issue
#31): ``ablab --help``, ``list …``, ``schema``, ``status DIR`` and ``run --dry-run`` load
the registries from modules that import torch only where a component is built. What they
print is the same as with torch loaded, and what the registries declare in place of
building a model (the options a builder reads, its defaults, its FLOP count) is checked
here against the built models."""

import inspect
import json
import subprocess
import sys

import pytest
from conftest import cli_env, cli_in_process, moons_study

#: Runs ``ablab ARGS`` for each ARGS in argv[1] (JSON) in one process; prints JSON: each
#: command's exit status and output, and whether torch was imported by the end.
LIGHT_RUNNER = r"""
import contextlib, io, json, sys
if sys.argv[2] == "with torch":
    import torch  # noqa: F401
from ablab.cli import main

outputs = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["ablab", *args]
    buffer = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buffer):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    outputs.append([code, buffer.getvalue()])
print(json.dumps({"outputs": outputs, "torch": "torch" in sys.modules}))
"""

#: The console width of both processes, so that outputs compare line for line.
WIDTH = 120

CATALOGUES = ["studies", "models", "datasets", "activations", "losses", "optimizers",
              "schedules", "probes", "trainers", "run", "study"]


def light(commands: list[list[str]], torch_first: bool = False
          ) -> tuple[list[tuple[int, str]], bool]:
    """Each command's (exit status, stdout), run in a fresh process (which imports torch
    first with ``torch_first``), and whether that process imported torch."""
    first = "with torch" if torch_first else "as usual"
    proc = subprocess.run([sys.executable, "-c", LIGHT_RUNNER, json.dumps(commands), first],
                          capture_output=True, text=True, timeout=300,
                          env={**cli_env(), "COLUMNS": str(WIDTH)})
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    return [tuple(o) for o in found["outputs"]], found["torch"]


@pytest.fixture(scope="module")
def tiny_study_dir(tmp_path_factory):
    """A finished tiny study (1 epoch): the directory ``status`` and a dry run read."""
    import ablab

    root = tmp_path_factory.mktemp("light")
    study = moons_study(root, epochs=1, seeds=(0,))
    out = root / "out"
    ablab.run_study(ablab.load_study(study), out, workers=1)
    return study, out


def test_reading_and_planning_commands_import_no_torch_and_print_what_they_did(
        tiny_study_dir, tmp_path):
    study, out = tiny_study_dir
    commands = [["--help"], ["list"], *(["list", c] for c in CATALOGUES), ["list", "models",
                "vgg7"], ["schema"], ["schema", "--run"], ["status", str(out)],
                ["run", "moons-circles-activations", "--out", str(tmp_path / "new"),
                 "--dry-run"],
                ["run", str(study), "--out", str(out), "--dry-run"],
                ["run", str(study), "--out", str(tmp_path / "fresh"), "--dry-run"]]
    outputs, torch_loaded = light(commands)
    assert not torch_loaded
    assert all(code == 0 for code, _ in outputs), outputs
    # the same as a process that has torch loaded prints
    assert light(commands, torch_first=True) == (outputs, True)
    assert "Usage: ablab" in outputs[0][1] and "schema" in outputs[0][1]
    by_command = {" ".join(a): o for a, (_, o) in zip(commands, outputs, strict=True)}
    assert "simple_cnn" in by_command["list models"] and "0.5 (simple_cnn's own)" in \
        by_command["list models"]
    assert "fashion-digits-optimizers-tuned" in by_command["list studies"]
    assert "done" in by_command[f"status {out}"]
    dry = " ".join(outputs[-1][1].split())
    assert "estimate: ~" in dry and "FLOP count" in dry and not (tmp_path / "fresh").exists()


def test_a_tuned_study_is_estimated_with_its_tuning_trials(tmp_path, capsys):
    from ablab.execute.estimate import estimate_study_seconds, tuning_runs
    from ablab.study import load_study

    study = load_study("fashion-digits-optimizers-tuned")
    tune = study.config.tune
    trials = len(study.variants()) * tune.trials * len(tune.seeds)
    assert len(tuning_runs(study)) == trials == 36
    code, stdout, _ = cli_in_process(["list", "studies"], capsys)
    text = " ".join(stdout.split())
    assert "optimizers-tuned 3 variants × 3 seeds = 9 runs + 36 tuning trials, ~" in text
    with_tuning = estimate_study_seconds([r.config for r in study.runs] + tuning_runs(study), 2)
    assert with_tuning > 4 * estimate_study_seconds([r.config for r in study.runs], 2)
    code, stdout, _ = cli_in_process(["run", "fashion-digits-optimizers-tuned", "--out",
                                      str(tmp_path / "t"), "--dry-run"], capsys)
    text = " ".join(stdout.split())
    assert code == 0 and "9 runs and 36 tuning runs" in text and "in the estimate" in text
    tuned = tmp_path / "tuned"  # a finished tuning leaves its summary: no trials left
    tuned.mkdir()
    (tuned / "tuning.json").write_text("{}")
    code, stdout, _ = cli_in_process(["run", "fashion-digits-optimizers-tuned", "--out",
                                      str(tuned), "--dry-run"], capsys)
    text = " ".join(stdout.split())
    assert code == 0 and "tuned already" in text and "tuning run" not in text


def _built_generic(entry, options: dict) -> tuple[set[str], dict]:
    """What the builder asks the spec for (options read, their defaults), built on the
    meta device with these options."""
    import torch

    from ablab.models.spec import ModelSpec

    side = max(32, int(entry.meta.get("min_hw") or 0))
    spec = ModelSpec(input_shape=(3, side, side), num_classes=10)
    with torch.device("meta"):
        entry.fn(spec, **entry.validate_options(options))
    return set(spec.reads), dict(spec.defaults)


def _option_grid(entry) -> list[dict]:
    """Every combination of the entry's Literal and bool options (each at its default
    otherwise); for ``mlp`` with and without hidden layers."""
    import itertools
    import typing

    choices = {}
    for name, info in entry.options.model_fields.items():
        if info.annotation is bool:
            choices[name] = [False, True]
        elif typing.get_origin(info.annotation) is typing.Literal:
            choices[name] = list(typing.get_args(info.annotation))
    grid = [dict(zip(choices, values, strict=True))
            for values in itertools.product(*choices.values())]
    if entry.name == "mlp":
        grid = [{"hidden": []}, {"hidden": [8]}, {"hidden": [8, 4]}]
    return grid


def test_builtin_architectures_declare_what_their_builders_read():
    from ablab.models.plan_check import declared_honours
    from ablab.registry import MODELS

    for entry in MODELS:
        if not entry.fn.__module__.startswith("ablab."):
            continue  # a plugin another test registered
        assert "defaults" in entry.meta and "honours" in entry.meta, entry.name
        _, defaults = _built_generic(entry, {})
        assert entry.meta["defaults"] == defaults, entry.name
        for options in _option_grid(entry):
            read, _ = _built_generic(entry, options)
            resolved = entry.validate_options(options)
            assert declared_honours(entry, resolved) == read, (entry.name, options)


def test_a_declaration_that_differs_from_the_builder_is_caught(monkeypatch):
    # the check above would fail: a builder reading dropout declared without it
    from ablab.models.plan_check import declared_honours
    from ablab.registry import MODELS

    entry = MODELS.get("simple_cnn")
    monkeypatch.setitem(entry.meta, "honours", ("activation", "batch_norm"))
    read, _ = _built_generic(entry, {})
    assert declared_honours(entry, entry.validate_options({})) != read


def test_shipped_flop_table_matches_a_count_with_torch():
    from ablab.config import ModelConfig
    from ablab.models import flops

    shipped = json.loads(flops.TABLE_FILE.read_text())
    assert shipped == flops.builtin_table_rows(), (
        "the built-in studies' FLOP table is stale: run python -m ablab.models.flops")
    for row in shipped:  # the generic options add or resize no linear or conv layer
        for generic in ({"activation": "tanh"}, {"dropout": 0.3}, {"batch_norm": True},
                        {"batch_norm": False}):
            cfg = ModelConfig.model_validate({"name": row["model"], **row["options"],
                                              **generic})
            assert flops.count_flops(cfg, tuple(row["shape"])) == row["flops"], (row, generic)


def test_forward_flops_use_arithmetic_table_or_a_count():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ablab.config import parse_run
    from ablab.models import build_model, flops

    cases = [
        ({"name": "mlp", "hidden": [64, 32]}, "digits"),  # arithmetic
        ({"name": "mlp", "hidden": []}, "moons"),
        ({"name": "simple_cnn"}, "cifar10"),  # the table
        ({"name": "keras_cnn3", "block_dropout": 0.1}, "fashion_mnist"),  # counted
    ]
    for model, dataset in cases:
        cfg = parse_run({"epochs": 1, "dataset": dataset, "model": model})
        shape = flops.model_shape(cfg)
        net = build_model(cfg.model, shape, flops.COUNTED_CLASSES).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(2, *shape))
        assert flops.forward_flops(cfg) == counter.get_total_flops() / 2, model


def test_builtin_probes_register_their_implementations_options():
    from ablab.probes import boundary, gradients, units
    from ablab.registry import PROBES

    implementations = {"boundary": boundary.boundary, "gradients": gradients.gradients,
                       "weights": gradients.weights, "dead_units": units.dead_units,
                       "activations": units.activations}
    assert sorted(PROBES.names()) == sorted(implementations)
    for name, fn in implementations.items():
        def options(f):
            return [(p.name, p.annotation, p.default)
                    for p in inspect.signature(f).parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert options(PROBES.get(name).fn) == options(fn), name

"""User components without forking: decorators, plugin modules named by study and run
files, and their way into spawned worker processes."""

import json
import sys
import types

import pytest
import torch

import ablab
from ablab.config import RunConfig, load_run, parse_run, run_id
from ablab.errors import ConfigError
from ablab.registry import MODELS
from ablab.runner import run_study
from ablab.study import load_study

PLUGIN = '''
import ablab
from torch import nn


@ablab.register_model("plugin_net", "one hidden layer (test plugin)")
def plugin_net(spec, *, width: int = 8) -> nn.Module:
    n_in = 1
    for d in spec.input_shape:
        n_in *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), spec.act(),
                         nn.Linear(width, spec.num_classes))


@ablab.register_activation("plugin_square", "x * x (test plugin)")
def plugin_square(*, scale: float = 1.0) -> nn.Module:
    class Square(nn.Module):
        def forward(self, x):
            return scale * x * x
    return Square()
'''

STUDY = """
name = "plugin-study"
seeds = [0, 1]
plugins = [{plugins}]

[base]
epochs = 2
batch_size = 64
device = "cpu"
keep = "last"
dataset = {{ name = "moons", n_samples = 300, noise = 0.2 }}
model = {{ name = "plugin_net", width = 12 }}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """One plugin file for the whole module: the registry is process-wide."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "ablab_test_models.py").write_text(PLUGIN)
    return folder


def test_user_model_runs_end_to_end_in_two_workers(plugin_dir, tmp_path):
    path = plugin_dir / "study.toml"
    # a module name that is not importable resolves to the file next to the study
    path.write_text(STUDY.format(plugins='"ablab_test_models"'))
    study = load_study(path)
    plugin_file = str((plugin_dir / "ablab_test_models.py").resolve())
    assert study.plugins == [plugin_file]
    assert all(r.config.plugins == [plugin_file] for r in study.runs)

    out = tmp_path / "out"
    outcome = run_study(study, out, workers=2, threads=1, report=False)
    assert outcome.counts["done"] == 2, outcome.failures
    assert outcome.workers == 2

    stored = json.loads((out / "study.json").read_text())
    assert stored["plugins"] == [plugin_file]  # a resumed study / report finds them
    record = json.loads((out / "runs" / f"{study.runs[0].run_id}.json").read_text())
    assert record["config"]["model"] == {
        "name": "plugin_net",
        "width": 12,
        "activation": {"name": "relu"},
        "dropout": None,
        "batch_norm": None,
        "init": "default",
    }
    # the kept weights of a plugin model load back (its module is imported from study.json)
    model = ablab.load_model(out, study.runs[0].run_id)
    assert isinstance(model[1], torch.nn.Linear) and model[1].out_features == 12

    again = run_study(load_study(path), out, workers=2, threads=1, report=False)
    assert again.ran == 0  # resumed: nothing left


def test_plugin_options_are_validated_like_builtins(plugin_dir):
    from ablab.plugins import import_plugins

    import_plugins([str(plugin_dir / "ablab_test_models.py")])
    base = {"epochs": 1, "dataset": "moons"}
    cfg = parse_run({**base, "model": {"name": "plugin_net", "activation": "plugin_square"}})
    assert cfg.model.options == {"width": 8}
    with pytest.raises(ConfigError, match=r"model\.depth: unknown option for 'plugin_net'"):
        parse_run({**base, "model": {"name": "plugin_net", "depth": 3}})
    with pytest.raises(ConfigError, match="model.width"):
        parse_run({**base, "model": {"name": "plugin_net", "width": "wide"}})
    # the registering module is recorded, but the run id does not depend on it
    assert cfg.plugins == [str((plugin_dir / "ablab_test_models.py").resolve())]
    plain = parse_run({**base, "model": {"name": "mlp"}})
    assert plain.plugins == []
    assert run_id(cfg) == run_id(cfg.model_copy(update={"plugins": []}))


def test_decorators_refuse_a_second_component_of_the_same_name():
    @ablab.register_model("plugin_twice")
    def net(spec):
        return torch.nn.Flatten()

    assert "plugin_twice" in MODELS
    # the same function defined again (a notebook cell run twice) replaces the entry
    again = types.FunctionType(net.__code__, net.__globals__, "net")
    ablab.register_model("plugin_twice")(again)
    assert MODELS.get("plugin_twice").fn is again
    with pytest.raises(ValueError, match="already registered"):

        @ablab.register_model("plugin_twice")
        def other(spec):
            return torch.nn.Flatten()


def test_unknown_component_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(plugins="").replace("plugin_net", "not_registered_net"))
    code = _cli(monkeypatch, "run", str(path), "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "model.name: unknown model 'not_registered_net'" in err[0]


@pytest.mark.parametrize(
    ("spec", "source", "fragments"),
    [
        ('"no_such_plugin_module"', "", ["plugins", "'no_such_plugin_module'",
                                         "ModuleNotFoundError"]),
        ('"broken_plugin.py"', "raise RuntimeError('boom at import')",
         ["plugins", "broken_plugin.py", "RuntimeError: boom at import"]),
        ('"missing/plugin.py"', None, ["plugins", "plugin.py", "no such file"]),
    ],
)
def test_plugin_that_cannot_be_imported_is_one_line(
    tmp_path, capsys, monkeypatch, spec, source, fragments
):
    if source is not None:
        (tmp_path / "broken_plugin.py").write_text(source)
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(plugins=spec))
    code = _cli(monkeypatch, "run", str(path), "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0]
    assert "Traceback" not in err[0]


def test_run_file_plugins_are_relative_to_the_file(plugin_dir, tmp_path):
    run = plugin_dir / "run.toml"
    run.write_text(
        'epochs = 1\nplugins = ["ablab_test_models.py"]\n'
        'dataset = { name = "moons", n_samples = 200 }\nmodel = { name = "plugin_net" }\n'
    )
    cfg = load_run(run)
    assert cfg.plugins == [str((plugin_dir / "ablab_test_models.py").resolve())]
    # the resolved config validates again elsewhere (what a worker does)
    assert RunConfig.model_validate(cfg.resolved()).model.name == "plugin_net"


def test_a_module_imported_by_user_code_is_recorded(tmp_path, monkeypatch):
    (tmp_path / "ablab_user_mod.py").write_text(
        PLUGIN.replace("plugin_net", "user_net").replace("plugin_square", "user_square")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import ablab_user_mod  # noqa: F401  (as a notebook would)

    cfg = parse_run({"epochs": 1, "dataset": "moons", "model": "user_net"})
    assert cfg.plugins == ["ablab_user_mod"]  # workers import it by name
    sys.modules.pop("ablab_user_mod", None)


def _cli(monkeypatch, *args) -> int:
    from ablab import cli

    monkeypatch.setattr(sys, "argv", ["ablab", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code

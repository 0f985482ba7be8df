"""User components without forking: decorators, plugin modules named by study and run
files, and their way into spawned worker processes."""

import json
import sys
import types

import pydantic
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


@pytest.mark.slow
def test_user_model_runs_end_to_end_in_two_workers(plugin_dir, tmp_path):
    path = plugin_dir / "study.toml"
    # a module name that is not importable resolves to the file next to the study
    path.write_text(STUDY.format(plugins='"ablab_test_models"'))
    study = load_study(path, allow_plugins=True)
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

    again = run_study(load_study(path, allow_plugins=True), out, workers=2, threads=1,
                      report=False)
    assert again.ran == 0  # resumed: nothing left


def test_plugin_options_are_validated_like_builtins(plugin_dir):
    from ablab.plugins import import_plugins

    import_plugins([str(plugin_dir / "ablab_test_models.py")], allow=True)
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
    code = _cli(monkeypatch, "run", str(path), "--out", str(tmp_path / "out"), "--allow-plugins")
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
    cfg = load_run(run, allow_plugins=True)
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


TRAP = """
from pathlib import Path
Path({marker!r}).write_text("ran")
import ablab
from torch import nn


@ablab.register_model({model!r})
def trap_net(spec) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(spec.input_shape[-1], spec.num_classes))
"""


def _trap(folder, name: str):
    """A plugin file whose import leaves a marker file (its side effect)."""
    marker = folder / f"{name}.ran"
    (folder / f"{name}.py").write_text(TRAP.format(marker=str(marker), model=name))
    return marker


@pytest.mark.parametrize("verb", ["run", "train"])
def test_plugin_code_runs_only_with_consent(tmp_path, capsys, monkeypatch, verb):
    """Without --allow-plugins (or ABLAB_ALLOW_PLUGINS=1) a study or run file that names a
    plugin file stops with exit 2 and one line naming the file and the flag, and the file
    was not run; with consent it loads and trains."""
    monkeypatch.delenv("ABLAB_ALLOW_PLUGINS", raising=False)
    name = f"trap_{verb}"
    marker = _trap(tmp_path, name)
    if verb == "run":
        path = tmp_path / "study.toml"
        path.write_text(STUDY.format(plugins=f'"{name}.py"').replace("plugin_net", name)
                        .replace(", width = 12", "").replace("seeds = [0, 1]", "seeds = [0]"))
    else:
        path = tmp_path / "run.toml"
        path.write_text(f'epochs = 1\nplugins = ["{name}.py"]\ndevice = "cpu"\n'
                        'dataset = { name = "moons", n_samples = 100 }\n'
                        f'model = {{ name = "{name}" }}\n')
    out = str(tmp_path / "out")
    code = _cli(monkeypatch, verb, str(path), "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{name}.py" in err[0] and "--allow-plugins" in err[0]
    assert not marker.exists()  # the plugin's code did not run
    monkeypatch.setenv("ABLAB_ALLOW_PLUGINS", "0")  # says no: still refused
    assert _cli(monkeypatch, verb, str(path), "--out", out) == 2
    assert not marker.exists()
    capsys.readouterr()
    code = _cli(monkeypatch, verb, str(path), "--out", out, "--allow-plugins")
    assert code == 0, capsys.readouterr().err
    assert marker.read_text() == "ran"


def test_validation_never_imports(tmp_path, monkeypatch):
    """Validating a config that names a plugin nobody loaded refuses it clearly and runs
    nothing; loading it with consent makes the same config valid."""
    monkeypatch.delenv("ABLAB_ALLOW_PLUGINS", raising=False)
    marker = _trap(tmp_path, "trap_validate")
    data = {"epochs": 1, "dataset": "moons", "model": "trap_validate",
            "plugins": [str(tmp_path / "trap_validate.py")]}
    with pytest.raises(ConfigError, match=r"plugins: '.*trap_validate\.py' is not loaded.*"
                                          r"--allow-plugins"):
        parse_run(data)
    with pytest.raises(pydantic.ValidationError, match="trap_validate.py' is not loaded"):
        RunConfig.model_validate(data)  # what a worker gets; still no import
    assert not marker.exists()
    from ablab.plugins import import_plugins

    import_plugins(data["plugins"], allow=True)
    assert marker.exists()
    assert parse_run(data).model.name == "trap_validate"


def test_installed_module_names_need_consent_too(tmp_path, monkeypatch):
    """A module name on sys.path is code as much as a file is; only modules this process
    already imported need no consent."""
    from ablab.plugins import PluginConsentError, import_plugins

    monkeypatch.delenv("ABLAB_ALLOW_PLUGINS", raising=False)
    marker = _trap(tmp_path, "trap_installed")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginConsentError, match="'trap_installed'.*--allow-plugins"):
        import_plugins(["trap_installed"])
    assert not marker.exists()
    import_plugins(["json"])  # imported already: nothing runs, no consent needed
    monkeypatch.setenv("ABLAB_ALLOW_PLUGINS", "1")
    import_plugins(["trap_installed"])
    assert marker.exists()
    sys.modules.pop("trap_installed", None)


def _cli(monkeypatch, *args) -> int:
    from ablab import cli

    monkeypatch.setattr(sys, "argv", ["ablab", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code

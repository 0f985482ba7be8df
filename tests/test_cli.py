"""The command line as a user meets it: exit codes, one-line errors, files written."""

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli_env, run_cli

RUN = """
name = "cli-moons"
epochs = 3
batch_size = 32
device = "cpu"
dataset = { name = "moons", n_samples = 200 }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.01 }
"""


def ablab(*args, cwd=None, env=None):
    return run_cli(*args, cwd=cwd, env=cli_env(**(env or {})))


def test_train_writes_summary(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(RUN)
    proc = ablab("train", str(run), "--out", str(tmp_path / "out"), "--set", "epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["config"]["epochs"] == 2
    assert len(summary["history"]) == 2
    assert 0 <= summary["final"]["test_accuracy"] <= 1


def test_diverged_run_exits_1(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(RUN)
    proc = ablab(
        "train",
        str(run),
        "--out",
        str(tmp_path / "o"),
        "--set",
        'optimizer={name="sgd", lr=1e12}',
        "--set",
        "epochs=5",
    )
    assert proc.returncode == 1
    assert "diverged" in proc.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    "content, sets, fragments",
    [
        (RUN + "colour = 3\n", [], ["run.toml: colour: unknown field"]),
        (RUN, ["optimizer.lr=-1"], ["optimizer.lr: must be a finite number > 0 (got -"]),
        (RUN, ["model.name=mlpp"], ["model.name: unknown model 'mlpp'", "did you mean 'mlp'?"]),
        (RUN, ['model={name="vgg7"}'], ["model.name: 'vgg7' needs"]),
        (RUN, ['dataset={name="cifar10"}'], ["dataset cifar10", "cifar-10-batches-py"]),
        ("epochs = [", [], ["run.toml: not valid TOML"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, sets, fragments):
    run = tmp_path / "run.toml"
    run.write_text(content)
    args = ["train", str(run), "--out", str(tmp_path / "o")]
    for item in sets:
        args += ["--set", item]
    proc = ablab(*args, env={"ABLAB_DATA": str(tmp_path / "empty")})
    assert_one_line_error(proc, *fragments)


def test_missing_run_file(tmp_path):
    assert_one_line_error(ablab("train", str(tmp_path / "nope.toml")), "nope.toml: no such file")


@pytest.mark.parametrize(
    "what, names",
    [
        (
            "models",
            [
                "mlp",
                "simple_cnn",
                "improved_cnn",
                "mnist_net",
                "mnist_cnn3",
                "vgg7",
                "keras_conv1",
                "keras_cnn3",
            ],
        ),
        ("datasets", ["cifar10", "fashion_mnist", "mnist", "digits", "moons", "circles"]),
        ("activations", ["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]),
    ],
)
def test_list_shows_builtins(what, names):
    proc = ablab("list", what)
    assert proc.returncode == 0
    for name in names:
        assert name in proc.stdout


def test_example_run_file_is_valid():
    from ablab.config import load_run

    cfg = load_run(Path(__file__).parents[1] / "examples" / "moons-mlp.toml")
    assert cfg.model.options["hidden"] == [256, 128]


def test_svg_report_is_written_once_and_the_runner_says_its_notes_without_printing(
    tmp_path, capsys, monkeypatch
):
    """``ablab run --until-decided --svg`` writes the report once, SVGs included (it was
    written, then written again with SVGs); ``run_study`` hands what it decided (runs
    trained again) to ``on_line`` and prints nothing itself."""
    from conftest import cli_in_process, moons_study

    import ablab.report
    from ablab.runner import run_study
    from ablab.study import load_study

    written = []
    real = ablab.report.write_report
    monkeypatch.setattr(ablab.report, "write_report",
                        lambda *a, **k: written.append(k.get("svg")) or real(*a, **k))
    study, out = moons_study(tmp_path, seeds=(0, 1), epochs=1), tmp_path / "out"
    code, stdout, stderr = cli_in_process(
        ["run", str(study), "--out", str(out), "--workers", "1", "--svg", "--until-decided",
         "--max-seeds", "2"], capsys)
    assert code == 0, stderr
    assert written == [True] and list((out / "figures").glob("*.svg"))
    assert "round 1: seeds per variant" in stdout and "results in" in stdout

    lines: list[str] = []
    outcome = run_study(load_study(study, sets=['keep="best"']), out, workers=1,
                        report=False, on_line=lines.append)
    assert outcome.ran == 4 and outcome.notes == lines
    assert any("weights they did not keep" in line for line in lines), lines
    assert capsys.readouterr().out == ""

"""[tune]: every variant tuned with the same budget on validation data, then evaluated at
its best setting (ablab.tune)."""

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli_env, run_cli, spawn_run

from ablab.analysis.checks import warn_tuned_at_edge, warn_untuned_learning_rate
from ablab.analysis.runs import Factor
from ablab.errors import ConfigError
from ablab.study import load_study, parse_distribution

DIGITS_TUNED = """
name = "digits-tuned"
seeds = {seeds}

[base]
epochs = {epochs}
batch_size = 64
device = "cpu"
dataset = {{ name = "digits", normalize = "unit" }}
model = {{ name = "mlp", hidden = [32] }}
optimizer = {{ name = "sgd", lr = 0.01 }}

[[vary]]
"optimizer.name" = ["sgd", "adam"]

[tune]
{tune}
"""
TUNE = """params = { "optimizer.lr" = "loguniform(1e-4, 1.0)" }
trials = TRIALS
metric = "val_accuracy"
seeds = [1000]
sampler = "tpe"
"""


def digits_tuned(tmp_path: Path, trials: int = 12, seeds=(0, 1, 2), epochs: int = 4,
                 tune: str | None = None, name: str = "study") -> Path:
    path = tmp_path / f"{name}.toml"
    tune = tune if tune is not None else TUNE.replace("TRIALS", str(trials))
    path.write_text(DIGITS_TUNED.format(seeds=list(seeds), epochs=epochs, tune=tune))
    return path


def trials_in(out: Path) -> dict[str, list[dict]]:
    """Variant id -> its trials (number, state, params, outcome) from tuning.sqlite."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'tuning.sqlite'}")
    found = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        found[summary.study_name] = [
            {"number": t.number, "state": t.state.name, "params": dict(t.params),
             "outcome": t.user_attrs.get("outcome")}
            for t in study.get_trials(deepcopy=False)
        ]
    return found


def counted(trials: list[dict]) -> list[dict]:
    return [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")
            or (t["state"] == "FAIL" and t["outcome"] in ("diverged", "failed"))]


# ------------------------------------------------------------------ the study file


def test_parse_distribution_kinds_and_errors():
    assert parse_distribution("loguniform(1e-4, 1)").args == (1e-4, 1.0)
    assert parse_distribution("uniform(0, 0.5)").kind == "uniform"
    assert parse_distribution("int(16, 256)").args == (16, 256)
    assert parse_distribution("choice(0, 1e-4)").args == (0, 1e-4)
    assert parse_distribution('choice("relu", "tanh")').args == ("relu", "tanh")
    for bad in ("loguniform(0, 1)", "uniform(1, 0)", "int(1.5, 3)", "normal(0, 1)",
                "loguniform(1e-4)", "choice(1, 1)", "choice()"):
        with pytest.raises(ValueError):
            parse_distribution(bad)


@pytest.mark.parametrize("line, fragments", [
    ('params = { "optimizer.lr" = "logunif(1e-4, 1)" }', ['tune.params."optimizer.lr"',
                                                          "not a distribution"]),
    ('params = { "optimizer.lrr" = "loguniform(1e-4, 1)" }', ['tune.params."optimizer.lrr"',
                                                              "unknown option"]),
    ('params = { "optimiser.lr" = "uniform(0.1, 1)" }', ['tune.params."optimiser.lr"',
                                                         "unknown field"]),
    ("trials = 0", ["tune.trials", "must be an integer > 0 (got 0)"]),
    ('metric = "test_accuracy"', ["tune.metric", "test metric", "val_accuracy"]),
    ("seeds = [1]", ["tune.seeds", "disjoint"]),
    ('sampler = "grid"', ['sampler = "grid"', "choice"]),
])
def test_tune_validation_errors_are_one_line(tmp_path, line, fragments):
    study = digits_tuned(tmp_path, tune=_tune_with(line))
    with pytest.raises(ConfigError) as info:
        load_study(study)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(study))
    for fragment in fragments:
        assert fragment in message


def _tune_with(line: str) -> str:
    key = line.split(" = ")[0]
    return "\n".join(line if row.startswith(key + " ") else row
                     for row in TUNE.replace("TRIALS", "4").splitlines())


def test_tune_validation_error_exits_2_on_the_command_line(tmp_path):
    study = digits_tuned(tmp_path, tune=_tune_with('metric = "test_accuracy"'))
    proc = run_cli("run", study, "--out", tmp_path / "out", timeout=300)
    assert_one_line_error(proc, str(study), "tune.metric", "test metric")
    assert not (tmp_path / "out" / "tuning.sqlite").exists()


def test_tuning_a_varied_key_is_refused(tmp_path):
    tune = TUNE.replace("TRIALS", "4").replace('"optimizer.lr"', '"optimizer.name"').replace(
        "loguniform(1e-4, 1.0)", 'choice(\\"sgd\\", \\"adam\\")')
    with pytest.raises(ConfigError, match="varied factor"):
        load_study(digits_tuned(tmp_path, tune=tune))


# ------------------------------------------------------------------ warnings


def test_warning_for_optimizers_at_one_shared_rate():
    from ablab.analysis.runs import Variant

    factors = [Factor(("optimizer.name",), ("optimizer",))]
    variants = [Variant(variant_id=n, label=f"optimizer={n}", values={"optimizer": n},
                        config={"optimizer": {"name": n, "lr": 0.01}}, runs=[])
                for n in ("sgd", "adam")]
    (line,) = warn_untuned_learning_rate(variants, factors)
    assert "one shared learning rate (0.01)" in line and "[tune]" in line
    assert warn_untuned_learning_rate(variants, factors, tuning={"params": {}}) == []
    other = [Factor(("model.activation",), ("activation",))]
    assert warn_untuned_learning_rate(variants, other) == []


def test_warning_for_a_best_value_at_the_edge():
    tuning = {
        "params": {"optimizer.lr": "loguniform(0.0001, 1)"},
        "distributions": {"optimizer.lr": {"kind": "loguniform", "args": [1e-4, 1.0]}},
        "variants": [{"label": "optimizer=sgd", "best_params": {"optimizer.lr": 0.95}},
                     {"label": "optimizer=adam", "best_params": {"optimizer.lr": 0.01}}],
    }
    (line,) = warn_tuned_at_edge(tuning)
    assert "optimizer=sgd" in line and "upper edge" in line and "widen the range" in line


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_tuned_digits_study_end_to_end(tmp_path):
    """SGD vs Adam over optimizer.lr, 12 trials each, 3 evaluation seeds: SGD's chosen
    rate is above Adam's; the report has the Tuning section, the sensitivity figure and
    the tuned note above the verdicts."""
    import json

    study = digits_tuned(tmp_path, trials=12)
    out = tmp_path / "out"
    proc = run_cli("run", study, "--out", out, "--workers", "2", "--threads", "1",
                   timeout=1200)
    assert proc.returncode in (0, 1), proc.stderr
    assert "tuned optimizer=sgd: best optimizer.lr=" in proc.stdout
    assert "each variant tuned with 12 trials" in proc.stdout
    summary = json.loads((out / "tuning.json").read_text())
    best = {v["label"]: v["best_params"]["optimizer.lr"] for v in summary["variants"]}
    assert best["optimizer=sgd"] > best["optimizer=adam"], best
    assert all(v["trials"] == 12 for v in summary["variants"])
    for trials in trials_in(out).values():
        assert len(counted(trials)) == 12
    report = (out / "report.md").read_text()
    assert "## Tuning" in report and "figures/tuning_sensitivity.png" in report
    assert "Each variant tuned with 12 trials" in report
    assert (out / "figures" / "tuning_sensitivity.png").stat().st_size > 0
    # the evaluation ran each variant at its best rate with the evaluation seeds
    from ablab.store.study_store import run_config

    info = json.loads((out / "study.json").read_text())
    runs = info["runs"]
    assert sorted(r["seed"] for r in runs) == [0, 0, 1, 1, 2, 2]
    for r in runs:
        label = r["variant_label"]
        config = run_config(r, info.get("configs", {}))
        assert config["optimizer"]["lr"] == pytest.approx(best[label])
    # no confound warning for the tuned rate that differs between the variants
    assert "also differ in optimizer.lr" not in report


def _complete_trials(out: Path) -> int:
    db = out / "tuning.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_during_tuning_then_resume_runs_each_trial_once(tmp_path):
    """Killed (SIGKILL, the whole process group) once 3 trials are told — by progress,
    not by time — and run again: each variant ends with exactly ``trials`` counted trials,
    no setting run twice among them, and every abandoned trial's setting re-run once."""
    trials = 4  # TPE's random start: all 8 trials are asked (RUNNING) at once
    study = digits_tuned(tmp_path, trials=trials, seeds=(0,), epochs=4)
    out = tmp_path / "out"
    proc = spawn_run(study, out, env=cli_env())
    deadline = time.time() + 600
    while _complete_trials(out) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "tuning made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = trials_in(out)
    assert sum(len(counted(t)) for t in before.values()) < 2 * trials  # killed mid-tuning
    assert any(t["state"] == "RUNNING" for rows in before.values() for t in rows)
    resumed = run_cli("run", study, "--out", out, "--workers", "2", "--threads", "1",
                      timeout=900)
    assert resumed.returncode in (0, 1), resumed.stderr
    after = trials_in(out)
    assert len(after) == 2
    assert sum(t["outcome"] == "abandoned" for rows in after.values() for t in rows) >= 1
    for vid, rows in after.items():
        good = counted(rows)
        assert len(good) == trials, rows
        settings = [t["params"]["optimizer.lr"] for t in good]
        assert len(set(settings)) == len(settings), "a setting ran twice"
        # what was counted before the kill is still there, unchanged
        old = {t["number"]: t for t in counted(before.get(vid, []))}
        assert all(t["number"] in {g["number"] for g in good} for t in old.values())
        abandoned = [t for t in rows if t["outcome"] == "abandoned"]
        for t in abandoned:  # re-run with the same setting, exactly once
            assert settings.count(t["params"]["optimizer.lr"]) == 1
    assert (out / "report.md").exists()


def test_run_study_refuses_to_skip_the_tuning(tmp_path):
    """A study with [tune] run through ablab.run_study (or Study.run) would compare the
    variants untuned: refused with one line naming the way to tune it."""
    import ablab
    from ablab.errors import UserError

    study = ablab.load_study(digits_tuned(tmp_path, trials=2))
    with pytest.raises(UserError, match=r"\[tune\].*ablab.run_tuned"):
        ablab.run_study(study, tmp_path / "out")
    assert not (tmp_path / "out" / "index.sqlite").exists()

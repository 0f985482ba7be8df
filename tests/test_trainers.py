"""Trainers: the built-in loop as the default trainer (run ids unchanged), a user's own
training function (``@ablab.register_trainer``), a command running a script, the checks on
what a trainer returns, and the per-run ``timeout``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process, run_cli, spawn_run, statuses, tiny_run, wait_for

import ablab
from ablab.config import parse_run, run_id
from ablab.errors import ConfigError
from ablab.execute import run_task
from ablab.runner import run_study, train_run
from ablab.store import StudyStore
from ablab.study import builtin_studies, load_study
from ablab.train.trainers import RunFailed

PY = sys.executable
METRIC = {"name": "score", "goal": "max", "range": [0, 1]}


# ---------------------------------------------------------------- trainers of this module

CAPTURED: dict[str, object] = {}


@ablab.register_trainer("t_split", "records the split it was given")
def t_split(run, *, scale: float = 1.0) -> dict:
    train, val, test = run.data("train"), run.data("val"), run.data("test")
    CAPTURED.update(train_y=train.y, test_y=test.y, sizes=(len(train), len(val), len(test)),
                    seeds=(run.seed, run.split_seed, run.init_seed, run.order_seed),
                    artefacts=run.artefacts, threads=run.threads, device=run.device)
    for step in (1, 2):
        run.log(step, val_accuracy=0.5 * step * scale / 2)
    return {"score": float(np.mean(test.y)) * scale, "extra": np.float32(2.0)}


@ablab.register_trainer("t_returns", "returns what its option says")
def t_returns(run, *, what: str = "ok") -> dict:
    return {
        "ok": {"score": 0.5},
        "missing": {"accuracy": 0.9, "loss": 0.1},
        "nan": {"score": float("nan")},
        "above": {"score": 1.5},
        "text": {"score": "high"},
    }[what]


@ablab.register_trainer("t_raises")
def t_raises(run) -> dict:
    raise ValueError("the data is upside down\nsecond line")


def sk_run(**over) -> dict:
    data = {"seed": 0, "dataset": {"name": "moons", "n_samples": 200}, "metric": METRIC}
    data.update(over)
    return data


# ---------------------------------------------------------------- the default trainer


#: What ``identity.NOT_IN_IDENTITY`` was before trainers existed (a reference for the test:
#: run ids issued then are computed from exactly this rule).
OLD_NOT_IN_IDENTITY = ("name", "device", "eval_batch_size", "keep", "plugins",
                       "memory_format", "compile")


def old_run_id(resolved: dict) -> str:
    ident = {k: v for k, v in resolved.items() if k not in OLD_NOT_IN_IDENTITY}
    if ident.get("precision") == "fp32":
        ident.pop("precision")
    if isinstance(ident.get("dataset"), dict):
        ident["dataset"] = {k: v for k, v in ident["dataset"].items() if k != "base_dir"}
    key = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def test_the_default_trainer_keeps_every_builtin_studys_run_ids():
    """The built-in loop is a trainer now; a run that names none (or names it, or sets a
    timeout) has the run id it had before trainers existed."""
    for name in builtin_studies():
        study = load_study(name, seeds=2)
        for run in study.runs:
            resolved = run.config.resolved()
            assert not {"trainer", "timeout", "metric"} & set(resolved), name
            assert run.run_id == old_run_id(resolved), name
        explicit = load_study(name, seeds=2, sets=['trainer="builtin"', "timeout=60"])
        assert [r.run_id for r in explicit.runs] == [r.run_id for r in study.runs], name


def untimed(entries: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in entries]


def test_the_builtin_trainer_trains_as_before(one_thread):
    """Through the trainer path, the built-in loop gives the record ``fit`` gives."""
    from ablab.train import fit

    cfg = parse_run(tiny_run())
    direct = fit(cfg).to_dict()
    status, through = run_task(cfg.resolved())
    assert status == "done"
    for key in ("batch_losses", "sizes", "status", "config", "probes"):
        assert through[key] == direct[key], key
    assert untimed(through["history"]) == untimed(direct["history"])
    assert untimed([through["final"]]) == untimed([direct["final"]])


# ---------------------------------------------------------------- a registered trainer


def test_a_trainer_gets_the_builtin_loops_split_and_its_seeds(tmp_path):
    from ablab.data import load_data

    cfg = parse_run(sk_run(trainer={"name": "t_split", "scale": 1.0}, seed=3, order_seed=7))
    result = train_run(cfg.resolved(), artefacts=tmp_path / "art")
    bundle = load_data(cfg.dataset, 3)
    assert np.array_equal(CAPTURED["train_y"], bundle.train.y.numpy())
    assert np.array_equal(CAPTURED["test_y"], bundle.test.y.numpy())
    assert CAPTURED["sizes"] == tuple(bundle.sizes().values())
    assert CAPTURED["seeds"] == (3, 3, 3, 7)
    assert CAPTURED["artefacts"] == tmp_path / "art"
    assert CAPTURED["threads"] >= 1 and CAPTURED["device"] in ("cpu", "cuda")
    assert result.status == "done"
    assert result.final["score"] == pytest.approx(float(np.mean(bundle.test.y.numpy())))
    assert result.final["extra"] == 2.0 and isinstance(result.final["extra"], float)
    assert result.history == [{"epoch": 1, "val_accuracy": 0.25}, {"epoch": 2, "val_accuracy": 0.5}]
    assert result.sizes == bundle.sizes()
    assert result.config["trainer"] == {"name": "t_split", "scale": 1.0}


def test_trainer_options_are_validated_listed_and_varied(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"trainer\.scael: unknown option for 't_split'.*"
                                          r"did you mean 'scale'"):
        parse_run(sk_run(trainer={"name": "t_split", "scael": 2}))
    with pytest.raises(ConfigError, match="trainer.scale: Input should be a valid number"):
        parse_run(sk_run(trainer={"name": "t_split", "scale": "big"}))
    # a trainer other than the built-in loop says which metric the study is about
    with pytest.raises(ConfigError, match=r"metric: trainer 't_split' returns its own "
                                          r"metrics, so the study must declare"):
        parse_run({"dataset": "moons", "trainer": "t_split"})
    # the built-in loop still needs its fields
    with pytest.raises(ConfigError, match="epochs: required field is missing"):
        parse_run({"dataset": "moons", "model": "mlp"})
    code, out, _ = cli_in_process(["list", "trainers"], capsys)
    assert code == 0
    assert "builtin" in out and "command" in out and "t_split" in out and "scale" in out
    from ablab.schema import study_schema

    text = json.dumps(study_schema())
    assert '"t_split"' in text and '"argv"' in text
    study = tmp_path / "vary.toml"
    study.write_text(textwrap.dedent("""
        name = "vary"
        seeds = [0, 1]
        metric = { name = "score", goal = "max", range = [0, 1] }
        [base]
        dataset = { name = "moons", n_samples = 200 }
        trainer = { name = "t_split" }
        [[vary]]
        "trainer.scale" = [0.5, 1.0]
    """))
    plan = load_study(study)
    assert len({r.variant_id for r in plan.runs}) == 2 and len(plan.runs) == 4
    assert {r.variant_label for r in plan.runs} == {"scale=0.5", "scale=1"}
    assert plan.runs[0].config.metric.name == "score"
    # the declared metric is not part of a run's identity
    without = parse_run({**plan.runs[0].config.resolved(), "metric": {"name": "other"}})
    assert run_id(without) == plan.runs[0].run_id


@pytest.mark.parametrize("what, status, fragments", [
    ("ok", "done", []),
    ("missing", "failed", ["returned no 'score'", "it returned: accuracy, loss"]),
    ("nan", "diverged", ["score is nan"]),
    ("above", "failed", ["score = 1.5 is outside its declared range [0, 1]"]),
    ("text", "failed", ["returned score = 'high', not a number"]),
])
def test_what_a_trainer_returns_is_checked_against_the_declared_metric(what, status, fragments):
    got, payload = run_task(parse_run(sk_run(trainer={"name": "t_returns", "what": what}))
                            .resolved())
    if status == "failed":
        assert got == "failed"
        for fragment in fragments:
            assert fragment in payload
    else:
        assert got == "done" and payload["status"] == status
        if status == "diverged":
            assert payload["final"]["score"] is None  # JSON holds no NaN
            assert fragments[0] in payload["error"]


def test_a_trainer_that_raises_fails_its_run_with_the_exceptions_line():
    status, reason = run_task(parse_run(sk_run(trainer="t_raises")).resolved())
    assert status == "failed"
    assert reason.startswith("ValueError: the data is upside down")
    with pytest.raises(RunFailed, match="returned no 'score'"):
        train_run(sk_run(trainer={"name": "t_returns", "what": "missing"}))


# ---------------------------------------------------------------- scikit-learn, a study

SK_TRAINERS = '''
import ablab
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


@ablab.register_trainer("sk_logreg", "scikit-learn logistic regression")
def sk_logreg(run, *, C: float = 1.0, pause: float = 0.0) -> dict:
    import time
    time.sleep(pause)  # a run that takes a while, for kill tests
    train, test = run.data("train"), run.data("test")
    model = LogisticRegression(C=C, max_iter=1000, random_state=run.seed)
    model.fit(train.x, train.y)
    return {"roc_auc": roc_auc_score(test.y, model.predict_proba(test.x)[:, 1])}


@ablab.register_trainer("sk_forest", "scikit-learn random forest")
def sk_forest(run, *, max_depth: int = 4, val: bool = False) -> dict:
    train, test = run.data("train"), run.data("test")
    model = RandomForestClassifier(n_estimators=15, max_depth=max_depth,
                                   random_state=run.seed, n_jobs=run.threads)
    model.fit(train.x, train.y)
    out = {"roc_auc": roc_auc_score(test.y, model.predict_proba(test.x)[:, 1])}
    if val:  # a validation figure for [tune]: logged, as a curve (of one step)
        v = run.data("val")
        out["val_roc_auc"] = roc_auc_score(v.y, model.predict_proba(v.x)[:, 1])
        run.log(1, val_roc_auc=out["val_roc_auc"])
    return out


@ablab.register_trainer("sk_ignores", "a trainer that never reads its option")
def sk_ignores(run, *, width: int = 1) -> dict:
    for step in (1, 2, 3):  # curves for the report's learning-curve figures
        run.log(step, val_accuracy=0.5 + 0.1 * step, train_loss=1.0 / step)
    return {"roc_auc": 0.5 + 0.01 * run.seed}


@ablab.register_trainer("sk_hang", "never returns")
def sk_hang(run) -> dict:
    import time
    while True:
        time.sleep(1)
'''


@pytest.fixture(scope="session")
def sk_plugin(tmp_path_factory) -> Path:
    """The scikit-learn trainers as one plugin file for every test (a process registers a
    trainer name once)."""
    path = tmp_path_factory.mktemp("plugins") / "sk_trainers.py"
    path.write_text(SK_TRAINERS)
    return path


def cancer_study(tmp_path: Path, plugin: Path, seeds: int = 10, extra: str = "",
                 levels: str = '[{ name = "sk_logreg", C = 1.0 }, '
                               '{ name = "sk_forest", max_depth = 4 }]') -> Path:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "label"})
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    path = tmp_path / "cancer.toml"
    path.write_text(textwrap.dedent(f"""
        name = "cancer-models"
        plugins = ["{plugin}"]
        seeds = {list(range(seeds))}
        metric = {{ name = "roc_auc", goal = "max", range = [0, 1] }}
        {extra}
        [base]
        dataset = {{ name = "csv", path = "cancer.csv", target = "label" }}
        [[vary]]
        trainer = {levels}
    """))
    return path


def auc_by_variant(out: Path) -> dict[str, list[float]]:
    by: dict[str, list[float]] = {}
    with sqlite3.connect(out / "index.sqlite") as db:
        for label, status, final in db.execute("SELECT variant_label, status, final FROM runs"):
            assert status == "done", (label, status)
            by.setdefault(label, []).append(json.loads(final)["roc_auc"])
    return by


def needs_declared_outcomes() -> None:
    """Verdicts on a declared metric, and ``--until-decided`` / ``[tune]`` on it, come with
    the analysis' outcome catalogue (``ablab.analysis.outcomes``): skip until it is there."""
    pytest.importorskip("ablab.analysis.outcomes",
                        reason="the analysis does not judge a declared metric yet")


def assert_auc_verdicts(out: Path) -> None:
    """Verdicts on ROC AUC, each variant's interval inside [0, 1]."""
    needs_declared_outcomes()
    from ablab.results import open_results

    analysis = open_results(out).analysis
    [comparison] = analysis.comparisons_on("roc_auc")
    assert comparison.outcome in ("beats", "equivalent", "undecided")
    assert -1.0 <= comparison.decision_low <= comparison.decision_high <= 1.0
    for variant in analysis.variants:
        values = list(variant.by_seed("roc_auc").values())
        assert len(values) == 10 and all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.slow
def test_a_scikit_learn_study_runs_with_the_local_executor(tmp_path, sk_plugin):
    path = cancer_study(tmp_path, sk_plugin)
    outcome = run_study(load_study(path, allow_plugins=True), tmp_path / "out", workers=2,
                        threads=1)
    assert outcome.counts["done"] == 20 and outcome.exit_code == 0
    aucs = auc_by_variant(tmp_path / "out")
    assert set(aucs) == {"trainer=sk_logreg(C=1)", "trainer=sk_forest(max_depth=4)"}
    assert all(len(v) == 10 and all(0.0 <= a <= 1.0 for a in v) for v in aucs.values())
    assert min(min(v) for v in aucs.values()) > 0.9  # both models separate the classes
    assert_auc_verdicts(tmp_path / "out")


@pytest.mark.slow
def test_a_scikit_learn_study_runs_with_ray_as_with_the_local_executor(tmp_path, sk_plugin):
    pytest.importorskip("ray")
    path = cancer_study(tmp_path, sk_plugin, seeds=3)
    run_study(load_study(path, allow_plugins=True), tmp_path / "local", workers=2, threads=1,
              report=False)
    run_study(load_study(path, allow_plugins=True), tmp_path / "ray", workers=2, threads=1,
              executor="ray", report=False)
    assert auc_by_variant(tmp_path / "ray") == auc_by_variant(tmp_path / "local")


@pytest.mark.slow
def test_a_scikit_learn_study_resumes_after_kill_9(tmp_path, sk_plugin):
    path = cancer_study(tmp_path, sk_plugin, seeds=6,
                        levels='[{ name = "sk_logreg", C = 1.0, pause = 1.0 }, '
                               '{ name = "sk_logreg", C = 0.01, pause = 1.0 }]')
    out = tmp_path / "out"
    proc = spawn_run(path, out, "--allow-plugins")
    try:
        wait_for(out, lambda states: states.count("done") >= 2, proc, timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert list(statuses(out).values()).count("done") < 12
    again = spawn_run(path, out, "--allow-plugins")
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    reference = tmp_path / "reference"
    run_study(load_study(path, allow_plugins=True), reference, workers=2, threads=1,
              report=False)
    assert auc_by_variant(out) == auc_by_variant(reference)


@pytest.mark.slow
def test_until_decided_and_tune_work_on_a_declared_metric(tmp_path, sk_plugin):
    needs_declared_outcomes()
    path = cancer_study(tmp_path, sk_plugin, seeds=3)
    proc = run_cli("run", path, "--out", tmp_path / "adaptive", "--until-decided",
                   "--max-seeds", "6", "--allow-plugins", "--workers", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    aucs = auc_by_variant(tmp_path / "adaptive")
    assert all(3 <= len(v) <= 6 and all(0.0 <= a <= 1.0 for a in v) for v in aucs.values())
    tuned = cancer_study(
        tmp_path, sk_plugin, seeds=3, levels='[{ name = "sk_forest", val = true }]',
        extra='[tune]\nparams = { "trainer.max_depth" = "int(2, 6)" }\ntrials = 3\n'
              'metric = "val_roc_auc"\nseeds = [100]\n')
    proc = run_cli("run", tuned, "--out", tmp_path / "tuned", "--allow-plugins",
                   "--workers", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "tuned" / "tuning.json").read_text())
    assert summary["metric"] == "val_roc_auc" and summary["direction"] == "maximize"


# ---------------------------------------------------------------- a command

SCRIPT = '''
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--seed", type=int, required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
config = json.load(open(os.environ["ABLAB_CONFIG"]))
assert config["trainer"]["params"]["lr"] == a.lr
print("training with lr", a.lr, "seed", a.seed)
if a.seed == 1 and a.lr == 0.1:
    print("loss exploded at step 3", file=sys.stderr)
    sys.exit(1)
json.dump({"score": 1.0 / (1.0 + abs(a.lr - 0.01) * 10 + a.seed * 0.01)}, open(a.out, "w"))
'''


def command_study(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    path = tmp_path / "cmd.toml"
    path.write_text(textwrap.dedent(f"""
        name = "cmd"
        seeds = [0, 1]
        metric = {{ name = "score", goal = "max", range = [0, 1] }}
        [base]
        trainer = {{ name = "command", argv = ["{PY}", "train.py", "--lr", "{{params.lr}}",
                     "--seed", "{{seed}}", "--out", "{{metrics_json}}"], params = {{ lr = 0.01 }} }}
        [[vary]]
        "trainer.params.lr" = [0.001, 0.01, 0.1]
    """))
    return path


def test_a_command_trainer_runs_a_script_per_run(tmp_path):
    path = command_study(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"cmd\.toml: trainer 'command' runs '.*python.*', a "
                                          r"program, only with consent; pass --allow-plugins"):
        load_study(path, allow_plugins=False)
    outcome = run_study(load_study(path, allow_plugins=True), out, workers=2, threads=1)
    assert outcome.counts == {**outcome.counts, "done": 5, "failed": 1}
    assert outcome.exit_code == 1
    [(label, reason)] = outcome.failures
    assert label == "lr=0.1, seed=1"
    assert reason == ("command exited with status 1; stderr: loss exploded at step 3")
    store = StudyStore(out)
    scores = {}
    for row in store.rows():
        if row["status"] == "done":
            scores[(row["config"]["trainer"]["params"]["lr"], row["seed"])] = \
                row["final"]["score"]
        folder = out / "runs" / row["run_id"]
        assert (folder / "stdout.txt").read_text().startswith("training with lr")
        assert json.loads((folder / "config.json").read_text())["seed"] == row["seed"]
    assert scores[(0.01, 0)] == 1.0
    assert scores[(0.001, 1)] == pytest.approx(1 / (1 + 0.009 * 10 + 0.01))
    assert len(scores) == 5


def test_a_command_line_naming_no_field_is_refused_when_the_study_is_read(tmp_path):
    path = command_study(tmp_path)
    path.write_text(path.read_text().replace("{params.lr}", "{params.rate}"))
    with pytest.raises(ConfigError, match=r"base\.trainer\.argv\[3\]: \{params\.rate\} "
                                          r"names no run field or config path"):
        load_study(path, allow_plugins=True)


def test_a_command_that_runs_past_its_timeout_fails_with_its_stderr(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import sys, time\nprint('warming up', file=sys.stderr, flush=True)\n"
                      "time.sleep(600)\n")
    run = {"metric": METRIC, "timeout": 1, "trainer": {"name": "command",
           "argv": [PY, str(script)]}}
    status, reason = run_task(parse_run(run).resolved())
    assert status == "failed"
    assert reason == "timed out after 1 s; stderr: warming up"


# ---------------------------------------------------------------- timeout, hang

HANG_MODEL = '''
import time
import ablab
from torch import nn


class Hang(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x):
        while self.training:  # training hangs (the FLOP count at planning runs in eval mode)
            time.sleep(1)
        return self.linear(x)


@ablab.register_model("hang", "a model whose forward never returns")
def hang(spec):
    return Hang(spec.input_shape[0], spec.num_classes)
'''


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_run_that_hangs_is_timed_out_its_worker_replaced_and_the_study_goes_on(
        tmp_path, tmp_path_factory, capsys, executor):
    """The local executor kills the hung run's worker process and starts another; a Ray
    task keeps the time limit itself."""
    if executor == "ray":
        pytest.importorskip("ray")
    plugin = tmp_path_factory.getbasetemp() / "hang_model.py"  # one per process: a model
    plugin.write_text(HANG_MODEL)  # name is registered once
    path = tmp_path / "hang.toml"
    path.write_text(textwrap.dedent(f"""
        name = "hang"
        plugins = ["{plugin}"]
        seeds = [0, 1]
        [base]
        epochs = 2
        timeout = 5
        dataset = {{ name = "moons", n_samples = 200 }}
        model = {{ name = "mlp", hidden = [8] }}
        [[vary]]
        "model" = [{{ name = "mlp", hidden = [8] }}, {{ name = "hang" }}]
        _labels = ["mlp", "hang"]
        _name = "model"
    """))
    code, out, err = cli_in_process(["run", str(path), "--out", str(tmp_path / "out"),
                                     "--allow-plugins", "--workers", "1",
                                     "--executor", executor], capsys)
    assert code == 1, err
    rows = StudyStore(tmp_path / "out").rows()
    by = {(r["variant_label"], r["seed"]): r for r in rows}
    assert {by[("model=mlp", s)]["status"] for s in (0, 1)} == {"done"}
    for seed in (0, 1):
        row = by[("model=hang", seed)]
        assert row["status"] == "failed" and row["error"] == "timed out after 5 s"


def test_a_run_past_its_timeout_in_this_process_fails(sk_plugin):
    """Where no parent watches the run (Ray tasks, a run trained in this process), the time
    limit is kept in the process itself."""
    from ablab.plugins import import_plugins

    import_plugins([str(sk_plugin)], allow=True)
    run = {"metric": {"name": "roc_auc"}, "timeout": 0.5, "trainer": "sk_hang"}
    status, reason = run_task(parse_run(run).resolved(), limit_here=True)
    assert (status, reason) == ("failed", "timed out after 0.5 s")


# ---------------------------------------------------------------- a trainer that ignores an option


@pytest.mark.slow  # two studies' worker processes: over 20 s on 2 cores
def test_a_trainer_that_ignores_a_varied_option_is_flagged_not_judged(tmp_path, sk_plugin):
    """``sk_ignores`` never reads ``width``: its levels train bit-identical runs, which the
    analysis flags (as for a model builder ignoring a varied option) and does not judge."""
    from ablab.analysis import analyze

    path = cancer_study(tmp_path, sk_plugin, seeds=2,
                        levels='[{ name = "sk_ignores", width = 1 }, '
                               '{ name = "sk_ignores", width = 2 }]')
    run_study(load_study(path, allow_plugins=True), tmp_path / "out", workers=1, threads=1)
    assert (tmp_path / "out" / "report.html").is_file()  # with the logged curves
    with StudyStore(tmp_path / "out") as store:
        record = store.load_record(store.rows()[0]["run_id"])
        assert [h["val_accuracy"] for h in record["history"]] == pytest.approx([0.6, 0.7, 0.8])
        analysis = analyze(store)
    assert list(analysis.inert) == ["trainer"]
    assert "never reached the computation" in analysis.inert["trainer"]


# ---------------------------------------------------------------- a notebook cell


def test_a_trainer_defined_in_a_notebook_cell_reaches_the_worker_processes(tmp_path):
    """A trainer registered in ``__main__`` (a notebook cell) is sent to the workers by
    value, as cell-defined models are, and trains there."""
    from ablab.registry import TRAINERS

    def cell_trainer(run, *, bias: float = 0.25) -> dict:
        import os

        return {"score": bias, "pid": os.getpid()}

    cell_trainer.__module__ = "__main__"
    ablab.register_trainer("cell_trainer")(cell_trainer)
    try:
        path = tmp_path / "cell.toml"
        path.write_text(textwrap.dedent("""
            name = "cell"
            seeds = [0, 1]
            metric = { name = "score", goal = "max", range = [0, 1] }
            [base]
            trainer = { name = "cell_trainer" }
        """))
        outcome = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
        assert outcome.counts["done"] == 2 and not outcome.failures
        pids = {row["final"]["pid"] for row in StudyStore(tmp_path / "out").rows()}
        assert os.getpid() not in pids
    finally:
        TRAINERS._entries.pop("cell_trainer", None)


def test_a_run_that_keeps_its_own_time_limit_imports_what_training_needs_before_it_starts(
        tmp_path):
    """Where a process keeps a run's ``timeout`` itself (a Ray task), the first run's imports
    (torch, the loop, the probes) happen before the limit starts: a loaded machine's slow
    first import is not counted against the run, and an expiring limit never cuts an import
    half-way (a half-initialized module then broke every later run in that Ray worker)."""
    from conftest import HAND_BUILT_RUN

    config = parse_run({**HAND_BUILT_RUN, "epochs": 1, "timeout": 600}).model_dump()
    script = tmp_path / "spy.py"
    script.write_text(textwrap.dedent(f"""
        import contextlib, json, sys
        import ablab.train.trainers as trainers
        from ablab.execute.base import TRAINING_MODULES, run_task
        missing_when_the_limit_started = []
        real = trainers.time_limit

        @contextlib.contextmanager
        def spy(seconds):
            if seconds:
                missing_when_the_limit_started.append(
                    [m for m in TRAINING_MODULES if m not in sys.modules])
            with real(seconds):
                yield

        trainers.time_limit = spy
        status, _ = run_task(json.loads({json.dumps(json.dumps(config))}), limit_here=True)
        print(json.dumps([status, missing_when_the_limit_started]))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    status, missing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == "done"
    assert missing == [[]]  # the limit started once, with every training module loaded

"""Performance paths keep results: seeds trained together equal separate runs, each seed
keeps its own record, a diverging seed is marked alone; the benchmark script runs.
(Nothing here is timed.)"""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablab.config import parse_run
from ablab.execute import Task, group_tasks, plan_workers, run_group
from ablab.train import batched, fit
from ablab.train import state as train_state
from ablab.train.batched import can_batch, fit_seeds

ROOT = Path(__file__).resolve().parents[1]
#: batched matmuls round differently from single ones: losses agree to this, accuracies
#: (counts of the same argmaxes) exactly
TOL = 1e-5


def tiny(seed: int, **over):
    data = {
        "epochs": 4, "seed": seed, "batch_size": 32, "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 240, "noise": 0.25},
        "model": {"name": "mlp", "hidden": [16, 8]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "probes": ["gradients", "dead_units", "weights"],
    }
    data.update(over)
    return parse_run(data)


def test_seeds_trained_together_equal_separate_runs():
    configs = [tiny(s) for s in (0, 1, 2)]
    assert can_batch(configs)
    together = fit_seeds(configs)
    alone = [fit(c) for c in configs]
    assert len({r.run_id for r in together}) == 3
    for a, b in zip(together, alone, strict=True):
        assert a.run_id == b.run_id and a.config == b.config and a.status == b.status == "done"
        assert a.sizes == b.sizes
        assert len(a.history) == len(b.history) == 4
        assert len(a.batch_losses) == len(b.batch_losses)
        assert a.batch_losses == pytest.approx(b.batch_losses, abs=TOL)
        for ha, hb in zip(a.history, b.history, strict=True):
            for key in ("train_loss", "val_loss", "val_cross_entropy"):
                assert ha[key] == pytest.approx(hb[key], abs=TOL)
            assert ha["train_accuracy"] == hb["train_accuracy"]
            assert ha["val_accuracy"] == hb["val_accuracy"]
        assert a.final["test_accuracy"] == b.final["test_accuracy"]
        assert a.final["confusion"] == b.final["confusion"]
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], abs=TOL)
        ga, gb = a.probes["gradients"], b.probes["gradients"]
        assert ga["global_grad_norm"] == pytest.approx(gb["global_grad_norm"], rel=1e-4)
        assert a.probes["dead_units"]["dead_unit_fraction"] == (
            b.probes["dead_units"]["dead_unit_fraction"])
        assert a.probes["weights"]["layers"] == b.probes["weights"]["layers"]
    # the seeds really differ from each other (own init, split, shuffling)
    assert together[0].batch_losses != together[1].batch_losses


def test_a_seed_is_bit_identical_whatever_its_group():
    configs = [tiny(s) for s in (0, 1, 2)]
    group = fit_seeds(configs)
    single = fit_seeds([configs[1]])[0]
    assert single.batch_losses == group[1].batch_losses
    assert single.final["test_loss"] == group[1].final["test_loss"]


def test_a_diverging_seed_is_marked_alone(monkeypatch):
    original = train_state.build_model  # every training path builds its models there

    def poisoned(*args, **kwargs):
        model = original(*args, **kwargs)
        if torch.initial_seed() == 1:  # fit_seeds seeds torch with the run's seed first
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
        return model

    monkeypatch.setattr(train_state, "build_model", poisoned)
    configs = [tiny(s) for s in (0, 1, 2)]
    results = fit_seeds(configs)
    assert [r.status for r in results] == ["done", "diverged", "done"]
    bad = results[1]
    assert bad.diverged_epoch == 1 and len(bad.history) == 1
    assert bad.history[0]["train_loss"] is None and bad.final["at_chance"] is None
    for r in (results[0], results[2]):
        assert len(r.history) == 4 and math.isfinite(r.final["test_loss"])
    assert results[0].final["test_accuracy"] == fit(configs[0]).final["test_accuracy"]


def test_early_stopping_per_seed():
    configs = [tiny(s, epochs=30, early_stopping={"patience": 2, "monitor": "val_loss"})
               for s in (0, 1)]
    together = fit_seeds(configs)
    for a, b in zip(together, [fit(c) for c in configs], strict=True):
        assert a.final["epochs_run"] == b.final["epochs_run"]
        assert a.final["stopped_early"] == b.final["stopped_early"]
        assert a.final["weights_epoch"] == b.final["weights_epoch"]
        assert a.final["test_accuracy"] == b.final["test_accuracy"]


def test_can_batch_rules():
    assert can_batch([tiny(0), tiny(1)])
    assert can_batch([tiny(0)])  # a group of one
    assert not can_batch([tiny(0), tiny(0)])  # same seed twice
    assert not can_batch([tiny(0), tiny(1, optimizer={"name": "sgd", "lr": 0.1})])
    plateau = {"name": "reduce_on_plateau"}  # each member steps its own schedule
    assert can_batch([tiny(0, schedule=plateau), tiny(1, schedule=plateau)])
    bn = {"name": "mlp", "hidden": [8], "batch_norm": True}
    assert not can_batch([tiny(0, model=bn), tiny(1, model=bn)])


def test_groups_and_worker_plan(monkeypatch):
    configs = [tiny(s) for s in (0, 1)] + [tiny(0, model={"name": "mlp", "hidden": [4]})]
    tasks = [Task(f"r{i}", f"r{i}", c.resolved()) for i, c in enumerate(configs)]
    # On a CPU each run is a unit of its own (seeds together measured slower there) ...
    assert [[t.run_id for t in g] for g in group_tasks(tasks)] == [["r0"], ["r1"], ["r2"]]
    assert not batched.worth_batching(configs)
    # ... on a GPU the seeds of a variant train together
    monkeypatch.setattr(batched, "worth_batching", lambda configs: True)
    groups = group_tasks(tasks)
    assert [[t.run_id for t in g] for g in groups] == [["r0", "r1"], ["r2"]]


def test_worker_plan_splits_the_cores(monkeypatch):
    import ablab.execute.base as base

    monkeypatch.setattr(base, "available_cores", lambda: 8)
    # One single-thread worker per unit while units >= cores; spare cores become threads.
    assert plan_workers(20, None, None) == (8, 1)
    assert plan_workers(3, None, None) == (3, 2)
    assert plan_workers(3, 2, None) == (2, 4)  # the user's workers win, threads fill up
    # Small steps (a tiny MLP: far below SMALL_STEP_FLOPS) keep one thread per worker.
    tasks = [Task(f"r{i}", f"r{i}", tiny(i).resolved()) for i in range(3)]
    assert plan_workers(tasks, None, None) == (3, 1)
    # Large models (above LARGE_MODEL_FLOPS) get at most half the cores as workers.
    monkeypatch.setattr(base, "_flops", lambda tasks: (2 * base.LARGE_MODEL_FLOPS, 1e12))
    assert plan_workers(tasks, None, None) == (3, 2)
    assert plan_workers(tasks * 4, None, None) == (4, 2)  # 12 units, 8 cores


def test_run_group_gives_one_outcome_and_epoch_records_per_run():
    configs = [tiny(s, epochs=2).resolved() for s in (0, 1)]
    events = []
    outcomes = run_group(configs, lambda i, rec: events.append((i, rec["epoch"])))
    assert [s for s, _ in outcomes] == ["done", "done"]
    assert sorted(events) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert outcomes[0][1]["run_id"] != outcomes[1][1]["run_id"]


@pytest.mark.slow
def test_benchmark_quick_mode_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick",
         "--out", str(tmp_path), "--skip", "omp", "workers", "seeds", "studies"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training throughput" in proc.stdout
    assert list(tmp_path.glob("throughput-*.json"))

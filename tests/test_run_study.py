"""Running studies: the store, resume after kills, failing and diverging runs, executors."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import csv_metrics, moons_study, spawn_run, wait_for

from ablab.errors import UserError
from ablab.results import study_status
from ablab.runner import run_study
from ablab.store import StudyStore
from ablab.store.records import read_record
from ablab.study import load_study


def test_study_runs_every_variant_and_seed_and_resumes(tmp_path):
    out = tmp_path / "out"
    study = load_study(moons_study(tmp_path))
    outcome = run_study(study, out, workers=2, threads=1, report=False)
    assert outcome.exit_code == 0 and outcome.ran == 4
    assert outcome.counts["done"] == 4
    results = csv_metrics(out)
    assert len(results) == 4 and all(s == "done" for s, _, _ in results.values())
    for name in ("study.toml", "study.json", "index.sqlite", "results.csv", "summary.csv"):
        assert (out / name).exists()
    with open(out / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert [row["activation"] for row in summary] == ["relu", "tanh"]
    assert all(row["test_accuracy_n"] == "2" for row in summary)
    record = read_record(out / "runs" / f"{study.runs[0].run_id}.json")  # packed on disk
    assert record["status"] == "done" and len(record["history"]) == 3
    # Resume: nothing left to do, nothing re-run.
    again = run_study(load_study(moons_study(tmp_path)), out, workers=2, threads=1, report=False)
    assert again.ran == 0 and csv_metrics(out) == results


@pytest.mark.slow
def test_changed_study_is_refused_unless_forced(tmp_path):
    out = tmp_path / "out"
    run_study(load_study(moons_study(tmp_path, epochs=2)), out, workers=1, threads=1, report=False)
    bigger = moons_study(tmp_path, epochs=2).read_text().replace('"tanh"]', '"tanh", "elu"]')
    path = tmp_path / "bigger.toml"
    path.write_text(bigger)
    with pytest.raises(UserError, match="different runs .2 new in this file"):
        run_study(load_study(path), out, workers=1, threads=1, report=False)
    before = csv_metrics(out)
    outcome = run_study(load_study(path), out, workers=1, threads=1, report=False,
                        force_new_variants=True)
    assert outcome.ran == 2
    after = csv_metrics(out)
    assert len(after) == 6 and all(after[rid] == before[rid] for rid in before)


def test_a_diverging_variant_does_not_stop_the_study(tmp_path):
    path = moons_study(tmp_path, epochs=3, extra='\n[[vary]]\n"optimizer.lr" = [0.01, 1e12]\n')
    path.write_text(path.read_text().replace('optimizer = { name = "adam", lr = 0.01 }',
                                             'optimizer = { name = "sgd", lr = 0.01 }'))
    out = tmp_path / "out"
    outcome = run_study(load_study(path), out, workers=2, threads=1, report=False)
    assert outcome.exit_code == 1
    assert outcome.counts["diverged"] >= 2
    assert outcome.counts["done"] + outcome.counts["diverged"] == 8
    with open(out / "summary.csv") as handle:
        summary = {row["variant"]: row for row in csv.DictReader(handle)}
    relu = summary["activation=relu, lr=1e+12"]  # relu's unbounded outputs overflow for sure
    assert relu["diverged"] == "2" and relu["test_accuracy_n"] == "0"
    assert summary["activation=relu, lr=0.01"]["done"] == "2"


def test_a_failing_run_is_recorded_and_retried_on_request(tmp_path, monkeypatch):
    out = tmp_path / "out"
    # A dataset whose files are missing fails its runs; the other variant completes.
    path = moons_study(tmp_path, epochs=2)
    path.write_text(path.read_text().replace(
        '"model.activation" = ["relu", "tanh"]',
        '"dataset" = [{ name = "moons", n_samples = 400 }, { name = "mnist" }]'))
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path / "no-data"))
    # (missing data stops the study before it starts, see test_no_silent_mistakes.py;
    # here the files vanish after that check, so the runs fail inside the workers)
    monkeypatch.setattr("ablab.data.fingerprint.unavailable", lambda datasets: [])
    outcome = run_study(load_study(path), out, workers=2, threads=1, report=False)
    assert outcome.exit_code == 1
    assert outcome.counts == {"pending": 0, "running": 0, "done": 2, "diverged": 0, "failed": 2}
    assert all("DataMissingError" in reason for _, reason in outcome.failures)
    status = study_status(out)
    assert status["counts"]["failed"] == 2
    # Without --retry-failed nothing is re-run; with it the failed runs are tried again.
    assert run_study(load_study(path), out, workers=1, threads=1, report=False).ran == 0
    retried = run_study(load_study(path), out, workers=1, threads=1, report=False,
                        retry_failed=True)
    assert retried.ran == 2


def test_second_process_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    with StudyStore(out) as store, store.locked():
        with pytest.raises(UserError, match="another `ablab run` is working on this directory"):
            run_study(load_study(moons_study(tmp_path)), out, workers=1, report=False)


# ----------------------------------------------------------------- kills (real processes)

def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same study run without interruption, for comparison."""
    tmp = tmp_path_factory.mktemp("ref")
    path = moons_study(tmp, epochs=40)
    proc = spawn_run(path, tmp / "out")
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    return csv_metrics(tmp / "out")


@pytest.mark.slow
def test_kill_9_of_a_worker_fails_only_its_run_and_retry_completes(tmp_path, reference):
    path = moons_study(tmp_path, epochs=40)
    out = tmp_path / "out"
    proc = spawn_run(path, out)
    # Both workers busy: each holds the run it trains (and one sent ahead, not started,
    # which goes back to the queue when its worker dies).
    wait_for(out, lambda s: s.count("running") >= 2)
    # Workers are forked by multiprocessing's fork server (a child of the study's
    # process, beside the resource tracker): they are the fork server's children.
    servers = [p for p in _children(proc.pid)
               if "forkserver" in Path(f"/proc/{p}/cmdline").read_text()]
    busy = [w for server in servers for w in _children(server)]
    os.kill(busy[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "worker process died (killed by signal 9)" in stderr
    assert "Traceback" not in stderr
    counts = study_status(out)["counts"]
    # The worker held one unit of work: on a CPU, one run (seeds train together on GPUs).
    assert counts["failed"] == 1 and counts["done"] == 3
    proc = subprocess.run(
        [sys.executable, "-m", "ablab.cli", "run", str(path), "--out", str(out), "--workers", "2",
         "--threads", "1", "--retry-failed"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert csv_metrics(out) == reference  # every run done exactly once, same numbers


@pytest.mark.slow
def test_ray_executor_gives_the_same_results(tmp_path):
    pytest.importorskip("ray")
    path = moons_study(tmp_path, epochs=3)
    local = run_study(load_study(path), tmp_path / "local", workers=2, threads=1, report=False)
    ray = run_study(load_study(path), tmp_path / "ray", workers=2, threads=1, executor="ray",
                    report=False)
    assert local.counts == ray.counts and ray.counts["done"] == 4
    assert csv_metrics(tmp_path / "local") == csv_metrics(tmp_path / "ray")


def test_study_store_closes_its_index_on_the_way_out(tmp_path):
    with pytest.raises(RuntimeError), StudyStore(tmp_path / "s") as store:
        store.root.mkdir()
        assert store.counts()["done"] == 0  # opens the index
        raise RuntimeError("inside the block")
    assert store._db is None

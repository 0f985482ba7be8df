"""What several test files share: a tiny run config, the tiny moons study, the CLI as a
user runs it, and helpers that watch a study directory while a real process works on it."""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import ablab.cli

# Tests never reach for the network: a missing dataset must fail fast and clearly.
os.environ.setdefault("ABLAB_DOWNLOAD", "0")

#: ``python -m ablab.cli``, as a user's shell runs it.
ABLAB = [sys.executable, "-m", "ablab.cli"]


def tiny_run(**over):
    """A run config (plain data) that trains in well under a second."""
    data = {
        "epochs": 3,
        "batch_size": 64,
        "seed": 0,
        "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 300, "noise": 0.2},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    for key, value in over.items():
        data[key] = value
    return data


@pytest.fixture
def run_data():
    return tiny_run()


@pytest.fixture
def one_thread():
    """torch at one CPU thread for the test, then back: tiny models are fastest so and
    immune to a busy machine's contention, and conv kernels split their sums by thread
    count, so runs a test compares bit for bit (a run and its rerun or its reference, in
    the same test) sum alike whatever an earlier test left set."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


MOONS_STUDY = """
name = "{name}"
description = "{description}"
seeds = {seeds}

[base]
epochs = {epochs}
batch_size = 32
device = "cpu"
dataset = {{ name = "moons", n_samples = 400, noise = 0.25 }}
model = {{ name = "mlp", hidden = [32, 32] }}
optimizer = {{ name = "adam", lr = 0.01 }}
{base}
[[vary]]
"model.activation" = {activations}
"""


def moons_study(tmp_path: Path, name: str = "tiny", seeds=(0, 1), epochs: int = 3,
                activations=("relu", "tanh"), description: str = "a tiny study for tests",
                extra: str = "", base: str = "") -> Path:
    """Write the tiny moons study (activations x seeds) to ``tmp_path/NAME.toml``: the one
    study file the tests share. ``base``: more ``[base]`` lines (e.g. ``probes = [...]``);
    ``extra``: more tables after the ``[[vary]]`` of activations."""
    path = tmp_path / f"{name}.toml"
    path.write_text(MOONS_STUDY.format(
        name=name, seeds=list(seeds), epochs=epochs, description=description,
        activations=json.dumps(list(activations)), base=base) + extra)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, ABLAB_DOWNLOAD="0", COLUMNS="120", **extra)


def run_cli(*args, cwd=None, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``ablab ARGS...`` in a real process; its exit status and output."""
    return subprocess.run(ABLAB + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, env=env or cli_env(), timeout=timeout)


def assert_one_line(code, stdout: str, stderr: str, fragments, status: int = 2) -> str:
    """Exit ``status``, no traceback, one line on stderr holding every fragment; returns
    the line."""
    assert code == status, f"exit {code}\n{stderr}\n{stdout}"
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, one line on stderr holding every fragment; returns the line."""
    return assert_one_line(proc.returncode, proc.stdout, proc.stderr, fragments)


@contextmanager
def ctrl_c_reaches_children():
    """Processes started inside this block take Ctrl-C (SIGINT) by default, however pytest
    was started. A shell starts a background job (``make test &`` in a script, some CI
    runners) with SIGINT ignored, and an ignored signal stays ignored across fork and exec:
    an ``ablab run`` spawned from such a pytest never sees the test's SIGINT (issue #20:
    the interrupt test timed out in those suite runs only). A *handled* signal is reset to
    its default in the child, so SIGINT is handled here while the child starts."""
    if (signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def spawn_run(study: Path, out: Path, *extra: str, env=None) -> subprocess.Popen:
    """``ablab run STUDY --out OUT`` in the background (2 workers x 1 thread), in a
    session of its own, with SIGINT at its default (:func:`ctrl_c_reaches_children`)."""
    with ctrl_c_reaches_children():
        return subprocess.Popen(
            ABLAB + ["run", str(study), "--out", str(out), "--workers", "2", "--threads", "1",
                     *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env or cli_env(), start_new_session=True,
        )


def statuses(out: Path) -> dict[str, str]:
    """Run id -> status, read from the index without disturbing the writer."""
    db = out / "index.sqlite"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.Error:
        return {}


def wait_for(out: Path, predicate, proc: subprocess.Popen | None = None,
             timeout: float = 180.0) -> None:
    """Poll the index until ``predicate(list of statuses)`` holds; fail if ``proc`` exits
    first or the time runs out."""
    deadline = time.time() + timeout
    seen: list[list[str]] = []  # each distinct state of the index, for the failure message
    while time.time() < deadline:
        now = sorted(statuses(out).values())
        if not seen or seen[-1] != now:
            seen.append(now)
        if predicate(now):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ablab exited {proc.returncode} (index states seen: {seen}): "
                                 f"{proc.stdout.read() if proc.stdout else ''} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out; index states seen: {seen}")


def csv_metrics(out: Path) -> dict[str, tuple[str, str, str]]:
    """Run id -> (status, test_accuracy, test_loss) from results.csv; each run once."""
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a run appears twice in results.csv"
    return {r["run_id"]: (r["status"], r["test_accuracy"], r["test_loss"]) for r in rows}


def cli_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    """``ablab ARGS`` in this process: (exit status, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["ablab", *args]
    try:
        ablab.cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


#: A resolved run config for analyses built by hand (rows without training).
HAND_BUILT_RUN = {
    "seed": 0,
    "epochs": 5,
    "batch_size": 64,
    "dataset": {"name": "moons", "noise": 0.3, "validate_on": "holdout", "split_seed": None},
    "model": {"name": "mlp", "activation": {"name": "relu"}, "hidden": [8]},
    "loss": {"name": "cross_entropy", "label_smoothing": 0.0},
    "optimizer": {"name": "adam", "lr": 0.01},
    "schedule": {"name": "none"},
    "early_stopping": None,
}

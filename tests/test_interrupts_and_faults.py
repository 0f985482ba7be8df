"""Interrupts and faults lose nothing: signals, SIGKILL at random points then resume, a
second process on a locked directory, faults inside runs, a full disk, a study of 200
runs. The tests drive real ``ablab run`` processes on the tiny moons study.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    assert_one_line,
    cli_in_process,
    csv_metrics,
    ctrl_c_reaches_children,
    moons_study,
    statuses,
    wait_for,
)
from conftest import spawn_run as spawn_study_run

from ablab.results import study_status
from ablab.runner import _Recorder, run_study
from ablab.store import StudyStore
from ablab.store import files as store_files
from ablab.study import load_study

HERE = Path(__file__).parent
BAD = HERE / "bad_inputs"
ABLAB = [sys.executable, "-m", "ablab.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "no-data"
    empty.mkdir(exist_ok=True)
    return dict(os.environ, ABLAB_DOWNLOAD="0", ABLAB_DATA=str(empty), COLUMNS="200", **extra)




# ------------------------------------------------------------------------ shared study

def spawn_run(study: Path, out: Path, *extra: str) -> subprocess.Popen:
    return spawn_study_run(study, out, *extra, env=_env(out.parent))


metrics = csv_metrics


def index_rows(out: Path) -> list[dict]:
    with sqlite3.connect(out / "index.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs")]


def assert_each_run_recorded_once(out: Path, n: int) -> None:
    rows = index_rows(out)
    assert len(rows) == n and len({r["run_id"] for r in rows}) == n
    assert all(r["status"] == "done" for r in rows), [r["status"] for r in rows]
    records = {p.stem for p in (out / "runs").glob("*.json")}
    assert records == {r["run_id"] for r in rows}
    for rid in records:  # every record whole and about its own run
        assert json.loads((out / "runs" / f"{rid}.json").read_text())["run_id"] == rid
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert len(metrics(out)) == n


# ------------------------------------------------------------------------ interruption


# Runs of the "gated_tanh" activation start, then wait in their worker until the test's
# gate file exists: the interrupt always finds runs done and runs running, however fast
# the machine (before, an idle machine could finish the study before the signal came).
GATE_PLUGIN = """
import multiprocessing
import os
import time

from torch import nn

import ablab


@ablab.register_activation("gated_tanh", "tanh whose runs wait for the test's gate file")
def gated_tanh() -> nn.Module:
    if multiprocessing.parent_process() is not None:  # a worker, not the planning parent
        # at most 20 s: a worker the interrupt did not reach must not hang the test
        give_up = time.monotonic() + 20
        while not os.path.exists(os.environ["ABLAB_TEST_GATE"]) and time.monotonic() < give_up:
            time.sleep(0.01)
    return nn.Tanh()
"""


def _gated_study(tmp_path: Path) -> Path:
    (tmp_path / "gate.py").write_text(GATE_PLUGIN)
    path = moons_study(tmp_path, "rel", seeds=(0, 1), activations=("relu", "gated_tanh"), epochs=3)
    path.write_text('plugins = ["gate.py"]\n' + path.read_text())
    return path


def _interrupt(path: Path, out: Path, sig: int, whole_group: bool, capsys) -> tuple:
    """Start `ablab run`, wait until a run is done and another is running, send ``sig``;
    return (exit status, stdout, stderr, runs done before the signal)."""
    proc = spawn_study_run(path, out, env=_env(
        out.parent, ABLAB_ALLOW_PLUGINS="1", ABLAB_TEST_GATE=str(out.parent / "gate-open")))
    try:
        wait_for(out, lambda s: s.count("done") >= 1 and "running" in s, proc)
        # While it works, a second `ablab run` (this process) on the directory is refused.
        code, stdout, stderr = cli_in_process(["run", str(path), "--out", str(out)], capsys)
        assert_one_line(code, stdout, stderr,
                        [f"{out}: another `ablab run` is working on this directory"])
        done_before = {rid for rid, s in statuses(out).items() if s == "done"}
        (os.killpg if whole_group else os.kill)(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, stdout, stderr, done_before


def test_sigint_and_sigterm_stop_cleanly_and_resume_finishes(tmp_path, capsys, monkeypatch):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) exits 130 and
    SIGTERM to the main process (`kill`, systemd, docker stop) exits 143; each time the
    running runs go back to pending, nothing done is lost, and one line says how to
    resume. Then resuming runs only what is left."""
    monkeypatch.setenv("ABLAB_ALLOW_PLUGINS", "1")  # the in-process second `ablab run`
    gate = tmp_path / "gate-open"
    monkeypatch.setenv("ABLAB_TEST_GATE", str(gate))
    path = _gated_study(tmp_path)
    out = tmp_path / "out"
    done: set[str] = set()
    for sig, whole_group, status in ((signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)):
        code, stdout, stderr, done_before = _interrupt(path, out, sig, whole_group, capsys)
        line = assert_one_line(code, stdout, stderr, ["interrupted: "], status=status)
        assert line.endswith(f"run the same command again to resume into {out}")
        after = statuses(out)
        assert "running" not in after.values()  # running runs went back to pending
        assert done | done_before <= {rid for rid, s in after.items() if s == "done"}
        assert not list(out.rglob("*.tmp"))
        done = {rid for rid, s in after.items() if s == "done"}
    assert 1 <= len(done) < 4
    gate.touch()
    outcome = run_study(load_study(path, allow_plugins=True), out, workers=2, threads=1,
                        report=False)
    assert outcome.exit_code == 0 and outcome.ran == 4 - len(done)
    assert_each_run_recorded_once(out, 4)
    assert all(r["attempts"] == 1 for r in index_rows(out) if r["run_id"] in done)


def test_spawned_runs_take_ctrl_c_even_when_pytest_was_started_ignoring_it():
    """A shell starts a background job with SIGINT ignored and children inherit that, so
    an `ablab run` spawned from such a pytest ignored the interrupt test's Ctrl-C and that
    test timed out (issue #20, in some whole-suite runs only). The spawn helper gives its
    child the default; Python then turns SIGINT into KeyboardInterrupt there."""
    probe = [sys.executable, "-c",
             "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `make test &` starts
    try:
        inherited = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
        with ctrl_c_reaches_children():
            spawned = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (inherited, spawned) == ("True", "False")


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: relative path -> (mtime in ns, content)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_second_run_on_a_busy_directory_touches_nothing(tmp_path, capsys):
    """While one `ablab run` holds the directory, a second one is refused with one line
    and writes nothing there first: it does not rebuild a damaged index (or heal records),
    which is the lock holder's work (before, it did so to size its progress display)."""
    path = moons_study(tmp_path, "rel", seeds=(0,), activations=("relu", "tanh"), epochs=1)
    out = tmp_path / "out"
    with StudyStore(out) as store, store.locked():
        store.sync_plan(load_study(path))
    (out / "index.sqlite").write_bytes(b"not a database" * 100)
    with StudyStore(out).locked():  # the other `ablab run`
        before = _tree(out)
        code, stdout, stderr = cli_in_process(["run", str(path), "--out", str(out)], capsys)
        after = _tree(out)
    assert_one_line(code, stdout, stderr,
                    [f"{out}: another `ablab run` is working on this directory"])
    assert after == before


def test_an_interrupt_that_cuts_a_transaction_short_still_resets_running_runs(tmp_path):
    """A signal can land between BEGIN IMMEDIATE and the `with` block that would end the
    transaction; stopping must still put the running runs back to pending (before, its
    write failed: "cannot start a transaction within a transaction")."""
    study = load_study(moons_study(tmp_path, "rel", seeds=(0,), activations=("relu", "tanh"),
                                   epochs=1))
    out = tmp_path / "out"
    with StudyStore(out) as store, store.locked():
        store.sync_plan(study)
        store.mark_running(study.runs[0].run_id)
        store.db.execute("BEGIN IMMEDIATE")  # what the cut-short transaction leaves open
        stopped = _Recorder(store, None).interrupted(KeyboardInterrupt())
    assert stopped.exit_code == 130 and "2 left" in str(stopped)
    assert set(statuses(out).values()) == {"pending"}


def kill_when(out: Path, proc: subprocess.Popen, records: int, timeout: float = 180.0) -> bool:
    """SIGKILL ``proc``'s whole process group as soon as the study holds at least
    ``records`` done runs and another run is mid-flight (a kill point defined by progress,
    not by the clock). False if the study finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = list(statuses(out).values())
        if states.count("done") >= records and "running" in states:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            return True
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()
            return False
        time.sleep(0.02)  # polling only: what is asserted never depends on how long
    raise AssertionError(f"timed out; statuses {statuses(out)}")


@pytest.mark.slow
def test_sigkill_of_the_whole_study_at_random_points_loses_nothing(tmp_path):
    """12 runs; SIGKILL the whole process group at seeded random points of progress
    (after k run records exist, while another run trains), resume each time; the end
    result equals an uninterrupted run's, each run recorded once. The kill points do not
    depend on how fast the machine is."""
    path = moons_study(tmp_path, "rel", seeds=(0, 1, 2, 3), epochs=30,
                       activations=("relu", "tanh", "elu"))  # mlp [32, 32]
    reference = tmp_path / "reference"
    run_study(load_study(path), reference, workers=2, threads=1, report=False)
    out = tmp_path / "out"
    rng = random.Random(20240611)
    kills = 0
    for _ in range(4):
        done_now = list(statuses(out).values()).count("done")
        # 0: kill during the first run after resuming; 1-2: after one or two more records
        target = done_now + rng.choice([0, 1, 2])
        proc = spawn_run(path, out)
        try:
            killed = kill_when(out, proc, target)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        if not killed:
            break
        kills += 1
    assert kills == 4  # 12 runs, about 2 more records per round at most: it cannot finish
    final = spawn_run(path, out)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    assert metrics(out) == metrics(reference)
    assert_each_run_recorded_once(out, 12)
    assert (out / "report.html").exists()


# ------------------------------------------------------------------------ faults in runs


def test_out_of_memory_fails_its_run_and_the_study_goes_on(tmp_path, capsys):
    """One variant asks for a 1e11-unit layer (torch's allocator refuses at once), one
    diverges, one is fine: exit 1, the failure recorded with its reason, the report says
    which diverged; --retry-failed runs the failed run only."""
    path = tmp_path / "faults.toml"
    path.write_text("""
name = "faults"
seeds = [0]
[base]
epochs = 3
batch_size = 32
device = "cpu"
dataset = { name = "moons", n_samples = 200 }
model = { name = "mlp", hidden = [16] }
optimizer = { name = "adam", lr = 0.01 }
[[vary]]
_labels = ["fine", "huge", "diverges"]
"model.hidden" = [[16], [100000000000], [16]]
"optimizer" = [{ name = "adam", lr = 0.01 }, { name = "adam", lr = 0.01 },
               { name = "sgd", lr = 1e12 }]
""")
    out = tmp_path / "out"
    code, stdout, stderr = cli_in_process(
        ["run", str(path), "--out", str(out), "--workers", "2", "--threads", "1"], capsys)
    assert code == 1, stderr
    assert "Traceback" not in stdout + stderr
    failed = [line for line in stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "recipe=huge" in failed[0]
    assert "allocate memory" in failed[0] or "out of memory" in failed[0]
    assert "--retry-failed" in stdout
    rows = {r["variant_label"]: r for r in index_rows(out)}
    assert rows["recipe=fine"]["status"] == "done"
    assert rows["recipe=diverges"]["status"] == "diverged"
    assert rows["recipe=huge"]["status"] == "failed" and "memory" in rows["recipe=huge"]["error"]
    html = (out / "report.html").read_text()
    assert "diverged" in html and "failed" in html
    before = metrics(out)
    retried = run_study(load_study(path), out, workers=1, threads=1, report=False,
                        retry_failed=True)
    assert retried.ran == 1 and retried.counts["failed"] == 1  # it fails again, alone
    attempts = {r["variant_label"]: r["attempts"] for r in index_rows(out)}
    assert attempts == {"recipe=fine": 1, "recipe=huge": 2, "recipe=diverges": 1}
    after = metrics(out)
    assert {k: v for k, v in after.items() if v[0] != "failed"} == {
        k: v for k, v in before.items() if v[0] != "failed"}


# ------------------------------------------------------------------------ storage


def test_out_below_a_regular_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = moons_study(tmp_path, "rel", seeds=(0,), epochs=1, activations=("relu",))
    code, out, err = cli_in_process(["run", str(path), "--out", str(blocker / "out")], capsys)
    assert_one_line(code, out, err, [f"{blocker / 'out'}: cannot write here (Not a directory)"])
    run = BAD / "run_ok_for_set.toml"
    code, out, err = cli_in_process(["train", str(run), "--out", str(blocker / "o")], capsys)
    assert_one_line(code, out, err, ["cannot write here (Not a directory)"])
    for what in ("status", "report"):
        code, out, err = cli_in_process([what, str(tmp_path)], capsys)
        assert_one_line(code, out, err, [f"{tmp_path}: not a study directory"])


@pytest.mark.slow
def test_disk_full_while_recording_keeps_what_was_done(tmp_path, monkeypatch, capsys):
    """ENOSPC on the third run record: one line, exit 2; the index and the records
    written before stay readable; freeing space and running again finishes the study."""
    path = moons_study(tmp_path, "rel", seeds=(0, 1), activations=("relu", "tanh"), epochs=3)
    out = tmp_path / "out"
    real = store_files.atomic_write_bytes
    written = []

    def full_disk_after_two_records(target, data):
        if Path(target).parent.name == "runs":
            if len(written) >= 2:
                def no_space(fd):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                monkeypatch.setattr(store_files.os, "fsync", no_space)
                try:
                    return real(target, data)
                finally:
                    monkeypatch.undo()
            written.append(target)
        return real(target, data)

    monkeypatch.setattr(store_files, "atomic_write_bytes", full_disk_after_two_records)
    code, stdout, stderr = cli_in_process(
        ["run", str(path), "--out", str(out), "--workers", "1", "--threads", "1"], capsys)
    monkeypatch.undo()
    assert_one_line(code, stdout, stderr, ["cannot write (No space left on device)"])
    assert not list(out.rglob("*.tmp"))
    code, stdout, stderr = cli_in_process(["status", str(out)], capsys)
    assert code == 0 and "Traceback" not in stdout + stderr
    info = study_status(out)
    assert info["counts"]["done"] == 2 and info["total"] == 4
    done = [r["run_id"] for r in info["rows"] if r["status"] == "done"]
    assert {Path(p).stem for p in written} == set(done)
    outcome = run_study(load_study(path), out, workers=1, threads=1, report=False)
    assert outcome.ran == 2 and outcome.exit_code == 0
    assert_each_run_recorded_once(out, 4)


def _can_mount_tmpfs(where: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
        capture_output=True, timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_a_really_full_disk(tmp_path):
    """A 200 KiB tmpfs (in a private mount namespace) fills up during a study: exit 2 with
    one line; `ablab status` still reads the study; after growing the disk the same
    command finishes it, each run once."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    path = moons_study(tmp_path, "rel", seeds=(0, 1), activations=("relu", "tanh"), epochs=3)
    out = mnt / "out"
    py = " ".join(ABLAB)
    run = f"{py} run {path} --out {out} --workers 2 --threads 1"
    script = f"""
mount -t tmpfs -o size=200k tmpfs {mnt} || exit 99
{run} >{tmp_path}/1.out 2>{tmp_path}/1.err; echo $? >{tmp_path}/1.rc
{py} status {out} >{tmp_path}/2.out 2>{tmp_path}/2.err; echo $? >{tmp_path}/2.rc
mount -o remount,size=20m {mnt}
{run} >{tmp_path}/3.out 2>{tmp_path}/3.err; echo $? >{tmp_path}/3.rc
cp -r {out} {tmp_path}/kept
"""
    subprocess.run(["unshare", "-rm", "sh", "-c", script], env=_env(tmp_path), timeout=300)

    def result(i):
        return [int((tmp_path / f"{i}.rc").read_text()), (tmp_path / f"{i}.out").read_text(),
                (tmp_path / f"{i}.err").read_text()]

    code, stdout, stderr = result(1)
    line = assert_one_line(code, stdout, stderr, [])
    assert "No space left on device" in line or "disk is full" in line, line
    code, stdout, stderr = result(2)
    assert code == 0 and "Traceback" not in stdout + stderr, stderr
    assert "runs left" in stdout or "nothing left to run" in stdout  # read back whole
    code, stdout, stderr = result(3)
    assert code == 0, stderr
    assert_each_run_recorded_once(tmp_path / "kept", 4)


# ------------------------------------------------------------------------ load


@pytest.mark.slow
def test_200_run_study_records_every_run_once(tmp_path):
    """20 variants × 10 seeds of tiny digits runs through the real CLI; prints wall time
    and peak memory (parent and largest child) for the benchmark notes."""
    lrs = [round(0.001 * (i + 1), 3) for i in range(20)]
    path = tmp_path / "load.toml"
    path.write_text(f"""
name = "load-200"
seeds = {list(range(10))}
[base]
epochs = 1
batch_size = 32
device = "cpu"
dataset = {{ name = "digits", subset = 100 }}
model = {{ name = "mlp", hidden = [16] }}
optimizer = {{ name = "adam", lr = 0.01 }}
[[vary]]
"optimizer.lr" = {lrs}
""")
    out = tmp_path / "out"
    # A small wrapper process runs `ablab run` and reports the peak RSS of ablab's own
    # process (its only child) and of the largest of its workers (grandchildren it waited
    # for), untouched by anything else this test session started.
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'code': code, 'wall': wall, 'peak_mib': peak}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *ABLAB, "run", str(path), "--out", str(out),
         "--workers", "2", "--threads", "1"],
        capture_output=True, text=True, env=_env(tmp_path), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["code"] == 0, proc.stderr
    assert_each_run_recorded_once(out, 200)
    assert all(r["attempts"] == 1 for r in index_rows(out))
    print(f"\n200-run study: {stats['wall']:.1f} s wall; peak RSS {stats['peak_mib']:.0f} MiB "
          "(largest single process: ablab or one of its workers)")

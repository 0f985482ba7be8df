"""Faults beyond one machine's process (issue #30): a Ray worker killed while it trains a
run, and the disk filling up while the report is written. Each is survived: the study
finishes with nothing lost and the same numbers as an undisturbed one; the report is
written whole once there is space, and nothing stored changes on the way.

(A run that hangs -- the per-run ``timeout`` -- is tested with the trainers.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import ABLAB, cli_env, csv_metrics, moons_study, run_cli, spawn_run

# ------------------------------------------------------------------ a Ray worker killed


def _ray_workers_training(tag: str) -> list[int]:
    """Ray worker processes of this test (their environment holds ``tag``) that are
    running a task: Ray titles a busy worker ``ray::<function>``, an idle one ``ray::IDLE``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if cmdline.startswith(b"ray::_remote_fit") and tag.encode() in (
                    entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.slow
def test_a_ray_worker_killed_while_training_is_retried(tmp_path):
    """kill -9 of the Ray worker process that is training a run: Ray runs that run again
    on a fresh worker, the study finishes (exit 0), every run is recorded once, and the
    numbers are those of the same study run undisturbed."""
    pytest.importorskip("ray")
    path = moons_study(tmp_path, epochs=150)
    undisturbed = tmp_path / "undisturbed"
    proc = run_cli("run", path, "--out", undisturbed, "--workers", "2", "--threads", "1",
                   "--executor", "ray", timeout=600)
    assert proc.returncode == 0, proc.stderr
    tag = f"ABLAB_FAULT_TEST={uuid.uuid4().hex}"
    out = tmp_path / "out"
    proc = spawn_run(path, out, "--executor", "ray", env=cli_env(**dict([tag.split("=")])))
    deadline = time.time() + 300
    victims: list[int] = []
    while not victims and time.time() < deadline and proc.poll() is None:
        victims = _ray_workers_training(tag.split("=")[1])
        time.sleep(0.02)
    assert victims, f"no Ray worker seen training; ablab exited {proc.poll()}"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    print(f"killed Ray worker {victims[0]}; ablab run printed:\n{stdout}{stderr}")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert csv_metrics(out) == csv_metrics(undisturbed)  # each run once, same numbers
    assert all(status == "done" for status, _, _ in csv_metrics(out).values())


# ------------------------------------------------------------------ the disk full


def _can_mount_tmpfs(where: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
        capture_output=True, timeout=30,
    )
    return probe.returncode == 0


#: What a report writes; everything else in a study directory is what was stored.
REPORT_FILES = ("report.html", "report.md", "figures")


def _stored(study: Path) -> dict[str, str]:
    """SHA-256 of every stored file of a study directory (the report's own files left
    out)."""
    out = {}
    for path in sorted(study.rglob("*")):
        rel = path.relative_to(study)
        if path.is_file() and rel.parts[0] not in REPORT_FILES:
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _size_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 1024


@pytest.mark.slow
def test_the_disk_full_while_the_report_is_written(tmp_path):
    """A study directory on a small disk (a tmpfs in a private mount namespace) that
    holds the records but not the report: `ablab report` exits 2 with one line and leaves
    no half-written file; after the disk is grown, `ablab report` writes the whole report,
    the same as one written with space; no stored file changed in between."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    path = moons_study(tmp_path, epochs=3)
    roomy = tmp_path / "roomy"
    proc = run_cli("run", path, "--out", roomy, "--workers", "1", "--threads", "1",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    kept = tmp_path / "kept"  # the records without a report
    shutil.copytree(roomy, kept, ignore=shutil.ignore_patterns(*REPORT_FILES))
    before = _stored(kept)
    # room for the records, the index's journal and part of the report, not all of it
    size = _size_kib(kept) + 300
    assert _size_kib(roomy) > size + 200, "the report is too small to fill the disk"
    study = mnt / "study"
    py = " ".join(ABLAB)
    script = f"""
mount -t tmpfs -o size={size}k tmpfs {mnt} || exit 99
cp -a {kept} {study} || exit 98
{py} report {study} >{tmp_path}/1.out 2>{tmp_path}/1.err; echo $? >{tmp_path}/1.rc
cp -a {study} {tmp_path}/after_full
mount -o remount,size=64m {mnt}
{py} report {study} >{tmp_path}/2.out 2>{tmp_path}/2.err; echo $? >{tmp_path}/2.rc
cp -a {study} {tmp_path}/after_freed
"""
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    def result(i: int) -> tuple[int, str, str]:
        return (int((tmp_path / f"{i}.rc").read_text()), (tmp_path / f"{i}.out").read_text(),
                (tmp_path / f"{i}.err").read_text())

    code, stdout, stderr = result(1)
    print(f"ablab report on the full disk (exit {code}):\n{stdout}{stderr}")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stdout + stderr
    assert "No space left on device" in lines[0] or "disk is full" in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr
    full = tmp_path / "after_full"
    assert not list(full.rglob("*.tmp")), "a half-written temporary file was left"
    assert _stored(full) == before, "a stored file changed while the disk was full"

    code, stdout, stderr = result(2)
    print(f"ablab report after space was freed (exit {code}):\n{stdout}{stderr}")
    assert code == 0, stdout + stderr
    freed = tmp_path / "after_freed"
    assert _stored(freed) == before, "a stored file changed when the report was rewritten"
    # the whole report: every file the report written with space has, the HTML complete,
    # every figure the Markdown names present
    expected = {str(p.relative_to(roomy)) for p in roomy.rglob("*")
                if p.relative_to(roomy).parts[0] in REPORT_FILES}
    written = {str(p.relative_to(freed)) for p in freed.rglob("*")
               if p.relative_to(freed).parts[0] in REPORT_FILES}
    assert written == expected
    html = (freed / "report.html").read_text()
    assert html.rstrip().endswith("</html>")
    assert len(html) > 0.9 * len((roomy / "report.html").read_text())

"""Commands that only read leave every byte of a study directory as it was: `ablab
status`, `ablab run --dry-run` and `ablab.open_results` (and `ablab report`, apart from
the report files it is there to write), with a whole directory, a damaged or missing
index and damaged or missing run records, and on a read-only mount. They count what is
damaged as not done and say so; `ablab check` and `ablab run` heal."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cli_in_process, moons_study

import ablab
from ablab.runner import run_study
from ablab.study import load_study

REPORT_FILES = {"report.html", "report.md", "results.csv", "summary.csv", "figures"}


def tree(root: Path, skip: set[str] = frozenset()) -> dict[str, str]:
    """Every file and folder under ``root`` (relative path → sha256 of its bytes, or
    'dir'), leaving out the top-level names in ``skip``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        out[str(rel)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def damage(out: Path, how: str) -> None:
    records = sorted((out / "runs").glob("*.json"))
    if how == "garbage index":
        with open(out / "index.sqlite", "r+b") as handle:
            handle.write(b"this is not sqlite at all" * 4)
    elif how == "missing index":
        (out / "index.sqlite").unlink()
    elif how == "truncated record":
        text = records[0].read_text()
        records[0].write_text(text[: len(text) // 2])
    elif how == "missing record":
        records[0].unlink()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny moons study (2 activations × 2 seeds), trained once for the module."""
    tmp = tmp_path_factory.mktemp("read_only")
    study = moons_study(tmp, name="readonly", epochs=2)
    outcome = run_study(load_study(study), tmp / "out", workers=1, threads=1, report=False)
    assert outcome.exit_code == 0
    return study, tmp / "out"


@pytest.fixture
def copy(trained, tmp_path):
    study, out = trained
    shutil.copytree(out, tmp_path / "out")
    return study, tmp_path / "out"


def read_everything(study: Path, out: Path, capsys) -> list[str]:
    """status, dry run and the Python API's reads; their stdout."""
    printed = []
    for args in (["status", str(out)], ["run", str(study), "--out", str(out), "--dry-run"]):
        code, stdout, stderr = cli_in_process(args, capsys)
        assert code == 0, stderr
        assert "Traceback" not in stderr
        printed.append(stdout)
    results = ablab.open_results(out)
    assert len(results.runs) == 4
    results.summary, results.verdicts, results.counts  # noqa: B018 - each reads
    done = results.runs[results.runs["status"] == "done"]
    assert len(results.history(done["run_id"].iloc[-1])) == 2  # epochs

    return printed


DAMAGE = ["none", "garbage index", "missing index", "truncated record", "missing record"]


@pytest.mark.parametrize("how", DAMAGE)
def test_status_dry_run_and_open_results_change_no_byte(copy, capsys, how):
    study, out = copy
    damage(out, how)
    before = tree(out)
    status, dry_run = read_everything(study, out, capsys)
    assert tree(out) == before
    whole = how in ("none", "garbage index", "missing index")  # every record is whole
    assert ("nothing left to run" if whole else "1 run left") in status
    assert "nothing is trained" in dry_run
    assert ("0 runs to train" if whole else "1 run to train") in dry_run


@pytest.mark.parametrize("how", ["none", "garbage index", "truncated record"])
def test_report_changes_nothing_but_its_report_files(copy, capsys, how):
    _, out = copy
    damage(out, how)
    before = tree(out, skip=REPORT_FILES)
    code, stdout, stderr = cli_in_process(["report", str(out)], capsys)
    assert code == 0, stderr
    assert (out / "report.html").is_file()
    assert tree(out, skip=REPORT_FILES) == before


def test_damage_is_said_by_readers_and_healed_by_check(copy, capsys):
    _, out = copy
    damage(out, "garbage index")
    damage(out, "truncated record")
    code, stdout, stderr = cli_in_process(["status", str(out)], capsys)
    assert code == 0
    assert "nothing written here" in stderr and "counted as pending" in stderr
    assert "1 run left" in stdout
    code, stdout, stderr = cli_in_process(["check", str(out)], capsys)
    assert code == 1  # a record was damaged: quarantined, its run to train again
    assert "index rebuilt" in stdout and "1 damaged" in stdout
    assert any((out / "runs" / "quarantine").iterdir())
    before = tree(out)
    code, stdout, stderr = cli_in_process(["status", str(out)], capsys)
    assert code == 0 and stderr == ""  # healed: nothing left to say
    assert tree(out) == before


@pytest.fixture
def read_only_copy(trained, tmp_path):
    """A copy of the trained study on a read-only tmpfs mount (root only)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or 'not root'})")
    try:
        study, out = trained
        shutil.copytree(out, mount / "out")
        shutil.copy(study, mount / study.name)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)],
                                 capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only ({remount.stderr.strip()})")
        yield mount / study.name, mount / "out"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_reads_work_on_a_read_only_mount(read_only_copy, capsys):
    study, out = read_only_copy
    before = tree(out)
    status, _ = read_everything(study, out, capsys)
    assert "nothing left to run" in status
    assert tree(out) == before

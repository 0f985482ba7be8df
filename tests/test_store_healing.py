"""Self-healing study directories: damaged run records are quarantined and re-trained,
a missing or damaged index is rebuilt from the records, by `ablab check` (which says what
it found) and at the start of `ablab run`; commands that only read count damaged runs as
pending and say so, changing nothing. Each test uses the tiny moons study (4 runs
of 3 epochs)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import cli_in_process, moons_study

from ablab.results import study_status
from ablab.runner import run_study
from ablab.study import load_study

cli = cli_in_process  # ablab ARGS in this process: (exit status, stdout, stderr)


def results(out: Path) -> dict[str, tuple[str, str]]:
    with open(out / "results.csv") as handle:
        return {r["run_id"]: (r["status"], r["test_accuracy"]) for r in csv.DictReader(handle)}


def attempts(out: Path) -> dict[str, int]:
    with sqlite3.connect(out / "index.sqlite") as conn:
        return dict(conn.execute("SELECT run_id, attempts FROM runs").fetchall())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The study trained once for the module; each test gets its own copy."""
    tmp = tmp_path_factory.mktemp("heal")
    path = moons_study(tmp, "heal")
    outcome = run_study(load_study(path), tmp / "out", workers=1, threads=1, report=False)
    assert outcome.exit_code == 0
    return path, tmp / "out"


@pytest.fixture
def finished(trained, tmp_path):
    """A finished study directory (a copy) and its study file."""
    path, out = trained
    shutil.copytree(out, tmp_path / "out")
    return path, tmp_path / "out"


def test_truncated_record_is_reported_partial_then_quarantined_and_retrained(finished, capsys):
    path, out = finished
    before = results(out)
    victim = sorted((out / "runs").glob("*.json"))[1]
    text = victim.read_text()
    victim.write_text(text[: len(text) // 2])  # a half-copied file

    code, stdout, stderr = cli(["report", str(out)], capsys)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert victim.name in warnings[0] and "counted as pending" in warnings[0]
    assert "Traceback" not in stderr
    assert victim.read_text() == text[: len(text) // 2]  # the report only reads: left there
    assert f"partial: 1 run not done: {victim.stem}" in stdout
    assert "3 of 4 runs done" in (out / "report.md").read_text()
    assert study_status(out)["counts"]["pending"] == 1

    code, stdout, stderr = cli(["run", str(path), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0, stderr
    assert "moved to runs/quarantine" in stderr  # the run heals the directory first
    assert (out / "runs" / "quarantine" / victim.name).read_text() == text[: len(text) // 2]
    assert results(out) == before  # re-trained with the same seed: identical results
    assert attempts(out)[victim.stem] == 2
    assert json.loads(victim.read_text())["run_id"] == victim.stem


def test_record_of_another_run_or_wrong_shape_is_damaged(finished, capsys):
    _, out = finished
    first, second = sorted((out / "runs").glob("*.json"))[:2]
    first.write_text(second.read_text())  # whole JSON, but about another run
    (out / "runs" / "x.json").write_text("[1, 2]")  # a stray file that is no record
    code, stdout, stderr = cli(["check", str(out)], capsys)
    assert code == 1
    assert f"it is the record of run '{second.stem}'" in stderr
    assert "x.json" in stderr and "not a JSON object" in stderr
    assert "3 run records whole, 2 damaged" in stdout
    code, stdout, stderr = cli(["check", str(out)], capsys)
    assert code == 0 and stderr == ""  # healed: nothing left to quarantine
    assert "0 damaged" in stdout


def test_status_sees_a_missing_record(finished, capsys):
    _, out = finished
    victim = sorted((out / "runs").glob("*.json"))[0]
    victim.unlink()
    code, stdout, stderr = cli(["status", str(out)], capsys)
    assert code == 0
    assert victim.name in stderr and "missing" in stderr
    assert "1 run left" in stdout


@pytest.mark.parametrize(
    "damage", ["garbage", "missing", pytest.param("empty", marks=pytest.mark.slow)]
)
def test_damaged_index_is_rebuilt_and_nothing_is_retrained(finished, capsys, damage):
    path, out = finished
    before, tries = results(out), attempts(out)
    db = out / "index.sqlite"
    if damage == "garbage":
        with open(db, "r+b") as handle:  # overwrite the first bytes (the header)
            handle.write(b"this is not sqlite at all" * 4)
    elif damage == "missing":
        db.unlink()
    else:
        db.write_bytes(b"")

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    damaged = db.read_bytes() if db.exists() else None
    code, stdout, stderr = cli(["status", str(out)], capsys)
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "from study.json and 4 run records" in lines[0]
    assert "nothing written here" in lines[0]
    assert "nothing left to run" in stdout
    assert (db.read_bytes() if db.exists() else None) == damaged  # status only reads

    code, stdout, stderr = cli(["check", str(out)], capsys)
    assert code == 0, stderr
    assert "rebuilt it from study.json and 4 run records" in stderr
    assert "index rebuilt" in stdout

    code, stdout, stderr = cli(["run", str(path), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0, stderr
    assert results(out) == before
    assert attempts(out) == tries  # nothing re-trained: no record was written again
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert "Traceback" not in stderr


def test_check_on_a_clean_directory_exits_0(finished, capsys):
    _, out = finished
    code, stdout, stderr = cli(["check", str(out)], capsys)
    assert code == 0 and stderr == ""
    assert "4 run records whole, 0 damaged (moved to runs/quarantine/), 0 missing; index whole" \
        in stdout


def test_figures_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """save_figure renders in memory and renames a finished temporary file over the old
    one: a failure half-way leaves the previous figure untouched and no temporary file."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ablab.report.figures import save_figure
    from ablab.store import files

    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    paths = save_figure(fig, tmp_path, "curve")
    before = {k: p.read_bytes() for k, p in paths.items()}
    assert before["png"].startswith(b"\x89PNG") and b"<svg" in before["svg"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    fig.add_subplot().plot([1, 0], [0, 1])
    with pytest.raises(Exception, match="No space left"):
        save_figure(fig, tmp_path, "curve")
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "curve.svg"]


def test_rows_read_again_see_every_change_to_the_index(finished):
    """StudyStore.rows() decodes the index once per index state (ablab report asks three
    times): a change by this store or by another connection is seen at once, and each
    caller gets its own row dicts."""
    from ablab.store import StudyStore

    _, out = finished
    with StudyStore.existing(out) as store:
        first = store.rows()
        again = store.rows()
        assert again == first and again[0] is not first[0]
        again[0]["metrics"] = "changed by a caller"
        assert store.rows() == first  # a caller's edit stays its own
        with sqlite3.connect(out / "index.sqlite") as other:  # another process, say
            other.execute("UPDATE runs SET status='pending' WHERE run_id=?",
                          (first[0]["run_id"],))
        assert store.rows()[0]["status"] == "pending"
        with store.locked():  # a write through this store's own connection
            store.set_metrics({first[1]["run_id"]: {"x": 1.0}})
            assert store.rows()[1]["metrics"] == {"x": 1.0}

"""results.csv and summary.csv are written from the index alone (each run's history
metrics are kept in its row when it is recorded); they must be complete and equal to the
tables the report shows (the analysis reads every record) after a study ends, after an
interrupted one, after resume, and after the index was rebuilt from the records."""

from __future__ import annotations

import json

import pytest
from conftest import moons_study

from ablab.analysis import analyze
from ablab.runner import StudyInterrupted, run_study
from ablab.store import StudyStore
from ablab.study import load_study


def report_tables(out) -> tuple[str, str]:
    with StudyStore.existing(out) as store:
        analysis = analyze(store)
    return analysis.runs.to_csv(index=False), analysis.summary.to_csv(index=False)


def written_tables(out) -> tuple[str, str]:
    return (out / "results.csv").read_text(), (out / "summary.csv").read_text()


class StopAfter:
    """A progress display that presses Ctrl-C after ``n`` finished runs."""

    def __init__(self, n: int):
        self.n = n

    def start(self, *args) -> None:
        pass

    def on_event(self, event) -> None:
        if event.kind == "done":
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt

    def stop(self) -> None:
        pass


@pytest.fixture
def study(tmp_path):
    return load_study(moons_study(tmp_path, seeds=(0, 1, 2), epochs=4))


def test_tables_equal_the_reports_after_interrupt_resume_and_end(study, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(StudyInterrupted):
        run_study(study, out, workers=1, threads=1, report=False, progress=StopAfter(2))
    interrupted = written_tables(out)
    assert interrupted == report_tables(out)
    results = interrupted[0].splitlines()
    assert len(results) == 1 + 6  # every planned run has its row, finished or not
    assert sum(",done," in line for line in results) == 2

    outcome = run_study(study, out, workers=1, threads=1, report=False)  # resume
    assert outcome.exit_code == 0 and outcome.ran == 4
    final = written_tables(out)
    assert final == report_tables(out)
    assert sum(",done," in line for line in final[0].splitlines()) == 6
    # the history-derived columns are filled (not left empty by the index-only path)
    header = final[0].splitlines()[0].split(",")
    row = final[0].splitlines()[1].split(",")
    assert row[header.index("convergence_epoch")] != ""


def test_tables_from_a_rebuilt_index_equal_the_reports(study, tmp_path):
    out = tmp_path / "out"
    run_study(study, out, workers=1, threads=1, report=False)
    before = written_tables(out)
    (out / "index.sqlite").unlink()  # rebuilt from study.json and the records
    for suffix in ("-wal", "-shm"):
        (out / f"index.sqlite{suffix}").unlink(missing_ok=True)
    from ablab.report import write_tables

    with StudyStore(out) as store, store.locked():
        write_tables(store)
        rows = store.rows()
        assert all(row["metrics"] is not None for row in rows)  # kept again
        # each run's full config comes back from the compact study.json
        assert {r["run_id"]: r["config"] for r in rows} == {
            r.run_id: r.config.resolved() for r in study.runs
        }
    assert written_tables(out) == report_tables(out)
    assert written_tables(out)[1] == before[1]


def test_study_json_keeps_each_variant_config_once(study, tmp_path):
    out = tmp_path / "out"
    run_study(study, out, workers=1, threads=1, report=False)
    info = json.loads((out / "study.json").read_text())
    assert len(info["configs"]) == 2 and len(info["runs"]) == 6
    assert all("config" not in run for run in info["runs"])
    with StudyStore.existing(out) as store:
        configs = {row["run_id"]: row["config"] for row in store.rows()}
    planned = {r.run_id: r.config.resolved() for r in study.runs}
    assert configs == planned

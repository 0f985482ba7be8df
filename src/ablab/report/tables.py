"""results.csv and summary.csv: the analysis' runs and summary tables, the same the
report shows (grouped by variant id, the same intervals).

Written from the index alone: each finished run's history-derived metrics are kept in its
index row when it is recorded, so writing the tables never reads the run records (a record
is read only for a run whose row lacks them, e.g. after the index was rebuilt; the
metrics found are then kept, when this process holds the study's lock)."""

from __future__ import annotations

from pathlib import Path

from ablab.analysis import history_metrics, study_tables
from ablab.analysis.variance import runs_frame
from ablab.store import StudyStore, atomic_write_text


def table_rows(store: StudyStore) -> list[dict]:
    """The index rows, each finished one with its ``metrics`` (filled from the record
    where the index lacks them)."""
    rows = store.rows()
    found = {}
    for row in rows:
        if row["status"] in ("done", "diverged") and row.get("metrics") is None:
            record = store.load_record(row["run_id"])
            if record is not None:
                row["metrics"] = found[row["run_id"]] = history_metrics(
                    record.get("history") or []
                )
    if found and store.holds_lock:
        store.set_metrics(found)
    return rows


def write_tables(store: StudyStore) -> dict[str, Path]:
    """(Re)write results.csv (one row per run) and summary.csv (one row per variant)."""
    rows = table_rows(store)
    runs, summary = study_tables(store.study_info(), rows)
    paths = {"results": store.root / "results.csv", "summary": store.root / "summary.csv"}
    atomic_write_text(paths["results"], runs.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    design = runs_frame(store.study_info(), rows)
    if len(design):  # variance = "sources": every run of the nested design
        paths["variance_runs"] = store.root / "variance_runs.csv"
        atomic_write_text(paths["variance_runs"], design.to_csv(index=False))
    return paths

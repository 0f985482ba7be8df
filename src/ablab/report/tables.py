"""results.csv and summary.csv: the analysis' runs and summary tables, the same the
report shows (grouped by variant id, the same intervals)."""

from __future__ import annotations

from pathlib import Path

from ablab.analysis import load_runs, study_tables
from ablab.store import StudyStore, atomic_write_text


def write_tables(store: StudyStore) -> dict[str, Path]:
    """(Re)write results.csv (one row per run) and summary.csv (one row per variant)."""
    rows, records = load_runs(store)
    runs, summary = study_tables(store.study_info(), rows, records)
    paths = {"results": store.root / "results.csv", "summary": store.root / "summary.csv"}
    atomic_write_text(paths["results"], runs.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    return paths

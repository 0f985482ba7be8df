"""results.csv and summary.csv: the study's tables, written next to the report."""

from __future__ import annotations

from pathlib import Path

from ablab.analysis import results_frame, summary_frame
from ablab.store import StudyStore, atomic_write_text


def write_tables(store: StudyStore) -> dict[str, Path]:
    """(Re)write results.csv and summary.csv from the index."""
    info = store.study_info()
    columns = list(dict.fromkeys(info["columns"].values()))
    results = results_frame(store.rows(), columns)
    summary = summary_frame(results, columns)
    paths = {"results": store.root / "results.csv", "summary": store.root / "summary.csv"}
    atomic_write_text(paths["results"], results.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    return paths

"""How a process that does not hold DIR/.lock reads a study directory: an in-memory copy
of the index (:func:`ablab.store.index.read_index`); where the index is missing or
damaged, one computed in memory from study.json and the records; damaged or missing
records counted as pending in it. Each problem is said once per process, with what
heals it; nothing is written in DIR."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ablab.store.healing import inspect_records, label
from ablab.store.index import StudyDirError, Transaction, memory_index, read_index, set_pending
from ablab.store.rebuild import can_rebuild, fill_index
from ablab.store.records import warn

#: What readers said this process: a command opens a few stores of one directory, and a
#: damaged index or record it only reads (and so leaves damaged) is said once.
_SAID: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        warn(message)


def read_study_index(root: Path) -> sqlite3.Connection:
    """The index of the study directory ``root`` as a reader sees it (see the module)."""
    db_path = root / "index.sqlite"
    why = None
    try:
        db = read_index(db_path)
        if emptied(db, root):
            db.close()
            why = "index.sqlite holds no runs"
    except FileNotFoundError:
        if not can_rebuild(root):
            return memory_index()  # nothing planned or run here yet
        why = "index.sqlite is missing"
    except sqlite3.Error as exc:
        if not can_rebuild(root):
            raise StudyDirError(f"{db_path}: cannot open the index ({exc})") from None
        why = f"index.sqlite is damaged ({exc})"
    if why is not None:
        db = memory_index()
        with Transaction(db) as tx:
            filled = fill_index(tx, root)
        warn_once(f"{db_path}: {why}; read the runs from {filled.source()} instead "
                  f"(nothing written here; `ablab check {root}` or the next `ablab run` "
                  "rebuilds it)")
    _count_damaged_as_pending(db, root)
    return db


def emptied(db: sqlite3.Connection, root: Path) -> bool:
    """No runs in the index, but a plan beside it: emptied, not just created."""
    empty = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    return empty and (root / "study.json").is_file()


def _count_damaged_as_pending(db: sqlite3.Connection, root: Path) -> None:
    """What healing would do, done in the in-memory index only, each damaged or missing
    record said in one line."""
    found = inspect_records(db, root)
    for rid, row in found.missing:
        warn_once(f"{root / 'runs' / f'{rid}.json'}: the record of a finished run "
                  f"({label(row)}) is missing; counted as pending (`ablab check` or the "
                  "next `ablab run` sets it pending to re-train it)")
    for _, path, reason, row in found.damaged:
        what = f" ({label(row)})" if row is not None else ""
        warn_once(f"{path}: damaged run record{what}: {reason}; counted as pending, left "
                  "where it is (`ablab check` or the next `ablab run` moves it to "
                  "runs/quarantine/ and re-trains the run)")
    with Transaction(db) as tx:
        for rid in found.pending_again():
            set_pending(tx, rid)

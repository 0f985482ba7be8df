"""The run index, DIR/index.sqlite: one row per run with its status and final metrics.

Two ways in. :func:`open_index` is the writer's (the process holding DIR/.lock): WAL mode,
synchronous=FULL, the schema created or brought up to date. :func:`read_index` is every
other process's: it copies the index into memory and reads the copy, so a command that
only reads (``ablab status``, ``--dry-run``, ``ablab report``, ``open_results``) writes no
byte in DIR, not even the ``-wal`` / ``-shm`` files SQLite makes beside a database it opens,
and works on a read-only mount."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from ablab.errors import UserError

#: Seconds a connection waits for another's write lock on the index before it gives up
#: ("database is locked"); every connection ablab opens sets it.
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    variant_id TEXT NOT NULL,
    variant_label TEXT NOT NULL,
    variant TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    in_study INTEGER NOT NULL DEFAULT 1,
    started REAL,
    finished REAL,
    final TEXT,
    sizes TEXT,
    diverged_epoch INTEGER,
    seconds REAL,
    metrics TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: The index columns that hold JSON text.
JSON_COLUMNS = ("variant", "config", "final", "sizes", "metrics")


class StudyDirError(UserError):
    pass


def open_index(path: Path) -> sqlite3.Connection:
    """The writer's connection to ``path``, created if missing; sqlite3.Error when the
    file is not a whole index (the caller rebuilds it)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        _check(db)
        if "metrics" not in _columns(db):  # an index written before per-run metrics
            db.execute("ALTER TABLE runs ADD COLUMN metrics TEXT")
    except BaseException:
        db.close()
        raise
    return db


def read_index(path: Path) -> sqlite3.Connection:
    """An in-memory copy of the index at ``path`` (with what its ``-wal`` file holds, as
    another process's ``ablab run`` may be writing), read without writing anything beside
    it. FileNotFoundError when there is none; sqlite3.Error when it is not a whole index."""
    if not path.is_file():
        raise FileNotFoundError(path)
    memory = memory_index(schema=False)
    wal = Path(f"{path}-wal")
    try:
        if wal.is_file() and wal.stat().st_size:
            with tempfile.TemporaryDirectory(prefix="ablab-index-") as tmp:
                copy = Path(tmp) / path.name  # SQLite replays the copied -wal here
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, f"{copy}-wal")
                with closing(sqlite3.connect(copy, timeout=BUSY_TIMEOUT_S)) as disk:
                    disk.backup(memory)
        else:  # nothing beside it: immutable reads take no lock and make no -shm
            uri = f"{path.absolute().as_uri()}?mode=ro&immutable=1"
            with closing(sqlite3.connect(uri, uri=True)) as disk:
                disk.backup(memory)
        _check(memory)
        if not _columns(memory):
            raise sqlite3.DatabaseError("there is no runs table")
        if "metrics" not in _columns(memory):
            memory.execute("ALTER TABLE runs ADD COLUMN metrics TEXT")
        memory.executescript(SCHEMA)  # a meta table, if an old index has none
    except BaseException:
        memory.close()
        raise
    return memory


def memory_index(schema: bool = True) -> sqlite3.Connection:
    """An empty index in memory (the schema made unless ``schema`` is False)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    if schema:
        db.executescript(SCHEMA)
    return db


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(runs)")}


def _check(db: sqlite3.Connection) -> None:
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise sqlite3.DatabaseError(f"integrity check: {check}")
    columns = _columns(db)
    if columns and not {"run_id", "status", "in_study", "final"} <= columns:
        raise sqlite3.DatabaseError("the runs table lacks columns")


def decoded(row: sqlite3.Row) -> dict[str, Any]:
    """An index row as a dict, its JSON columns decoded."""
    item = dict(row)
    for key in JSON_COLUMNS:
        item[key] = json.loads(item[key]) if item[key] else None
    return item


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def insert_run(db: sqlite3.Connection, run: dict[str, Any], position: int,
               in_study: bool = True) -> None:
    """A planned run's row (``run_id``, ``variant_id``, ``variant_label``, ``variant``,
    ``seed``, ``config``), pending."""
    db.execute(
        "INSERT INTO runs (run_id, position, variant_id, variant_label, variant, seed, "
        "config, in_study) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run["run_id"], position, run["variant_id"], run["variant_label"],
         json.dumps(run["variant"]), int(run["seed"]), json.dumps(run["config"]),
         int(in_study)),
    )


def store_row(db: sqlite3.Connection, result: dict[str, Any], finished: float,
              metrics: dict[str, Any] | None = None) -> None:
    """A finished run's record into its row: status, final metrics, sizes."""
    db.execute(
        "UPDATE runs SET status=?, error=NULL, finished=?, final=?, sizes=?, "
        "diverged_epoch=?, seconds=?, metrics=? WHERE run_id=?",
        (
            result["status"],
            finished,
            json.dumps(result["final"]),
            json.dumps(result["sizes"]),
            result.get("diverged_epoch"),
            result["final"].get("seconds"),
            json.dumps(metrics) if metrics is not None else None,
            result["run_id"],
        ),
    )


def set_pending(db: sqlite3.Connection, run_id: str) -> None:
    """A finished run back to pending (its record is damaged or missing)."""
    db.execute(
        "UPDATE runs SET status='pending', final=NULL, sizes=NULL, finished=NULL, "
        "diverged_epoch=NULL, seconds=NULL, metrics=NULL WHERE run_id=? "
        "AND status IN ('done', 'diverged')",
        (run_id,),
    )


def peek_statuses(root: str | Path) -> dict[str, str]:
    """Run id → status as DIR's index says now, read without taking part: no healing, no
    rebuilding, nothing written. For a process that does not hold the directory's lock
    (and may not get it: another `ablab run` may be working there), e.g. sizing a progress
    display before asking for the lock. {} when there is no readable index."""
    try:
        with closing(read_index(Path(root) / "index.sqlite")) as db:
            return dict(db.execute("SELECT run_id, status FROM runs").fetchall())
    except (OSError, sqlite3.Error):
        return {}


class Transaction:
    """``with`` block = one SQLite transaction (BEGIN IMMEDIATE … COMMIT/ROLLBACK)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StudyDirError(f"study index: {exc}") from None
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as error:
                self.rollback()
                raise StudyDirError(f"study index: cannot write ({error})") from None
        else:
            self.rollback()
            if isinstance(exc, sqlite3.Error):  # e.g. "database or disk is full"
                raise StudyDirError(f"study index: cannot write ({exc})") from None

    def rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing begun, or SQLite already rolled back (it does on a full disk)

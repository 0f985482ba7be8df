"""One directory per study.

    DIR/study.toml        the study file as given (frozen copy)
    DIR/study.json        the resolved study, compact: each variant's config once, each
                          run's id, variant and seed (a run's config is its variant's with
                          its seed; written once per plan)
    DIR/index.sqlite      the index: one row per run with its status and final metrics
    DIR/runs/ID.json      each finished run's whole record (history, batch losses, probes)
    DIR/.lock             held by the one `ablab run` working on DIR

Crash safety: a run's record file is written atomically before its index row says
``done``; the index is SQLite in WAL mode with synchronous=FULL. A process killed at any
point leaves runs either done (record complete) or not done (re-run on resume): rows left
``running`` by a dead process are put back to ``pending`` by the next ``ablab run``.

Self-healing: the records are the results, the index is derived data. A record that does
not parse or is not about its run is moved to ``runs/quarantine/`` (one warning line) and
its run goes back to ``pending``; an index that is missing or damaged is rebuilt from
``study.json`` and ``runs/*.json`` (one warning line), so nothing finished is lost.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from ablab.errors import UserError
from ablab.store.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from ablab.store.records import (
    DamagedRecord,
    check_record,
    quarantine_file,
    read_record,
    record_text,
    warn,
)
from ablab.study import Study

STATUSES = ("pending", "running", "done", "diverged", "failed")

#: Seconds a connection waits for another's write lock on the index before it gives up
#: ("database is locked"); every connection ablab opens sets it.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
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


class StudyDirError(UserError):
    pass


class StudyStore:
    """The on-disk state of one study. Only the process holding the lock writes.

    A context manager: ``with StudyStore.existing(path) as store:`` closes the index
    connection on the way out, whatever happens inside."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.db_path = self.root / "index.sqlite"
        self._lock_handle = None
        self._db: sqlite3.Connection | None = None
        self._healed = False
        self.rebuilt: str | None = None  # why the index was rebuilt by this store, if it was
        self._info: dict[str, Any] | None = None  # study.json, read once (see study_info)
        #: the decoded rows of the last ``rows()`` call and the index state they were read
        #: at: ``ablab report`` asks for them three times (tables, analysis, pending runs),
        #: and decoding every row's JSON fields is its largest per-run cost after the
        #: records (#22)
        self._rows_memo: tuple[tuple, list[dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def existing(cls, root: str | Path) -> StudyStore:
        store = cls(root)
        if not store.db_path.exists() and not (store.root / "study.json").is_file():
            raise StudyDirError(f"{root}: not a study directory (no index.sqlite)")
        return store

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            missing = not self.db_path.exists()
            if missing and self._has_results():
                self._db = self._rebuild("index.sqlite is missing")
                return self._db
            try:
                self._db = self._open()
            except sqlite3.Error as exc:
                if not self._has_results():
                    raise StudyDirError(
                        f"{self.db_path}: cannot open the index ({exc})"
                    ) from None
                self._db = self._rebuild(f"index.sqlite is damaged ({exc})")
                return self._db
            empty = self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
            if empty and (self.root / "study.json").is_file():  # emptied, not just created
                self._db.close()
                self._db = self._rebuild("index.sqlite holds no runs")
        return self._db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if not {"run_id", "status", "in_study", "final"} <= columns:
                raise sqlite3.DatabaseError("the runs table lacks columns")
            if "metrics" not in columns:  # an index written before per-run metrics
                db.execute("ALTER TABLE runs ADD COLUMN metrics TEXT")
        except BaseException:
            db.close()
            raise
        return db

    def _has_results(self) -> bool:
        """Whether the index can be rebuilt: the study file or run records are here."""
        runs = self.root / "runs"
        return (self.root / "study.json").is_file() or (
            runs.is_dir() and any(runs.glob("*.json"))
        )

    def _rebuild(self, why: str) -> sqlite3.Connection:
        """A new index from study.json (the plan) and runs/*.json (what finished). The
        damaged file is kept beside it as index.sqlite.damaged."""
        kept = ""
        if self.db_path.exists():
            damaged = self.db_path.with_name("index.sqlite.damaged")
            os.replace(self.db_path, damaged)
            kept = f"; the old one is kept as {damaged.name}"
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        try:
            db = self._open()
        except sqlite3.Error as exc:
            raise StudyDirError(f"{self.db_path}: cannot create the index ({exc})") from None
        self._db = db
        try:
            info = json.loads((self.root / "study.json").read_text(encoding="utf-8"))
            planned = info["runs"] if isinstance(info, dict) else []
            name = info.get("name") if isinstance(info, dict) else None
            configs = info.get("configs") or {} if isinstance(info, dict) else {}
        except (OSError, ValueError, KeyError):
            planned, name, configs = [], None, {}
        records, damaged = 0, 0
        with self._tx() as tx:
            known: set[str] = set()
            for position, run in enumerate(planned):
                try:
                    tx.execute(
                        "INSERT INTO runs (run_id, position, variant_id, variant_label, "
                        "variant, seed, config) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (run["run_id"], position, run["variant_id"], run["variant_label"],
                         json.dumps(run["variant"]), int(run["seed"]),
                         json.dumps(run_config(run, configs))),
                    )
                    known.add(run["run_id"])
                except (KeyError, TypeError, ValueError, sqlite3.IntegrityError):
                    continue  # a damaged study.json entry: its record (if any) still counts
            if name:
                self._set_meta(tx, "name", str(name))
            for path in sorted((self.root / "runs").glob("*.json")):
                try:
                    record = read_record(path)
                except DamagedRecord as exc:
                    self._quarantine_file(path, str(exc))
                    damaged += 1
                    continue
                rid = record["run_id"]
                if rid not in known:  # a run the study file no longer names: set aside
                    config = record["config"]
                    tx.execute(
                        "INSERT INTO runs (run_id, position, variant_id, variant_label, "
                        "variant, seed, config, in_study) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (rid, len(known) + 1_000_000, "", "", "{}",
                         int(config.get("seed", 0) or 0), json.dumps(config),
                         0 if planned else 1),
                    )
                    known.add(rid)
                self._store_row(tx, record, finished=path.stat().st_mtime)
                tx.execute("UPDATE runs SET attempts=1 WHERE run_id=?", (rid,))
                records += 1
        source = "study.json and " if planned else ""
        note = f", {damaged} damaged ones quarantined" if damaged else ""
        self.rebuilt = why
        warn(
            f"{self.db_path}: {why}; rebuilt it from {source}{records} run records"
            f"{note} (nothing finished is lost){kept}"
        )
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    @contextmanager
    def locked(self):
        """Hold DIR/.lock for as long as this process works on the study."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")  # noqa: SIM115 - held for the whole run
        except OSError as exc:
            raise StudyDirError(f"{self.root}: cannot write here ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StudyDirError(
                f"{self.root}: another `ablab run` is working on this directory; "
                "wait for it to finish or stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_handle = handle
        try:
            yield self
        finally:
            self._lock_handle = None
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    @property
    def holds_lock(self) -> bool:
        """Whether this store holds DIR/.lock (it is the one process writing)."""
        return self._lock_handle is not None

    def _tx(self):
        return _Transaction(self.db)

    # ------------------------------------------------------------------ the plan

    def sync_plan(self, study: Study, force_new_variants: bool = False) -> dict[str, int]:
        """Make the index hold the study's runs. A directory holding a different study is
        refused unless ``force_new_variants`` (new runs are added, old results kept, runs
        no longer in the file are set aside). Returns counts of new and set-aside runs."""
        planned = {r.run_id: r for r in study.runs}
        rows = self.db.execute("SELECT run_id, in_study FROM runs")
        stored = {row["run_id"]: row for row in rows}
        new = [rid for rid in planned if rid not in stored]
        gone = [rid for rid, row in stored.items() if rid not in planned and row["in_study"]]
        if stored and (new or gone) and not force_new_variants:
            stored_name = self.meta("name")
            what = f"study '{stored_name}'" if stored_name else "another study"
            raise StudyDirError(
                f"{self.root}: holds {what} with different runs ({len(new)} new in this file, "
                f"{len(gone)} stored runs not in it); use --force-new-variants to add the new "
                "runs and keep the old results, or choose another --out"
            )
        with self._tx() as db:
            for position, run in enumerate(study.runs):
                if run.run_id in stored:
                    db.execute(
                        "UPDATE runs SET position=?, in_study=1, variant_id=?, variant_label=?, "
                        "variant=? WHERE run_id=?",
                        (position, run.variant_id, run.variant_label, json.dumps(run.variant),
                         run.run_id),
                    )
                else:
                    db.execute(
                        "INSERT INTO runs (run_id, position, variant_id, variant_label, variant,"
                        " seed, config) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            run.run_id,
                            position,
                            run.variant_id,
                            run.variant_label,
                            json.dumps(run.variant),
                            run.seed,
                            json.dumps(run.config.resolved()),
                        ),
                    )
            for rid in gone:
                db.execute("UPDATE runs SET in_study=0 WHERE run_id=?", (rid,))
            self._set_meta(db, "name", study.name)
        atomic_write_text(self.root / "study.toml", study.text)
        info = compact_study(study.resolved())
        path = self.root / "study.json"
        if self._read_info(missing_ok=True) != info:  # written once per plan
            atomic_write_json(path, info)
        self._info = info
        return {"new": len(new), "set_aside": len(gone)}

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            self._set_meta(db, key, value)

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def study_info(self) -> dict[str, Any]:
        """study.json (name, factors, columns, plan), read once per store and kept: the
        per-run path never reads it again. The caller must not change what it gets."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self, missing_ok: bool = False) -> dict[str, Any] | None:
        path = self.root / "study.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if missing_ok:
                return None
            raise StudyDirError(f"{self.root}: study.json is missing") from None
        except (OSError, ValueError):
            if missing_ok:
                return None
            raise

    def study_text(self) -> str:
        path = self.root / "study.toml"
        return path.read_text() if path.exists() else ""

    # ------------------------------------------------------------------ status changes

    def prepare(self, retry_failed: bool = False) -> list[str]:
        """Runs to do now, in plan order: pending ones, runs a killed process left
        ``running``, runs whose record is damaged or missing, and failed ones if
        ``retry_failed``."""
        self.heal()
        with self._tx() as db:
            db.execute("UPDATE runs SET status='pending' WHERE status='running'")
            if retry_failed:
                db.execute("UPDATE runs SET status='pending', error=NULL WHERE status='failed'")
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE status='pending' AND in_study=1 ORDER BY position"
        )
        return [row["run_id"] for row in rows]

    def requeue(self, configs: dict[str, dict[str, Any]]) -> None:
        """Put finished runs back to pending to train them again with ``configs`` (run id →
        resolved config: the same identity, asking for more, e.g. kept weights). Their
        old record stays until the new one replaces it."""
        with self._tx() as db:
            for rid, config in configs.items():
                db.execute(
                    "UPDATE runs SET status='pending', config=?, final=NULL, sizes=NULL, "
                    "finished=NULL, diverged_epoch=NULL, seconds=NULL WHERE run_id=?",
                    (json.dumps(config), rid),
                )

    def mark_running(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='running', started=?, attempts=attempts+1 WHERE run_id=?",
                (time.time(), run_id),
            )

    def end_interrupted_transaction(self) -> None:
        """Roll back a transaction an interrupt left open: a signal can land between
        ``BEGIN IMMEDIATE`` and the ``with`` block that would end it, and then the
        interrupt's own write (running runs back to pending) could not begin."""
        if self._db is not None and self._db.in_transaction:
            _Transaction(self._db)._rollback()

    def running_ids(self) -> list[str]:
        """Runs the index marks as running."""
        return [row[0] for row in self.db.execute("SELECT run_id FROM runs WHERE status='running'")]

    def mark_pending(self, run_ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE runs SET status='pending' WHERE run_id=? AND status='running'",
                [(rid,) for rid in run_ids],
            )

    def record_result(
        self, result: dict[str, Any], metrics: dict[str, Any] | None = None
    ) -> None:
        """Store a finished run: the record file first (atomically), then the index row
        (one short transaction). Kept weights (``result["weights"]``: safetensors bytes,
        or a state_dict) go to ``runs/ID.safetensors``, before the record, never into it.
        ``metrics``: the run's metrics derived from its history (the analysis computes
        them), kept in the index so the tables need not read the records."""
        run_id = result["run_id"]
        result = dict(result)
        weights = result.pop("weights", None)
        if weights is not None:
            if not isinstance(weights, bytes):
                from safetensors.torch import save

                weights = save(weights)
            atomic_write_bytes(self.weights_path(run_id), weights)
        atomic_write_text(self.root / "runs" / f"{run_id}.json", record_text(result))
        with self._tx() as db:
            self._store_row(db, result, finished=time.time(), metrics=metrics)

    @staticmethod
    def _store_row(
        db: sqlite3.Connection,
        result: dict[str, Any],
        finished: float,
        metrics: dict[str, Any] | None = None,
    ) -> None:
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

    def set_metrics(self, metrics: dict[str, dict[str, Any]]) -> None:
        """Keep derived per-run metrics (run id → metrics) in the index, one transaction."""
        if not metrics:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE runs SET metrics=? WHERE run_id=?",
                [(json.dumps(m), rid) for rid, m in metrics.items()],
            )

    def record_failure(self, run_id: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='failed', error=?, finished=? WHERE run_id=?",
                (error, time.time(), run_id),
            )

    # ------------------------------------------------------------------ reading

    def rows(self, include_set_aside: bool = False) -> list[dict[str, Any]]:
        """Index rows in plan order, JSON fields decoded."""
        self.heal()
        # The same index state gives the same rows: data_version changes when another
        # connection commits, total_changes when this one writes.
        db = self.db
        state = (include_set_aside, id(db), db.execute("PRAGMA data_version").fetchone()[0],
                 db.total_changes)
        if self._rows_memo is None or self._rows_memo[0] != state:
            where = "" if include_set_aside else "WHERE in_study=1"
            out = []
            for row in db.execute(f"SELECT * FROM runs {where} ORDER BY position"):
                item = dict(row)
                for key in ("variant", "config", "final", "sizes", "metrics"):
                    item[key] = json.loads(item[key]) if item[key] else None
                out.append(item)
            self._rows_memo = (state, out)
        # each caller gets its own row dicts (callers add keys, e.g. table_rows' metrics)
        return [dict(item) for item in self._rows_memo[1]]

    def counts(self) -> dict[str, int]:
        self.heal()
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.db.execute(
            "SELECT status, COUNT(*) AS n FROM runs WHERE in_study=1 GROUP BY status"
        ):
            counts[row["status"]] = row["n"]
        return counts

    def weights_path(self, run_id: str) -> Path:
        """Where a run's kept weights are (``keep = "best" | "last"``)."""
        return self.root / "runs" / f"{run_id}.safetensors"

    def load_record(self, run_id: str, arrays: bool = False) -> dict[str, Any] | None:
        """The run's record, checked; None when there is none. A damaged one is moved to
        runs/quarantine/ and its run set back to pending (one warning line). ``arrays``:
        its packed arrays as numpy arrays, not lists (``read_record``)."""
        path = self.root / "runs" / f"{run_id}.json"
        if not path.exists():
            return None
        try:
            return read_record(path, run_id, arrays=arrays)
        except DamagedRecord as exc:
            self._quarantine_file(path, str(exc))
            self._set_pending(run_id)
            return None

    # ------------------------------------------------------------------ healing

    def heal(self, trust_checked: bool = True) -> dict[str, list[str]]:
        """Check every finished run's record (once per store): a damaged one is
        quarantined, a missing one noted; either way the run is pending again and the
        next ``ablab run`` trains it. Returns what was found: ``ok``, ``quarantined``,
        ``missing`` (run ids). With ``trust_checked``, a record this process found whole
        before (another store of the same directory: ``ablab report`` opens a few) and
        whose file is unchanged since (same inode, size and modification time) is not
        checked again."""
        if self._healed:
            return {"ok": [], "quarantined": [], "missing": []}
        self._healed = True
        found: dict[str, list[str]] = {"ok": [], "quarantined": [], "missing": []}
        rows = self.db.execute(
            "SELECT run_id, status, variant_label, seed FROM runs ORDER BY position"
        ).fetchall()
        finished = {row["run_id"]: row for row in rows if row["status"] in ("done", "diverged")}
        checked = _CHECKED.setdefault(str(self.root.resolve()), {})
        if not trust_checked:
            checked.clear()
        for rid, row in finished.items():
            path = self.root / "runs" / f"{rid}.json"
            stamp = _stamp(path)
            if stamp is None:
                warn(
                    f"{path}: the record of a finished run ({_label(row)}) is missing; "
                    "the run is pending again and the next `ablab run` re-trains it"
                )
                self._set_pending(rid)
                found["missing"].append(rid)
                continue
            if checked.get(rid) == stamp:
                found["ok"].append(rid)
                continue
            try:
                check_record(path, rid)  # every check read_record makes, nothing built
                found["ok"].append(rid)
                checked[rid] = stamp
            except DamagedRecord as exc:
                self._quarantine_file(path, str(exc), row)
                self._set_pending(rid)
                found["quarantined"].append(rid)
        for path in sorted((self.root / "runs").glob("*.json")):
            if path.stem in finished:
                continue
            stamp = _stamp(path)
            if stamp is not None and checked.get(path.stem) == stamp:
                continue
            try:  # a record the index does not count as finished (killed in between)
                check_record(path)
                checked[path.stem] = stamp
            except DamagedRecord as exc:
                self._quarantine_file(path, str(exc))
                found["quarantined"].append(path.stem)
        return found

    def check(self) -> dict[str, Any]:
        """Verify every record and the index (``ablab check``): what :meth:`heal` found,
        plus ``rebuilt`` (why the index was rebuilt, or None)."""
        self._healed = False
        found = self.heal(trust_checked=False)
        return {**found, "rebuilt": self.rebuilt}

    def _quarantine_file(self, path: Path, reason: str, row: Any = None) -> None:
        try:
            dest = quarantine_file(path)
        except OSError as exc:
            raise StudyDirError(
                f"{path}: damaged run record ({reason}) and cannot move it aside "
                f"({exc.strerror})"
            ) from None
        what = f" ({_label(row)})" if row is not None else ""
        warn(
            f"{path}: damaged run record{what}: {reason}; moved to "
            f"{dest.relative_to(self.root)}, the run is pending again and the next "
            "`ablab run` re-trains it"
        )

    def _set_pending(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='pending', final=NULL, sizes=NULL, finished=NULL, "
                "diverged_epoch=NULL, seconds=NULL, metrics=NULL WHERE run_id=? "
                "AND status IN ('done', 'diverged')",
                (run_id,),
            )


def peek_statuses(root: str | Path) -> dict[str, str]:
    """Run id → status as DIR's index says now, read without taking part: a read-only
    connection, no healing, no rebuilding, nothing written. For a process that does not
    hold the directory's lock (and may not get it: another `ablab run` may be working
    there), e.g. sizing a progress display before asking for the lock. {} when there is
    no readable index."""
    path = Path(root).absolute() / "index.sqlite"
    if not path.is_file():
        return {}
    try:
        uri = f"{path.as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as db:
            return dict(db.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.Error:
        return {}


#: Per study directory (resolved path), the records this process found whole: run id →
#: the file's (inode, size, modification time) then (``StudyStore.heal``).
_CHECKED: dict[str, dict[str, tuple[int, int, int]]] = {}


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def compact_study(resolved: dict[str, Any]) -> dict[str, Any]:
    """What study.json holds: ``Study.resolved()`` with each variant's config once
    (``configs``, by variant id, without the seed) instead of every run's; a run keeps its
    own ``config`` only where it is not its variant's with its seed."""
    info = {k: v for k, v in resolved.items() if k != "runs"}
    configs: dict[str, Any] = {}
    runs = []
    for run in resolved.get("runs", []):
        entry = {k: v for k, v in run.items() if k != "config"}
        config = run["config"]
        configs.setdefault(run["variant_id"], {k: v for k, v in config.items() if k != "seed"})
        if run_config(entry, configs) != config:
            entry["config"] = config
        runs.append(entry)
    info["configs"] = configs
    info["runs"] = runs
    return info


def run_config(run: dict[str, Any], configs: dict[str, Any]) -> dict[str, Any]:
    """A run's full config from a study.json entry (compact or not)."""
    if "config" in run:
        return run["config"]
    base = configs[run["variant_id"]]
    return {**base, "seed": run["seed"]} if "seed" not in base else dict(base)


def _label(row: Any) -> str:
    label = row["variant_label"]
    return f"{label}, seed={row['seed']}" if label else f"seed={row['seed']}"


class _Transaction:
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
                self._rollback()
                raise StudyDirError(f"study index: cannot write ({error})") from None
        else:
            self._rollback()
            if isinstance(exc, sqlite3.Error):  # e.g. "database or disk is full"
                raise StudyDirError(f"study index: cannot write ({exc})") from None

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing begun, or SQLite already rolled back (it does on a full disk)

"""One directory per study, and :class:`StudyStore`, the one face of it.

    DIR/study.toml        the study file as given (frozen copy)
    DIR/study.json        the resolved study, compact: each variant's config once, each
                          run's id, variant and seed (a run's config is its variant's with
                          its seed; written once per plan)
    DIR/index.sqlite      the index: one row per run with its status and final metrics
    DIR/runs/ID.json      each finished run's whole record (history, batch losses, probes)
    DIR/.lock             held by the one process writing in DIR

Only the process holding DIR/.lock writes (``ablab run``, ``ablab check``, tuning). Every
other store only reads, writing nothing, damage included (:mod:`ablab.store.reading`).

Crash safety: a run's record file is written atomically before its index row says
``done``; the index is SQLite in WAL mode with synchronous=FULL. A process killed at any
point leaves runs either done (record complete) or not done (re-run on resume): rows left
``running`` by a dead process are put back to ``pending`` by the next ``ablab run``.

Healing (``ablab check`` and the start of ``ablab run``): the records are the results,
the index is derived data. A record that does not parse or is not about its run is moved
to ``runs/quarantine/`` and its run goes back to ``pending`` (:mod:`ablab.store.healing`);
an index that is missing or damaged is rebuilt from ``study.json`` and ``runs/*.json``
(:mod:`ablab.store.rebuild`), so nothing finished is lost.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablab.store.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from ablab.store.healing import Findings, inspect_records, label
from ablab.store.index import (
    BUSY_TIMEOUT_S,
    StudyDirError,
    Transaction,
    decoded,
    insert_run,
    open_index,
    peek_statuses,
    set_meta,
    set_pending,
    store_row,
)
from ablab.store.lock import hold_lock
from ablab.store.reading import emptied, read_study_index, warn_once
from ablab.store.rebuild import can_rebuild, compact_study, rebuild_index, run_config
from ablab.store.records import DamagedRecord, quarantine_file, read_record, record_text, warn
from ablab.study import Study

STATUSES = ("pending", "running", "done", "diverged", "failed")

__all__ = [
    "BUSY_TIMEOUT_S",
    "STATUSES",
    "StudyDirError",
    "StudyStore",
    "compact_study",
    "peek_statuses",
    "run_config",
]


class StudyStore:
    """The on-disk state of one study. Only the process holding the lock writes; a store
    that does not hold it reads and never writes (see the module's docstring).

    A context manager: ``with StudyStore.existing(path) as store:`` closes the index
    connection on the way out, whatever happens inside."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.db_path = self.root / "index.sqlite"
        self._lock_handle = None
        self._db: sqlite3.Connection | None = None
        self._db_writes = False  # whether _db is the writer's connection to the file
        self._read_at: tuple | None = None  # the index file's stamp when a reader copied it
        self._healed = False
        self.rebuilt: str | None = None  # why the index was rebuilt by this store, if it was
        self._rebuilt_quarantined: list[str] = []  # records the rebuild moved aside
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
        """The index: the file itself for the lock's holder (rebuilt first if missing or
        damaged), an in-memory copy for every other store."""
        if self._db is not None and not self._db_writes and self._read_at != self._stamp():
            self.close()  # another process wrote since this copy was read: read it again
        if self._db is None:
            self._read_at = None if self.holds_lock else self._stamp()
            self._db = self._open_writing() if self.holds_lock else read_study_index(self.root)
            self._db_writes = self.holds_lock
        return self._db

    def _stamp(self) -> tuple:
        """The index file and its -wal as they stand (size, modification time)."""
        stamps = []
        for path in (self.db_path, Path(f"{self.db_path}-wal")):
            try:
                st = path.stat()
                stamps.append((st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _open_writing(self) -> sqlite3.Connection:
        if not self.db_path.exists() and can_rebuild(self.root):
            return self._rebuild("index.sqlite is missing")
        try:
            db = open_index(self.db_path)
        except sqlite3.Error as exc:
            if not can_rebuild(self.root):
                raise StudyDirError(f"{self.db_path}: cannot open the index ({exc})") from None
            return self._rebuild(f"index.sqlite is damaged ({exc})")
        if emptied(db, self.root):
            db.close()
            return self._rebuild("index.sqlite holds no runs")
        return db

    def _rebuild(self, why: str) -> sqlite3.Connection:
        """A new index in place of a missing or damaged one (:func:`rebuild_index`);
        damaged records found on the way are quarantined."""
        db, filled = rebuild_index(self.root, why, on_damaged=self._quarantine_file)
        self.rebuilt = why
        self._rebuilt_quarantined = [path.stem for path, _ in filled.damaged]
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._rows_memo = None

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    @contextmanager
    def locked(self):
        """Hold DIR/.lock for as long as this process works on the study: this store
        writes (and heals) only while it holds it."""
        with hold_lock(self.root) as handle:
            if self._db is not None and not self._db_writes:
                self.close()  # a reader's copy: the writer opens the file itself
                self._healed = False
            self._lock_handle = handle
            try:
                yield self
            finally:
                self._lock_handle = None

    @property
    def holds_lock(self) -> bool:
        """Whether this store holds DIR/.lock (it is the one process writing)."""
        return self._lock_handle is not None

    def _tx(self) -> Transaction:
        return Transaction(self.db)

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
                    insert_run(db, {"run_id": run.run_id, "variant_id": run.variant_id,
                                    "variant_label": run.variant_label, "variant": run.variant,
                                    "seed": run.seed, "config": run.config.resolved()}, position)
            for rid in gone:
                db.execute("UPDATE runs SET in_study=0 WHERE run_id=?", (rid,))
            set_meta(db, "name", study.name)
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
            set_meta(db, key, value)

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
            Transaction(self._db).rollback()

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
            store_row(db, result, finished=time.time(), metrics=metrics)

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
        """Index rows in plan order, JSON fields decoded. Reads only."""
        # The same index state gives the same rows: data_version changes when another
        # connection commits, total_changes when this one writes.
        db = self.db
        state = (include_set_aside, id(db), db.execute("PRAGMA data_version").fetchone()[0],
                 db.total_changes)
        if self._rows_memo is None or self._rows_memo[0] != state:
            where = "" if include_set_aside else "WHERE in_study=1"
            rows = db.execute(f"SELECT * FROM runs {where} ORDER BY position")
            self._rows_memo = (state, [decoded(row) for row in rows])
        # each caller gets its own row dicts (callers add keys, e.g. table_rows' metrics)
        return [dict(item) for item in self._rows_memo[1]]

    def counts(self) -> dict[str, int]:
        """Runs in the study per status. Reads only."""
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
        """The run's record, checked; None when there is none or it is damaged (the lock's
        holder moves a damaged one to runs/quarantine/ and sets its run pending, one
        warning line). ``arrays``: its packed arrays as numpy arrays, not lists
        (``read_record``)."""
        path = self.root / "runs" / f"{run_id}.json"
        if not path.exists():
            return None
        try:
            return read_record(path, run_id, arrays=arrays)
        except DamagedRecord as exc:
            if self.holds_lock:
                self._quarantine_file(path, str(exc))
                with self._tx() as db:
                    set_pending(db, run_id)
            else:
                warn_once(f"{path}: damaged run record: {exc}; left out (`ablab check` "
                          "moves it to runs/quarantine/)")
            return None

    # ------------------------------------------------------------------ healing

    def heal(self, trust_checked: bool = True) -> dict[str, list[str]]:
        """Check every finished run's record (once per store) and act, holding the lock
        (taken for the call if this store does not hold it): a damaged record is
        quarantined, a missing one noted; either way the run is pending again and the next
        ``ablab run`` trains it. Returns what was found: ``ok``, ``quarantined``,
        ``missing`` (run ids). ``trust_checked``: see :func:`inspect_records`."""
        if not self.holds_lock:
            with self.locked():
                return self.heal(trust_checked)
        if self._healed:
            return {"ok": [], "quarantined": [], "missing": []}
        self._healed = True
        found: Findings = inspect_records(self.db, self.root, trust_checked)
        for rid, row in found.missing:
            warn(
                f"{self.root / 'runs' / f'{rid}.json'}: the record of a finished run "
                f"({label(row)}) is missing; the run is pending again and the next "
                "`ablab run` re-trains it"
            )
        for _, path, reason, row in found.damaged:
            self._quarantine_file(path, reason, row)
        with self._tx() as db:
            for rid in found.pending_again():
                set_pending(db, rid)
        return {"ok": found.ok, "quarantined": [rid for rid, *_ in found.damaged],
                "missing": [rid for rid, _ in found.missing]}

    def check(self) -> dict[str, Any]:
        """Verify every record and the index (``ablab check``), holding the lock: what
        :meth:`heal` found, plus ``rebuilt`` (why the index was rebuilt, or None)."""
        if not self.holds_lock:
            with self.locked():
                return self.check()
        self._healed = False
        found = self.heal(trust_checked=False)
        found["quarantined"] = self._rebuilt_quarantined + found["quarantined"]
        return {**found, "rebuilt": self.rebuilt}

    def _quarantine_file(self, path: Path, reason: str, row: Any = None) -> None:
        try:
            dest = quarantine_file(path)
        except OSError as exc:
            raise StudyDirError(
                f"{path}: damaged run record ({reason}) and cannot move it aside "
                f"({exc.strerror})"
            ) from None
        what = f" ({label(row)})" if row is not None else ""
        warn(
            f"{path}: damaged run record{what}: {reason}; moved to "
            f"{dest.relative_to(self.root)}, the run is pending again and the next "
            "`ablab run` re-trains it"
        )


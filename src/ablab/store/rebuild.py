"""The index is derived data: the plan (DIR/study.json) and the run records (DIR/runs/)
are the results. This module fills an index from them, on disk when the writer rebuilds
a missing or damaged one, in memory when a command that only reads finds it so."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablab.store.index import (
    StudyDirError,
    Transaction,
    insert_run,
    open_index,
    set_meta,
    store_row,
)
from ablab.store.records import DamagedRecord, read_record, warn


@dataclass
class Filled:
    """What :func:`fill_index` put in: run records, damaged ones (path, reason), and
    whether the plan (study.json) was read."""

    records: int = 0
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    planned: bool = False

    def source(self) -> str:
        return f"{'study.json and ' if self.planned else ''}{self.records} run records"


def can_rebuild(root: Path) -> bool:
    """Whether an index can be rebuilt here: the study file or run records are here."""
    runs = root / "runs"
    return (root / "study.json").is_file() or (runs.is_dir() and any(runs.glob("*.json")))


def fill_index(db: sqlite3.Connection, root: Path,
               on_damaged: Callable[[Path, str], None] = lambda path, reason: None) -> Filled:
    """Put into ``db`` (an empty index, inside a transaction) the runs study.json plans
    and every record under runs/; ``on_damaged(path, reason)`` is told of each record that
    does not parse, which is left out. A record of a run the plan does not name is set
    aside (not in the study)."""
    planned, name, configs = _read_plan(root)
    filled = Filled(planned=bool(planned))
    known: set[str] = set()
    for position, run in enumerate(planned):
        try:
            insert_run(db, {**run, "config": run_config(run, configs)}, position)
            known.add(run["run_id"])
        except (KeyError, TypeError, ValueError, sqlite3.IntegrityError):
            continue  # a damaged study.json entry: its record (if any) still counts
    if name:
        set_meta(db, "name", str(name))
    for path in sorted((root / "runs").glob("*.json")):
        try:
            record = read_record(path)
        except DamagedRecord as exc:
            on_damaged(path, str(exc))
            filled.damaged.append((path, str(exc)))
            continue
        rid = record["run_id"]
        if rid not in known:  # a run the study file no longer names: set aside
            config = record["config"]
            stray = {"run_id": rid, "variant_id": "", "variant_label": "", "variant": {},
                     "seed": int(config.get("seed", 0) or 0), "config": config}
            insert_run(db, stray, len(known) + 1_000_000, in_study=not planned)
            known.add(rid)
        store_row(db, record, finished=path.stat().st_mtime)
        db.execute("UPDATE runs SET attempts=1 WHERE run_id=?", (rid,))
        filled.records += 1
    return filled


def rebuild_index(root: Path, why: str, on_damaged: Callable[[Path, str], None]
                  ) -> tuple[sqlite3.Connection, Filled]:
    """The writer's new index in place of a missing or damaged one (``why``), filled from
    study.json and the records (one warning line). The damaged file is kept beside it as
    index.sqlite.damaged."""
    db_path = root / "index.sqlite"
    kept = ""
    if db_path.exists():
        damaged = db_path.with_name("index.sqlite.damaged")
        os.replace(db_path, damaged)
        kept = f"; the old one is kept as {damaged.name}"
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    try:
        db = open_index(db_path)
    except sqlite3.Error as exc:
        raise StudyDirError(f"{db_path}: cannot create the index ({exc})") from None
    with Transaction(db) as tx:
        filled = fill_index(tx, root, on_damaged=on_damaged)
    note = f", {len(filled.damaged)} damaged ones quarantined" if filled.damaged else ""
    warn(f"{db_path}: {why}; rebuilt it from {filled.source()}{note} "
         f"(nothing finished is lost){kept}")
    return db, filled


def _read_plan(root: Path) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    try:
        info = json.loads((root / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], None, {}
    if not isinstance(info, dict):
        return [], None, {}
    runs = info.get("runs")
    return (runs if isinstance(runs, list) else [], info.get("name"),
            info.get("configs") or {})


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

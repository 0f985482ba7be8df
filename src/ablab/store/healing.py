"""Which run records are whole. Looking (:func:`inspect_records`) writes nothing; the
writer then acts on what was found (quarantine, run pending again: ``StudyStore.heal``),
a reader only counts the damaged runs as pending in its in-memory copy of the index."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablab.store.records import DamagedRecord, check_record

#: Per study directory (resolved path), the records this process found whole: run id →
#: the file's (inode, size, modification time) then.
_CHECKED: dict[str, dict[str, tuple[int, int, int]]] = {}


@dataclass
class Findings:
    """Run ids whose record is whole (``ok``) or ``missing``; ``damaged``: (run id, path,
    reason, index row or None for a record the index does not count as finished)."""

    ok: list[str] = field(default_factory=list)
    missing: list[tuple[str, Any]] = field(default_factory=list)
    damaged: list[tuple[str, Path, str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.damaged)

    def pending_again(self) -> list[str]:
        """The finished runs to count (or set) pending again."""
        return [rid for rid, _ in self.missing] + [
            rid for rid, _, _, row in self.damaged if row is not None
        ]


def inspect_records(db: sqlite3.Connection, root: Path, trust_checked: bool = True) -> Findings:
    """Check every finished run's record and every other record under runs/. With
    ``trust_checked``, a record this process found whole before (another store of the same
    directory: ``ablab report`` opens a few) whose file is unchanged since (same inode,
    size and modification time) is not checked again."""
    found = Findings()
    rows = db.execute(
        "SELECT run_id, status, variant_label, seed FROM runs ORDER BY position"
    ).fetchall()
    finished = {row["run_id"]: row for row in rows if row["status"] in ("done", "diverged")}
    checked = _CHECKED.setdefault(str(root.resolve()), {})
    if not trust_checked:
        checked.clear()
    for rid, row in finished.items():
        path = root / "runs" / f"{rid}.json"
        stamp = _stamp(path)
        if stamp is None:
            found.missing.append((rid, row))
        elif checked.get(rid) == stamp:
            found.ok.append(rid)
        else:
            problem = _problem(path, rid)
            if problem is None:
                found.ok.append(rid)
                checked[rid] = stamp
            else:
                found.damaged.append((rid, path, problem, row))
    for path in sorted((root / "runs").glob("*.json")):
        if path.stem in finished:
            continue
        stamp = _stamp(path)
        if stamp is not None and checked.get(path.stem) == stamp:
            continue
        problem = _problem(path)  # a record the index does not count as finished
        if problem is None:
            checked[path.stem] = stamp
        else:
            found.damaged.append((path.stem, path, problem, None))
    return found


def label(row: Any) -> str:
    """A run as a user knows it: its variant and seed."""
    name = row["variant_label"]
    return f"{name}, seed={row['seed']}" if name else f"seed={row['seed']}"


def _problem(path: Path, run_id: str | None = None) -> str | None:
    try:
        check_record(path, run_id)  # every check read_record makes, nothing built
    except DamagedRecord as exc:
        return str(exc)
    return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)

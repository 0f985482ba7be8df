"""Run records on disk: what a whole one looks like, and where damaged ones go.

A record (``DIR/runs/ID.json``) is the only copy of a finished run's results; the index
is derived from the records and the study file. Every read checks the record; one that
does not parse or is not about its own run is moved to ``DIR/runs/quarantine/`` so the
run is trained again instead of crashing every command that reads the study."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: The fields every record has, with their JSON types (``RunResult.to_dict``).
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "config": dict,
    "status": str,
    "history": list,
    "final": dict,
    "sizes": dict,
}
RECORD_STATUSES = ("done", "diverged")
QUARANTINE = "quarantine"


class DamagedRecord(Exception):
    """A record file that is not a whole record of its run (the message says why)."""


def record_problem(data: Any, run_id: str) -> str | None:
    """Why ``data`` (a parsed record) is not a whole record of ``run_id``; None if it is."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    for key, kind in RECORD_FIELDS.items():
        if key not in data:
            return f"no {key!r} field"
        if not isinstance(data[key], kind):
            return f"{key!r} is {type(data[key]).__name__}, not {kind.__name__}"
    if data["run_id"] != run_id:
        return f"it is the record of run {data['run_id']!r}, not of {run_id!r}"
    if data["status"] not in RECORD_STATUSES:
        return f"status {data['status']!r} is not one of {', '.join(RECORD_STATUSES)}"
    return None


def read_record(path: Path, run_id: str | None = None) -> dict[str, Any]:
    """The record in ``path``, checked; raises :class:`DamagedRecord` saying why not."""
    run_id = run_id or path.stem
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DamagedRecord(f"cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedRecord("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        what = "empty" if not raw.strip() else f"not valid JSON ({exc.msg} at byte {exc.pos})"
        raise DamagedRecord(what) from None
    except RecursionError:
        raise DamagedRecord("not valid JSON (nested too deeply)") from None
    problem = record_problem(data, run_id)
    if problem is not None:
        raise DamagedRecord(problem)
    return data


def quarantine_file(path: Path) -> Path:
    """Move a damaged file to ``runs/quarantine/`` (never overwriting an earlier one)."""
    folder = path.parent / QUARANTINE
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    n = 1
    while dest.exists():
        dest = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    os.replace(path, dest)
    return dest


def warn(message: str) -> None:
    """One warning line on stderr (the store has no other way to tell the user)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)

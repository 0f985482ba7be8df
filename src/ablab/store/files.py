"""Crash-safe file writes: write a temporary file beside the target, fsync, rename.

A process killed at any point leaves either the old file or the new one, never half."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ablab.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; reports are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
    except BaseException:  # Ctrl-C / SIGTERM half-way: leave no temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (``inf``, ``-inf``, ``nan``: not JSON) replaced
    by None, i.e. ``null`` in the file, as a diverged run's metrics are stored."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as strict JSON: a non-finite float anywhere in it is written as
    ``null`` (see :func:`finite_json`), never a crash and never a file other readers
    reject (Python's ``Infinity`` / ``NaN`` are not JSON)."""
    atomic_write_text(path, json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n")

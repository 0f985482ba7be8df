"""DIR/.lock: held by the one process that writes in a study directory (``ablab run``,
``ablab check``, tuning). Every other process only reads."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ablab.store.index import StudyDirError


@contextmanager
def hold_lock(root: Path) -> Iterator[IO[str]]:
    """Hold DIR/.lock (an exclusive ``flock``, the holder's pid written in it) for the
    ``with`` block; another holder is one clear error, never a wait."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / ".lock", "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise StudyDirError(f"{root}: cannot write here ({exc.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StudyDirError(
            f"{root}: another `ablab run` is working on this directory; "
            "wait for it to finish or stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

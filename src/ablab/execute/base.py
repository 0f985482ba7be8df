"""What executors share: tasks, events, the thread budget, and running one task."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

EventKind = Literal["started", "epoch", "done", "failed"]


@dataclass(frozen=True)
class Task:
    run_id: str
    label: str
    config: dict[str, Any]  # a resolved RunConfig as plain data (crosses process borders)

    @property
    def epochs(self) -> int:
        return int(self.config["epochs"])


@dataclass
class Event:
    kind: EventKind
    task: Task
    record: dict[str, Any] | None = None  # epoch record, or the RunResult as a dict
    error: str | None = None


OnEvent = Callable[[Event], None]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def plan_workers(n_tasks: int, workers: int | None, threads: int | None) -> tuple[int, int]:
    """Split the cores between worker processes and their threads so that
    workers × threads = cores. Small runs gain most from one thread each in parallel."""
    cores = available_cores()
    if workers is None:
        workers = max(1, min(cores, n_tasks))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_task(config: dict[str, Any], on_epoch: Callable[[dict[str, Any]], None] | None = None):
    """Train one task in this process; returns ("done", result dict) or ("failed", reason).

    A user error (missing data, an architecture that cannot take the data) and any failure
    inside training (out of memory, a bug) become a one-line reason: the study goes on."""
    from ablab.config import RunConfig
    from ablab.train import fit

    try:
        result = fit(RunConfig.model_validate(config), on_epoch=on_epoch)
        return "done", result.to_dict()
    except MemoryError:
        return "failed", "out of memory (MemoryError)"
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, not raised
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" [{os.path.basename(frame.filename)}:{frame.lineno}]" if frame else ""
        message = str(exc).splitlines()[0] if str(exc) else ""
        return "failed", f"{type(exc).__name__}: {message}{where}"

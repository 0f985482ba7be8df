"""Executors: run a study's tasks locally (process pool) or on Ray."""

from ablab.execute.base import (
    Event,
    Task,
    available_cores,
    group_tasks,
    plan_workers,
    run_group,
    run_task,
)
from ablab.execute.local import LocalExecutor, kept_workers, start_server, stop_server


def make_executor(
    kind: str,
    workers: int,
    threads: int,
    address: str | None = None,
    gpus_per_run: float | None = None,
):
    if kind == "local":
        return LocalExecutor(workers, threads)
    from ablab.execute.ray_executor import RayExecutor

    return RayExecutor(threads, address=address, workers=workers, gpus_per_run=gpus_per_run)


__all__ = [
    "Event",
    "LocalExecutor",
    "Task",
    "available_cores",
    "group_tasks",
    "kept_workers",
    "make_executor",
    "plan_workers",
    "run_group",
    "run_task",
    "start_server",
    "stop_server",
]

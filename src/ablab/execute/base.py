"""What executors share: tasks, events, the thread budget, and running one task."""

from __future__ import annotations

import json
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


#: Forward FLOPs per example above which a model is "large": its steps are long, dense
#: kernels that use several threads well. See ``plan_workers``.
LARGE_MODEL_FLOPS = 50e6
#: Below this, a second torch thread slows a step down (measured: a digits MLP step took
#: 2.1x as long on 2 threads as on 1 here): such runs always get one thread.
SMALL_MODEL_FLOPS = 2e6


def group_tasks(tasks: list[Task]) -> list[list[Task]]:
    """The tasks as units of work: the runs of one variant that differ only in seed and
    that ``ablab.train.batched.can_batch`` accepts form one group (trained as one batched
    model); every other task is a group of its own. Order follows the first task of each
    group."""
    from ablab.config import RunConfig
    from ablab.train.batched import can_batch

    def key(task: Task) -> str:
        data = dict(task.config)
        data.pop("seed", None)
        data.pop("name", None)
        return json.dumps(data, sort_keys=True, default=str)

    by_key: dict[str, list[Task]] = {}
    for task in tasks:
        by_key.setdefault(key(task), []).append(task)
    groups: list[list[Task]] = []
    for members in by_key.values():
        if len(members) > 1:
            try:
                ok = can_batch([RunConfig.model_validate(t.config) for t in members])
            except Exception:  # noqa: BLE001 - an invalid config fails later, alone
                ok = False
            if ok:
                groups.append(members)
                continue
        groups.extend([t] for t in members)
    order = {t.run_id: i for i, t in enumerate(tasks)}
    return sorted(groups, key=lambda g: order[g[0].run_id])


def _max_forward_flops(tasks: list[Task]) -> float:
    from ablab.config import RunConfig
    from ablab.execute.estimate import forward_flops

    seen: dict[str, float] = {}
    for task in tasks:
        k = json.dumps([task.config.get("model"), task.config.get("dataset", {}).get("name")],
                       sort_keys=True, default=str)
        if k not in seen:
            try:
                seen[k] = forward_flops(RunConfig.model_validate(task.config))
            except Exception:  # noqa: BLE001 - unknown shape: count as small
                seen[k] = 0.0
    return max(seen.values(), default=0.0)


def plan_workers(
    tasks: int | list[Task], workers: int | None, threads: int | None
) -> tuple[int, int]:
    """Split the cores between worker processes and their torch threads (workers ×
    threads <= cores); ``workers`` / ``threads`` given by the user win.

    ``tasks`` is the task list (or just its length). The rule, measured on the 2-core
    development machine (``benchmarks/throughput.py``, section "workers x threads"):
    independent runs in separate single-thread processes scale perfectly, while a second
    torch thread gains little on small models (most ops are too small to split; each
    parallel region costs a wake-up) — so: one single-thread worker per unit of work (a
    run, or a group of seeds trained together) while there are at least as many units as
    cores. With fewer units than cores, the spare cores become threads of the workers —
    except for small models (below ``SMALL_MODEL_FLOPS``), which always run one thread.
    Large models (forward FLOPs per example above ``LARGE_MODEL_FLOPS``: dense kernels
    that thread well, and one dataset copy per process) get at most half the cores as
    workers, the rest as threads."""
    cores = available_cores()
    if isinstance(tasks, int):
        units, flops = tasks, 0.0
    else:
        units = len(group_tasks(tasks))
        flops = _max_forward_flops(tasks) if workers is None or threads is None else 0.0
    if workers is None:
        workers = max(1, min(cores, units))
        if flops > LARGE_MODEL_FLOPS and cores >= 4:
            workers = max(1, min(workers, cores // 2))
    if threads is None:
        small = 0.0 < flops < SMALL_MODEL_FLOPS
        threads = 1 if small else max(1, cores // workers)
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
        payload = result.to_dict()
        if result.weights is not None:  # keep = best | last: safetensors bytes for the store
            payload["weights"] = result.weights_bytes()
        return "done", payload
    except MemoryError:
        return "failed", "out of memory (MemoryError)"
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, not raised
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" [{os.path.basename(frame.filename)}:{frame.lineno}]" if frame else ""
        message = str(exc).splitlines()[0] if str(exc) else ""
        return "failed", f"{type(exc).__name__}: {message}{where}"


def run_group(
    configs: list[dict[str, Any]],
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[tuple[str, Any]]:
    """Train a unit of work: runs that differ only in seed, as one batched model when
    ``ablab.train.batched.can_batch`` accepts them (a single eligible run too, so its
    numbers do not depend on grouping), else each with ``run_task``. One
    ``(status, payload)`` per config, in order, as ``run_task`` gives. If batched training
    itself fails, each run is retried alone, so one bad run never fails its siblings."""
    from ablab.config import RunConfig
    from ablab.train.batched import can_batch, fit_seeds

    try:
        cfgs = [RunConfig.model_validate(c) for c in configs]
        batched = can_batch(cfgs)
    except Exception:  # noqa: BLE001 - run_task reports a bad config with its reason
        batched = False
    if batched:
        try:
            results = fit_seeds(cfgs, on_epoch=on_epoch)
            return [("done", r.to_dict()) for r in results]
        except Exception:  # noqa: BLE001 - fall back to one run at a time
            pass
    return [
        run_task(config, None if on_epoch is None else (lambda r, i=i: on_epoch(i, r)))
        for i, config in enumerate(configs)
    ]

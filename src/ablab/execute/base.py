"""What executors share: tasks, events, the thread budget, and running one task."""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ablab.registry import BUILTIN_PACKAGES

#: The modules a worker cannot train without: the built-in components, the loop, the probes,
#: scikit-learn (every built-in dataset is generated or split with it) and torch._dynamo
#: (every torch optimizer's __init__ imports it on first use). The local executor's fork
#: server imports them once. A process that keeps a run's time limit itself (a Ray task, a
#: run trained in the calling process) imports them before the limit starts: the limit then
#: counts training, not a first import of torch, and never expires half-way through an
#: import, which would leave a half-initialized module to every later run in that process.
TRAINING_MODULES = (
    "ablab.config", *BUILTIN_PACKAGES, "ablab.train.loop", "ablab.train.batched",
    "ablab.probes.boundary", "ablab.probes.gradients", "ablab.probes.units",
    "sklearn.datasets", "sklearn.model_selection", "torch._dynamo",
)


def import_training_modules() -> None:
    """Import :data:`TRAINING_MODULES` (once; later calls find them loaded)."""
    for name in TRAINING_MODULES:
        importlib.import_module(name)


EventKind = Literal["started", "epoch", "done", "failed"]


@dataclass(frozen=True)
class Task:
    run_id: str
    label: str
    config: dict[str, Any]  # a resolved RunConfig as plain data (crosses process borders)
    # the run's own folder for what its trainer writes (DIR/runs/ID/); None: a temporary one
    artefacts: str | None = None

    @property
    def epochs(self) -> int | None:
        """The built-in loop's epochs; None for a trainer that has none."""
        epochs = self.config.get("epochs")
        return None if epochs is None else int(epochs)

    @property
    def timeout(self) -> float | None:
        """Seconds this run may take (``timeout``); None: no limit."""
        limit = self.config.get("timeout")
        return None if limit is None else float(limit)


@dataclass
class Event:
    kind: EventKind
    task: Task
    record: dict[str, Any] | None = None  # epoch record, or the RunResult as a dict
    error: str | None = None
    # Where a Ray task ran: {"gpu_ids": [...], "cuda_visible_devices": ...} (Ray only).
    placement: dict[str, Any] | None = None


OnEvent = Callable[[Event], None]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: Forward FLOPs per example above which a model is "large": its steps are long, dense
#: kernels that use several threads well. See ``plan_workers``.
LARGE_MODEL_FLOPS = 50e6
#: Forward FLOPs per training step (per example × batch) below which a run keeps one
#: torch thread. With OMP_WAIT_POLICY=PASSIVE (ablab's setting, see ablab/__init__) every
#: parallel region wakes sleeping threads, which small steps and the probes' many small ops
#: pay for: 6 runs of moons-circles-activations (39 MFLOP steps, probes on) took 11.1 s on
#: 2 threads and 6.4 s on 1; a digits MLP at batch 512 (51 MFLOP) still gained 1.37x.
SMALL_STEP_FLOPS = 50e6


#: Worker processes per visible GPU when runs train on CUDA: while one worker's Python
#: prepares its next launches, another's kernels run (time-sliced; concurrently under
#: NVIDIA MPS). Each holds its own programs: different architectures side by side.
WORKERS_PER_GPU = 2


def visible_gpus() -> list[str]:
    """The CUDA devices this process may hand to workers: the entries of
    ``CUDA_VISIBLE_DEVICES`` (up to the first invalid one, as CUDA reads it) where it is
    set, else ``0 .. torch.cuda.device_count() - 1``; empty without CUDA."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        gpus = []
        for entry in listed.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA: no GPUs
        return []


def wants_cuda(configs: list[dict[str, Any]], gpus_visible: bool) -> bool:
    """Whether these runs train on CUDA: one asks for ``device = "cuda"``, or for
    ``"auto"`` where GPUs are visible."""
    devices = {c.get("device", "auto") for c in configs}
    return "cuda" in devices or ("auto" in devices and gpus_visible)


def gpu_for_worker(index: int, gpus: list[str]) -> str | None:
    """The GPU worker ``index`` trains on: round robin over ``gpus`` (None without any).

    >>> [gpu_for_worker(i, ["0", "1"]) for i in range(5)]
    ['0', '1', '0', '1', '0']
    """
    return gpus[index % len(gpus)] if gpus else None


def plan_units(
    tasks: list[Task], on_gpu: bool | None = None
) -> list[tuple[list[Task], bool]]:
    """The tasks as units of work, each with whether it trains batched. Where batching is
    ``worth_batching`` (a GPU), the runs that share a program
    (``ablab.train.batched.program_key``: architecture, data, batch size, epochs, optimizer
    family; seeds, optimizer settings, init, loss, schedule may differ) and that
    ``can_batch`` accepts form one unit, trained as one batched program; every other task
    is a unit of its own (batched too when accepted alone, so a run's numbers never depend
    on its program). On a CPU every task is a unit of its own, trained by ``fit``.
    Decided here, once, so workers do not repeat the model inspection. Order follows the
    first task of each unit. ``on_gpu`` (the Ray executor's, for a cluster's GPUs) says
    whether the runs will train on GPUs, instead of this machine's device."""
    from ablab.config import RunConfig
    from ablab.train.batched import can_batch, program_key, worth_batching

    def batchable(members: list[Task]) -> bool:
        try:
            configs = [RunConfig.model_validate(t.config) for t in members]
            worth = worth_batching(configs) if on_gpu is None else on_gpu
            return builtin_only(configs) and worth and can_batch(configs)
        except Exception:  # noqa: BLE001 - an invalid config fails later, alone
            return False

    def key(task: Task) -> str:
        try:
            return program_key(task.config)
        except Exception:  # noqa: BLE001 - an invalid config fails later, alone
            return task.run_id

    by_key: dict[str, list[Task]] = {}
    for task in tasks:  # one unit per program
        by_key.setdefault(key(task), []).append(task)
    units: list[tuple[list[Task], bool]] = []
    for members in by_key.values():
        if batchable(members):
            units.append((members, True))
        elif len(members) > 1:
            units.extend(([t], batchable([t])) for t in members)
        else:
            units.append((members, False))
    order = {t.run_id: i for i, t in enumerate(tasks)}
    return sorted(units, key=lambda u: order[u[0][0].run_id])


def group_tasks(tasks: list[Task]) -> list[list[Task]]:
    """The units of :func:`plan_units`, without their batched flags."""
    return [unit for unit, _ in plan_units(tasks)]


def _flops(tasks: list[Task]) -> tuple[float, float]:
    """(largest forward FLOPs per example, smallest forward FLOPs per training step) over
    the tasks; (0, 0) when no task's model can be inspected."""
    from ablab.config import RunConfig
    from ablab.execute.estimate import step_examples
    from ablab.models.flops import forward_flops

    per_example, per_step = [], []
    for task in tasks:
        try:
            cfg = RunConfig.model_validate(task.config)
            flops = forward_flops(cfg)
        except Exception:  # noqa: BLE001 - unknown shape: nothing to go by
            continue
        per_example.append(flops)
        per_step.append(flops * step_examples(cfg))
    return max(per_example, default=0.0), min(per_step, default=0.0)


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
    except for small steps (below ``SMALL_STEP_FLOPS``), which always run one thread.
    Large models (forward FLOPs per example above ``LARGE_MODEL_FLOPS``: dense kernels
    that thread well, and one dataset copy per process) get at most half the cores as
    workers, the rest as threads."""
    cores = available_cores()
    if isinstance(tasks, int):
        units, flops, step_flops = tasks, 0.0, 0.0
    else:
        units = len(group_tasks(tasks))
        gpus = visible_gpus()
        if gpus and wants_cuda([t.config for t in tasks], True):
            # On GPUs: ``WORKERS_PER_GPU`` workers per GPU (at least one per GPU, else as
            # many as there are cores), one per unit at most; the cores left are threads.
            if workers is None:
                per_gpu = max(len(gpus), min(cores, WORKERS_PER_GPU * len(gpus)))
                workers = max(1, min(units, per_gpu))
            return workers, threads or max(1, cores // workers)
        flops, step_flops = _flops(tasks) if workers is None or threads is None else (0.0, 0.0)
    if workers is None:
        workers = max(1, min(cores, units))
        if flops > LARGE_MODEL_FLOPS and cores >= 4:
            workers = max(1, min(workers, cores // 2))
    if threads is None:
        small = 0.0 < step_flops < SMALL_STEP_FLOPS
        threads = 1 if small else max(1, cores // workers)
    return workers, threads


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def builtin_only(configs: list[Any]) -> bool:
    """Whether every run is trained by the built-in loop (the only trainer whose seeds can
    train together as one batched model)."""
    from ablab.config import BUILTIN_TRAINER

    return all(c.trainer.name == BUILTIN_TRAINER for c in configs)


def run_task(
    config: dict[str, Any],
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    artefacts: str | None = None,
    limit_here: bool = False,
):
    """Train one task in this process with its trainer; returns ("done", result dict) or
    ("failed", reason). ``artefacts``: the run's folder (None: a temporary one).
    ``limit_here``: enforce the run's ``timeout`` in this process (where no parent process
    watches the run and kills it: a Ray task, a run trained in the calling process).

    A user error (missing data, an architecture that cannot take the data) and any failure
    inside training (out of memory, a bug, a trainer that raises) become a one-line reason:
    the study goes on."""
    from ablab.config import RunConfig
    from ablab.plugins import import_plugins
    from ablab.train.trainers import RunFailed, time_limit, train_one

    try:
        import_plugins(config.get("plugins") or [])  # consent: ABLAB_ALLOW_PLUGINS
        cfg = RunConfig.model_validate(config)
        if limit_here and cfg.timeout:
            import_training_modules()  # before the limit starts: see TRAINING_MODULES
        with time_limit(cfg.timeout if limit_here else None):
            result = train_one(cfg, on_epoch=on_epoch, artefacts=artefacts)
        payload = result.to_dict()
        if result.weights is not None:  # keep = best | last: safetensors bytes for the store
            payload["weights"] = result.weights_bytes()
        return "done", payload
    except RunFailed as exc:  # worded for the record already
        return "failed", str(exc)
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
    batched: bool | None = None,
    artefacts: list[str | None] | None = None,
    limit_here: bool = False,
) -> list[tuple[str, Any]]:
    """Train a unit of work: runs of one program, as one batched program when
    ``ablab.train.batched.can_batch`` accepts them (a single eligible run too, so its
    numbers do not depend on grouping), else each with ``run_task``. One
    ``(status, payload)`` per config, in order, as ``run_task`` gives. If batched training
    itself fails, each run is retried alone, so one bad run never fails its siblings.
    ``artefacts`` and ``limit_here``: as for ``run_task`` (one folder per config); batched
    seeds share one time limit, ``timeout`` × their number."""
    from ablab.config import RunConfig
    from ablab.plugins import import_plugins
    from ablab.train.batched import can_batch, fit_batched, worth_batching
    from ablab.train.trainers import RunFailed, RunTimedOut, check_outcome, time_limit

    artefacts = artefacts or [None] * len(configs)
    try:
        for c in configs:  # consent: ABLAB_ALLOW_PLUGINS (set by the executor, see below)
            import_plugins(c.get("plugins") or [])
        cfgs = [RunConfig.model_validate(c) for c in configs]
        if batched is None:  # not decided by the caller (``plan_units``)
            batched = builtin_only(cfgs) and worth_batching(cfgs) and can_batch(cfgs)
        batched = batched and builtin_only(cfgs)
    except Exception:  # noqa: BLE001 - run_task reports a bad config with its reason
        batched = False
    if batched:  # the built-in trainer's seeds, as one model
        limit = cfgs[0].timeout * len(cfgs) if limit_here and cfgs[0].timeout else None
        try:
            if limit:
                import_training_modules()  # before the limit starts: see TRAINING_MODULES
            with time_limit(limit):
                results = fit_batched(cfgs, on_epoch=on_epoch)
            outcomes: list[tuple[str, Any]] = []
            for cfg, result in zip(cfgs, results, strict=True):
                if result.status == "failed":  # this member alone (its program went on)
                    outcomes.append(("failed", result.error))
                    continue
                try:
                    outcomes.append(("done", check_outcome(result, cfg).to_dict()))
                except RunFailed as exc:
                    outcomes.append(("failed", str(exc)))
            return outcomes
        except RunTimedOut as exc:
            return [("failed", str(exc))] * len(cfgs)
        except Exception:  # noqa: BLE001 - fall back to one run at a time
            pass
    return [
        run_task(
            config, None if on_epoch is None else (lambda r, i=i: on_epoch(i, r)),
            artefacts[i], limit_here,
        )
        for i, config in enumerate(configs)
    ]


def parent_vouches_for_plugins(tasks: list[Task]) -> bool:
    """Whether workers may import the plugins these tasks name: yes when this (the
    parent) process has imported every one of them already, which it did only with the
    user's consent (``--allow-plugins``); the worker then imports exactly those."""
    from ablab.plugins import is_loaded

    return all(is_loaded(p) for t in tasks for p in (t.config.get("plugins") or []))


def allow_plugins_in_this_worker(allowed: bool) -> None:
    """In a worker process: take the parent's consent to import the tasks' plugins."""
    if allowed:
        from ablab.plugins import CONSENT_ENV

        os.environ[CONSENT_ENV] = "1"

"""Runs trained together: runs that share an architecture, data, batch size and epochs,
trained as ONE batched program (``torch.func.stack_module_state`` + ``functional_call`` +
``vmap``), whatever else differs among them: seeds (split, init, order), learning rate,
momentum, weight decay and the optimizer's other numeric settings, the weight init,
dropout rates, the loss, the schedule, early stopping and probes.

Each member keeps everything ``fit`` would give it: its run is started, its epochs closed
and its run finished by ``fit``'s own code, with its own callbacks and its own divergence
(:mod:`.program`). The parameters of all members live in stacked tensors (leading
dimension = member; :mod:`.stacked`) that one :class:`StackedOptimizer` steps with each
member's hyper-parameters (:mod:`.optimizer`): every supported optimizer is elementwise,
so member ``k`` sees the updates it would see alone.

Which runs may share a program is :func:`program_key` / :func:`can_batch`, and whether
to batch on a device at all :func:`worth_batching` (:mod:`.grouping`). A program's size is
bounded by the device's free memory (:mod:`.memory`); a program that runs out of memory
anyway is split in halves and retried here.

Results equal separate ``fit`` runs up to float rounding (batched vs. single matmuls); a
model with dropout draws its masks from a different random stream than ``fit`` (same
distribution, not the same masks). Without dropout a member's numbers do not depend on the
other members of its program (batched kernels compute each slice alike); with dropout its
masks are drawn with the whole program's.

Why: small models spend most of a step in per-op overhead (Python, dispatch, kernel
launches, optimizer loop); S runs in one step pay it once, and on a GPU one batched
(grouped) matmul or convolution keeps the device busy where a small one cannot. Where it
pays is the device's business: on a GPU; not on a CPU, where the executors train one run
per core instead.

Modules, top to bottom (a layers contract in ``pyproject.toml``): this face
(``fit_batched``: memory split and out-of-memory retries) -> ``program`` (one program,
start to finish) -> ``grouping`` (which runs share a program) | ``memory`` (bytes and
budgets) | ``stacked`` (the stacked model, data and losses) -> ``optimizer`` (the stacked
step).
"""

from __future__ import annotations

import torch

from ablab.config import RunConfig
from ablab.train.batched.grouping import (
    BATCHABLE_LOSSES,
    MEMBER_FIELDS,
    MEMBER_SUBFIELDS,
    can_batch,
    program_key,
    worth_batching,
)
from ablab.train.batched.memory import (
    MEMORY_SHARE,
    _is_out_of_memory,
    _out_of_memory_result,
    member_bytes,
    memory_budget,
    split_by_memory,
)
from ablab.train.batched.optimizer import (
    NADAM_MOMENTUM_DECAY,
    STACKED_OPTIMIZERS,
    StackedOptimizer,
)
from ablab.train.batched.program import (
    MemberEpochCallback,
    SeedEpochCallback,
    _fit_program,
    _one_by_one,
)
from ablab.train.batched.stacked import _MemberDropout, _StackedSplit  # noqa: F401  (tests)
from ablab.train.result import RunResult
from ablab.train.state import resolve_device, start_run

__all__ = [
    "BATCHABLE_LOSSES", "MEMBER_FIELDS", "MEMBER_SUBFIELDS", "MEMORY_SHARE",
    "NADAM_MOMENTUM_DECAY", "STACKED_OPTIMIZERS", "MemberEpochCallback", "SeedEpochCallback",
    "StackedOptimizer", "can_batch", "fit_batched", "fit_seeds", "member_bytes",
    "memory_budget", "program_key", "split_by_memory", "worth_batching",
]


def fit_batched(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None = None
) -> list[RunResult]:
    """Train the runs ``configs`` (one :func:`program_key`) together; one ``RunResult``
    per config, in order. Falls back to ``fit`` one by one when ``can_batch`` is false.
    Results equal ``fit``'s up to float rounding, and are bit-identical for a member
    whatever the other members of the program. On a CUDA device the runs are split into
    programs that fit its free memory (:func:`member_bytes`, :func:`memory_budget`); a
    program that runs out of memory anyway is split in halves and retried, and a run that
    does not fit alone is returned failed (the others go on).
    ``on_epoch(index, record)`` (optional) gets each member's epoch records.

    >>> from ablab.config import parse_run
    >>> cfgs = [parse_run({"epochs": 2, "seed": s, "dataset": "moons",
    ...                    "model": {"name": "mlp", "hidden": [8]},
    ...                    "optimizer": {"name": "sgd", "lr": lr}})
    ...         for s, lr in ((0, 0.1), (1, 0.01))]
    >>> [r.status for r in fit_batched(cfgs)]
    ['done', 'done']
    """
    if not can_batch(configs):
        return _one_by_one(configs, on_epoch)
    device = resolve_device(configs[0].device)
    budget = memory_budget(device)
    sizes = [len(configs)]
    if budget is not None and len(configs) > 1:
        sizes = split_by_memory(len(configs), member_bytes(start_run(configs[0], device)), budget)
    results: list[RunResult] = []
    for size in sizes:
        start = len(results)
        results += _fit_halving(configs[start : start + size], on_epoch, start)
    return results


def _fit_halving(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None, offset: int
) -> list[RunResult]:
    """``_fit_program``, split in halves and retried where it runs out of memory."""
    try:
        return _fit_program(configs, on_epoch, offset)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
        if not _is_out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(configs) == 1:
            return [_out_of_memory_result(configs[0], exc)]
    half = len(configs) // 2
    return _fit_halving(configs[:half], on_epoch, offset) + _fit_halving(
        configs[half:], on_epoch, offset + half
    )


#: The name from when only the seeds of one variant were trained together.
fit_seeds = fit_batched

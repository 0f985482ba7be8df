"""How much device memory a batched program needs, and how a program is cut to fit: a
measured estimate of one member's bytes (:func:`member_bytes`) against a share of the
device's free memory (:func:`memory_budget`) gives the programs' sizes
(:func:`split_by_memory`); a program that still runs out of memory is split in halves and
retried down to single runs (``fit_batched``), and a run that does not fit alone fails
alone (:func:`_out_of_memory_result`), as it would in ``fit``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from ablab.config import RunConfig, run_id
from ablab.train.result import RunResult
from ablab.train.state import RunState

#: Share of the device's free memory a program may plan to use (the rest: the CUDA
#: caching allocator's fragmentation, cuDNN workspaces, the other programs' growth).
MEMORY_SHARE = 0.7
#: Optimizer state tensors per parameter tensor.
_STATE_SLOTS = {"sgd": 1, "adam": 2, "adamw": 2, "nadam": 2, "rmsprop": 2}


def _bundle_bytes(run: RunState) -> int:
    splits = [run.bundle.train, run.bundle.val, run.bundle.test]
    seen, total = set(), 0
    for split in splits:
        if split is None or id(split) in seen:
            continue
        seen.add(id(split))
        total += split.x.nbytes + split.y.nbytes
    return total


@torch.no_grad()
def _activation_bytes(run: RunState, batch: int) -> int:
    """Bytes of every layer's output for one forward pass of ``batch`` training examples,
    measured with forward hooks on the run's model (a real forward on the run's device)."""
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    x = run.bundle.normalize(run.bundle.train.x[:batch])
    if x.dim() == 4 and run.memory_format != torch.contiguous_format:
        x = x.contiguous(memory_format=run.memory_format)
    handles = [m.register_forward_hook(count) for m in run.model.modules() if m is not run.model]
    try:
        run.model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return total * max(1, math.ceil(batch / max(1, x.shape[0])))


def member_bytes(run: RunState) -> int:
    """Device bytes one member of a program needs, measured on a started run: its data
    twice (the split tensors as they sit on the device, and the program's stacked copy),
    its parameters four times over plus the
    optimizer's state (weights, gradient, frozen copy, the schedule's and the probes'
    copies) and its layers' outputs for a training batch, kept for the backward pass and
    matched by their gradients (×3), and for an evaluation batch (×2)."""
    cfg = run.cfg
    train_batch = len(run.bundle.train) if cfg.batch_size == "full" else int(cfg.batch_size)
    n_params = sum(p.numel() * p.element_size() for p in run.model.parameters())
    slots = 3 + _STATE_SLOTS.get(cfg.optimizer.name, 2)
    train_act = _activation_bytes(run, train_batch) * 3
    eval_act = _activation_bytes(run, min(cfg.eval_batch_size, len(run.bundle.test))) * 2
    return 2 * _bundle_bytes(run) + n_params * slots + max(train_act, eval_act)


def memory_budget(device: torch.device) -> int | None:
    """Bytes a program may plan to use on ``device``: ``MEMORY_SHARE`` of a CUDA device's
    free memory now, divided among the workers that share the device
    (``ABLAB_GPU_SHARERS``, set by the local executor); None (no bound) on a CPU."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    try:
        sharers = max(1, int(os.environ.get("ABLAB_GPU_SHARERS", "1")))
    except ValueError:
        sharers = 1
    return int(free * MEMORY_SHARE / sharers)


def split_by_memory(n: int, per_member: int, budget: int | None) -> list[int]:
    """Sizes of the programs ``n`` members are trained in, as even as possible, each at
    most ``budget // per_member`` members (at least one).

    >>> split_by_memory(10, 100, None)
    [10]
    >>> split_by_memory(10, 100, 450)
    [4, 3, 3]
    """
    if budget is None or n == 0:
        return [n] if n else []
    most = max(1, budget // max(1, per_member))
    parts = math.ceil(n / most)
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _out_of_memory_result(cfg: RunConfig, exc: BaseException) -> RunResult:
    message = str(exc).splitlines()[0] if str(exc) else ""
    return RunResult(
        run_id=run_id(cfg), config=cfg.resolved(), status="failed",
        error=f"out of memory even alone ({type(exc).__name__}: {message})"[:500],
    )


"""Which runs train together as one batched program, and where that is worth doing.

:func:`program_key` is what the members of a program must share (everything in a run's
identity except what a member may hold on its own: seeds, the optimizer's settings, the
weight init, dropout rates, the loss, the schedule, early stopping, probes);
:func:`can_batch` says whether a set of runs can be one program; :func:`worth_batching`
whether the executors should batch at all on the runs' device. The executors
(``ablab.execute.base``) plan their units of work from these three.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import torch
from torch import nn

from ablab.config import ModelConfig, RunConfig
from ablab.identity import identity, run_id
from ablab.models import build_model
from ablab.models.flops import model_shape
from ablab.train.batched.optimizer import STACKED_OPTIMIZERS
from ablab.train.state import resolve_device

#: Top-level fields of a run that may differ among the members of one program.
MEMBER_FIELDS = (
    "seed", "init_seed", "order_seed", "loss", "schedule", "early_stopping", "probes",
    "probe_batch_size",
)
#: Fields inside a table that may differ among members (the optimizer's family may not).
MEMBER_SUBFIELDS = {"model": ("init",), "dataset": ("split_seed",)}
#: Losses known to work under vmap.
BATCHABLE_LOSSES = {"cross_entropy", "mse_softmax", "bce_onehot"}


def program_key(cfg: RunConfig | dict[str, Any]) -> str:
    """What runs must share to train as one program: their identity without the fields
    that may differ per member (``MEMBER_FIELDS``, ``MEMBER_SUBFIELDS``, the optimizer's
    settings but not its name), as canonical JSON. Dropout rates may differ too where the
    architectures are otherwise the same (the model's layers with every dropout rate
    masked: :func:`_structure`); a rate of 0 has no dropout layer, so it is another
    program."""
    data = identity(cfg, with_seed=False)
    for name in MEMBER_FIELDS:
        data.pop(name, None)
    for table, keys in MEMBER_SUBFIELDS.items():
        if isinstance(data.get(table), dict):
            data[table] = {k: v for k, v in data[table].items() if k not in keys}
    if isinstance(data.get("optimizer"), dict):
        data["optimizer"] = {"name": data["optimizer"]["name"]}
    structure = _structure_of(cfg)
    if structure is not None and isinstance(data.get("model"), dict):
        data["model"] = {k: v for k, v in data["model"].items() if "dropout" not in k}
        data["model_layers"] = structure
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _structure_of(cfg: RunConfig | dict[str, Any]) -> str | None:
    """The model's layers (its ``repr``) with every dropout rate masked, or None where the
    model cannot be built for its data here."""
    try:
        if not isinstance(cfg, RunConfig):
            cfg = RunConfig.model_validate(cfg)
        model = cfg.model.model_copy(update={"init": "default"})
        return _structure(model.model_dump_json(), model_shape(cfg))
    except Exception:  # noqa: BLE001 - then the dropout rates stay in the key
        return None


@functools.lru_cache(maxsize=512)
def _structure(model_json: str, shape: tuple[int, ...]) -> str:
    with torch.device("meta"):
        model = build_model(ModelConfig.model_validate_json(model_json), shape, 10)
    return _DROPOUT_RATE.sub(r"\1(p=*,", repr(model))


_DROPOUT_RATE = re.compile(r"(Dropout\w*)\(p=[^,)]+,")


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def can_batch(configs: list[RunConfig]) -> bool:
    """True when ``configs`` may train as one batched program: distinct runs with one
    :func:`program_key`; no weights kept (``keep`` comes from ``fit`` alone); an optimizer
    ``StackedOptimizer`` implements; losses that work under vmap; a model without
    batch norm (running statistics per member under vmap) that builds for the data.

    A single eligible config is batchable too (a program of one): where batching is
    ``worth_batching`` (a GPU), the executors train every eligible run through
    ``fit_batched``, because a member's numbers there are bit-identical whatever the
    program's size, so results do not depend on how a study was split into programs,
    resumed or retried.

    Every probe, per-member early stopping, schedules (``reduce_on_plateau`` too) and
    divergence are supported."""
    if not configs:
        return False
    if any(c.keep != "none" for c in configs):
        return False
    if len({run_id(c) for c in configs}) != len(configs):
        return False
    key = program_key(configs[0])
    if any(program_key(c) != key for c in configs[1:]):
        return False
    cfg = configs[0]
    if cfg.optimizer.name not in STACKED_OPTIMIZERS:
        return False
    if any(c.loss.name not in BATCHABLE_LOSSES for c in configs):
        return False
    try:
        # The layer structure only: on the meta device, without the configured init
        # (initialising meta tensors goes through slow Python reference kernels).
        with torch.device("meta"):
            model = build_model(
                cfg.model.model_copy(update={"init": "default"}), model_shape(cfg), 10
            )
    except Exception:  # noqa: BLE001 - unknown shape or a model that cannot build: no batching
        return False
    return not _has_batch_norm(model)


def worth_batching(configs: list[RunConfig]) -> bool:
    """Whether the executors should train these (batchable) runs together: on a CUDA
    device, yes. On a CPU, no: a CPU core is busy with arithmetic even on small steps, so
    runs trained together there were no faster than one after another, and one
    single-thread run per core already uses every core; and over hundreds of steps the
    batched matmuls' different rounding grows into different final accuracies, so batching
    on a CPU would also change results (measurements:
    ``benchmarks/results/batched-on-cpu.md``)."""
    return bool(configs) and resolve_device(configs[0].device).type == "cuda"

"""How much arithmetic a model does: forward FLOPs per example, counted on the real
architecture (the matrix multiplies of every linear and convolution layer).

Used to plan work (which runs batch their seeds, how many threads a run gets, how long a
study takes); it lives with the models because it reads nothing but a model and its
input shape.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from ablab.config import ModelConfig, RunConfig
from ablab.registry import DATASETS

#: Above this many parameters the FLOP count runs on the meta device (no memory taken).
_REAL_FORWARD_MAX_PARAMETERS = 50_000_000


def model_shape(cfg: RunConfig) -> tuple[int, ...]:
    """The input shape (without batch) of this run's dataset, from the registry."""
    return tuple(DATASETS.get(cfg.dataset.name).meta.get("shape", (2,)))


def forward_flops(cfg: RunConfig) -> float:
    """Forward FLOPs for one example of this run's model and data shape."""
    return _forward_flops(cfg.model.model_dump_json(), model_shape(cfg))


@functools.lru_cache(maxsize=256)
def _forward_flops(model_json: str, shape: tuple[int, ...]) -> float:
    """Counted with forward hooks on a meta-device model, as ``torch.utils.flop_counter``
    counts (2 × multiply-adds of matmuls and convolutions; biases, activations and
    pooling left out). Not FlopCounterMode itself: entering it imports torch._dynamo,
    about a second in every process that plans or groups runs (tested equal)."""
    from ablab.models import build_model

    model_cfg = ModelConfig.model_validate_json(model_json).model_copy(update={"init": "default"})
    total = 0.0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2.0 * module.in_features * output.numel()
        else:  # a convolution: each output value is a dot product over its receptive field
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2.0 * per_output * output.numel()

    with torch.device("meta"):  # the structure first: no memory, no arithmetic
        model = build_model(model_cfg, shape, 10).eval()
    device = "meta"
    if sum(p.numel() for p in model.parameters()) <= _REAL_FORWARD_MAX_PARAMETERS:
        # A real forward on uninitialised memory: meta-device matmuls run Python
        # decompositions that import torch._dynamo (a second); values do not matter here.
        model, device = model.to_empty(device="cpu"), "cpu"
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            m.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, *shape, device=device))
    return total

"""How a run's arithmetic is carried out: memory layout, precision, compilation.

These settings change how fast a run goes, not what it learns: ``memory_format`` and
``compile`` are left out of the run id (results agree up to float rounding); ``precision =
"bf16"`` changes the numbers and is part of the id.

- ``memory_format = "auto"``: conv nets (any ``Conv2d``) train channels-last, models and
  image batches alike; measured 1.2-1.6x faster training steps on this project's CPU
  (``benchmarks/throughput.py``, column "channels-last x") and the layout cuDNN prefers for
  tensor cores. MLPs are untouched.
- ``precision = "bf16"``: forward and loss under ``torch.autocast(dtype=bfloat16)``;
  weights, gradients, optimizer state and probes stay fp32, and bf16 needs no loss
  scaling, so the gradient probe reads true (unscaled) gradients.
- ``tf32``: TF32 tensor cores for fp32 matmuls and convolutions on a CUDA GPU, set for
  the whole process when a run starts (``use_tf32``): off unless the run asks for it, so a
  run computes in full fp32 on a GPU as on a CPU, and TF32's numbers carry their own run id.
  (PyTorch's own default is on for convolutions, off for matmuls.)
- ``compile``: the training and evaluation forward go through ``torch.compile``
  (``"reduce-overhead"`` captures CUDA graphs on a GPU). Probes run the eager module, so
  their hooks never enter a compiled graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Forward = Callable[[torch.Tensor], torch.Tensor]


def memory_format_for(model: nn.Module, setting: str) -> torch.memory_format:
    """The layout a model trains in: channels-last for conv nets under ``"auto"``."""
    if setting == "channels_last":
        return torch.channels_last
    if setting == "contiguous":
        return torch.contiguous_format
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.channels_last if has_conv else torch.contiguous_format


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context a forward pass runs in for ``precision``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_tf32(enabled: bool) -> None:
    """TF32 on or off for CUDA matmuls and cuDNN convolutions (a no-op without CUDA)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def compiled_forward(model: nn.Module, setting: bool | str) -> Forward:
    """``model`` itself, or ``torch.compile(model, mode=...)`` when compiling is asked for.
    Compilation happens lazily, at the first call."""
    if setting is False:
        return model
    mode = None if setting in (True, "default") else str(setting)
    return torch.compile(model, mode=mode)

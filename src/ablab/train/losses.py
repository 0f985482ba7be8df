"""Loss functions: each maps (logits, integer targets) to a scalar.

Variants in a study may train with different losses, whose values are on different
scales; every run therefore also records softmax cross-entropy on the test set
(``test_cross_entropy``), the common yardstick the report compares by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from ablab.registry import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@LOSSES.register("cross_entropy", "softmax cross-entropy (optional label smoothing)")
def cross_entropy(*, label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0) -> LossFn:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    return loss


@LOSSES.register("mse_softmax", "mean squared error between softmax outputs and one-hot targets")
def mse_softmax() -> LossFn:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return F.mse_loss(torch.softmax(logits, dim=-1), onehot)

    return loss


@LOSSES.register("bce_onehot", "binary cross-entropy with logits against one-hot targets")
def bce_onehot() -> LossFn:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, onehot)

    return loss


def build_loss(name: str, options: dict) -> LossFn:
    return LOSSES.get(name).fn(**options)

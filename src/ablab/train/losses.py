"""Loss functions: each maps (model outputs, targets) to a scalar.

Classification losses take logits (N×K) and integer labels. Variants in a study may train
with different losses, whose values are on different scales; every classification run
therefore also records softmax cross-entropy on the test set (``test_cross_entropy``), the
common yardstick the report compares by.

Regression losses (registry meta ``task = "regression"``: ``mse``, ``mae``, ``huber``) take
the model's single output (N×1) and a float target (N), both in training units (the
standardised target when the dataset standardises it); a regression run's common
yardsticks are its RMSE, MAE and R² in the target's own units (``ablab.train.metrics``).

Each entry imports torch when it builds its loss, so registering them needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ablab.registry import LOSSES

if TYPE_CHECKING:  # each loss imports torch when it is built: listing them needs none
    import torch

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@LOSSES.register("cross_entropy", "softmax cross-entropy (optional label smoothing)")
def cross_entropy(*, label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0) -> LossFn:
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    return loss


@LOSSES.register("mse_softmax", "mean squared error between softmax outputs and one-hot targets")
def mse_softmax() -> LossFn:
    import torch
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return F.mse_loss(torch.softmax(logits, dim=-1), onehot)

    return loss


@LOSSES.register("bce_onehot", "binary cross-entropy with logits against one-hot targets")
def bce_onehot() -> LossFn:
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, onehot)

    return loss


def _flat(output: torch.Tensor) -> torch.Tensor:
    """A regression model's N×1 output as N values."""
    return output.reshape(output.shape[0], -1)[:, 0]


@LOSSES.register("mse", "regression: mean squared error", task="regression")
def mse() -> LossFn:
    import torch.nn.functional as F

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(_flat(output), target)

    return loss


@LOSSES.register("mae", "regression: mean absolute error", task="regression")
def mae() -> LossFn:
    import torch.nn.functional as F

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(_flat(output), target)

    return loss


@LOSSES.register("huber", "regression: Huber loss (squared below delta, linear above)",
                 task="regression")
def huber(*, delta: Annotated[float, Field(gt=0.0)] = 1.0) -> LossFn:
    import torch.nn.functional as F

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(_flat(output), target, delta=delta)

    return loss


def loss_task(name: str) -> str:
    """What a loss is for: "regression" or "classification" (its registry meta ``task``;
    a loss that does not say is a classification loss)."""
    return LOSSES.get(name).meta.get("task", "classification")


def build_loss(name: str, options: dict) -> LossFn:
    return LOSSES.get(name).fn(**options)

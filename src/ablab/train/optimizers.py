"""Optimizers: thin registry entries over ``torch.optim`` with PyTorch's defaults (torch is
imported when one is built)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ablab.errors import FieldError
from ablab.registry import OPTIMIZERS

if TYPE_CHECKING:  # each optimizer imports torch when it is built
    import torch

LearningRate = Annotated[float, Field(gt=0.0)]
Decay = Annotated[float, Field(ge=0.0)]
Momentum = Annotated[float, Field(ge=0.0, lt=1.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


def _nesterov_needs_momentum(options: dict[str, Any]) -> None:
    if options["nesterov"] and options["momentum"] <= 0:
        raise FieldError("nesterov", "nesterov = true needs momentum > 0")


@OPTIMIZERS.register("sgd", "SGD, optional (Nesterov) momentum", check=_nesterov_needs_momentum)
def sgd(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: LearningRate = 0.01,
    momentum: Momentum = 0.0,
    nesterov: bool = False,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
        foreach=True,
    )


@OPTIMIZERS.register("adam", "Adam")
def adam(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: LearningRate = 1e-3,
    beta1: Beta = 0.9,
    beta2: Beta = 0.999,
    eps: Annotated[float, Field(gt=0.0)] = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, foreach=True
    )


@OPTIMIZERS.register("adamw", "AdamW (decoupled weight decay)")
def adamw(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: LearningRate = 1e-3,
    beta1: Beta = 0.9,
    beta2: Beta = 0.999,
    eps: Annotated[float, Field(gt=0.0)] = 1e-8,
    weight_decay: Decay = 0.01,
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, foreach=True
    )


@OPTIMIZERS.register("nadam", "NAdam (Keras's default lr 1e-3)")
def nadam(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: LearningRate = 1e-3,
    beta1: Beta = 0.9,
    beta2: Beta = 0.999,
    eps: Annotated[float, Field(gt=0.0)] = 1e-7,  # Keras's epsilon
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.NAdam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay
    )


@OPTIMIZERS.register("rmsprop", "RMSprop (PyTorch defaults: lr 1e-2, alpha 0.99)")
def rmsprop(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: LearningRate = 1e-2,
    alpha: Beta = 0.99,
    momentum: Momentum = 0.0,
    eps: Annotated[float, Field(gt=0.0)] = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(
        params, lr=lr, alpha=alpha, momentum=momentum, eps=eps, weight_decay=weight_decay
    )


#: SGD, Adam and AdamW update all parameters with one multi-tensor (``foreach``) kernel
#: per operation, on the CPU too (PyTorch's CPU default is a Python loop over the
#: tensors): the same arithmetic in the same order, bit for bit the same weights
#: (tests/test_fastrun.py), 0.1-0.45 ms less per step on the moons MLP. NAdam's
#: multi-tensor path rounds differently and RMSprop's is slower on the CPU: both keep
#: PyTorch's default.
FOREACH_OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(name: str, options: dict, params) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name).fn(params, **options)

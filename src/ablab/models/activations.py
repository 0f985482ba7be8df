"""Activation functions a study may choose (``model.activation``).

Each entry returns a fresh ``nn.Module``; models never call these directly but go through
``ModelSpec.act()``, which wraps the module in :class:`ablab.models.core.Activation` so
probes can find activation layers.

No torch until an activation is built: each entry imports ``torch.nn`` when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ablab.registry import ACTIVATIONS

if TYPE_CHECKING:
    from torch import nn


@ACTIVATIONS.register("relu", "ReLU")
def relu() -> nn.Module:
    from torch import nn

    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu", "LeakyReLU")
def leaky_relu(*, negative_slope: Annotated[float, Field(gt=0, lt=1)] = 0.01) -> nn.Module:
    from torch import nn

    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("elu", "ELU")
def elu(*, alpha: Annotated[float, Field(gt=0)] = 1.0) -> nn.Module:
    from torch import nn

    return nn.ELU(alpha)


@ACTIVATIONS.register("gelu", "GELU (exact, erf-based)")
def gelu() -> nn.Module:
    from torch import nn

    return nn.GELU()


@ACTIVATIONS.register("silu", "SiLU / swish")
def silu() -> nn.Module:
    from torch import nn

    return nn.SiLU()


@ACTIVATIONS.register("tanh", "Tanh")
def tanh() -> nn.Module:
    from torch import nn

    return nn.Tanh()


@ACTIVATIONS.register("sigmoid", "Logistic sigmoid")
def sigmoid() -> nn.Module:
    from torch import nn

    return nn.Sigmoid()


@ACTIVATIONS.register("softplus", "Softplus")
def softplus(*, beta: Annotated[float, Field(gt=0)] = 1.0) -> nn.Module:
    from torch import nn

    return nn.Softplus(beta=beta)


@ACTIVATIONS.register("mish", "Mish")
def mish() -> nn.Module:
    from torch import nn

    return nn.Mish()

"""The module every activation layer of a built model is: a registered activation wrapped
so probes can find it (``isinstance(m, Activation)``) and know which one it is. Built by
``ModelSpec.act()`` (:mod:`ablab.models.spec`) when a model is built; imports torch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ablab.registry import ACTIVATIONS


class Activation(nn.Module):
    """A registered activation, wrapped so probes can find it (``isinstance(m, Activation)``)
    and know which one it is (``.name``)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None):
        super().__init__()
        entry = ACTIVATIONS.get(name)
        self.name = name
        self.options = entry.validate_options(dict(options or {}))
        self.fn = entry.fn(**self.options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"name={self.name!r}{opts}"

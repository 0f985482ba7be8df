"""What every architecture receives (:class:`ModelSpec`) and what input it needs, without
torch: the registering modules and the plan checks import this, the builders and
:mod:`ablab.models.core` use it when a model is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ablab.errors import ConfigError
from ablab.registry import Entry

if TYPE_CHECKING:
    from ablab.config import ModelConfig
    from ablab.models.activation_module import Activation

#: The pooling layers an architecture's ``pool`` option may choose.
PoolKind = Literal["max", "overlap", "avg"]

#: Generic model options a study may vary → how a builder honours each.
GENERIC_OPTIONS = {
    "activation": "spec.act()",
    "dropout": "spec.dropout_or(default)",
    "batch_norm": "spec.batch_norm_or(default)",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything an architecture needs besides its own options.

    ``dropout`` / ``batch_norm`` are None when the study leaves them to the architecture's
    own default; architectures read them through :meth:`dropout_or` / :meth:`batch_norm_or`.
    """

    input_shape: tuple[int, ...]  # (C, H, W) for images, (F,) for tabular data
    num_classes: int
    activation_name: str = "relu"
    activation_options: dict[str, Any] = field(default_factory=dict)
    dropout: float | None = None
    batch_norm: bool | None = None
    #: The generic options the builder asked for (``activation``, ``dropout``,
    #: ``batch_norm``), filled as it calls :meth:`act`, :meth:`dropout_or` and
    #: :meth:`batch_norm_or`: what a study may vary for this model (see
    #: :func:`check_varied_options`).
    reads: set[str] = field(default_factory=set, compare=False, repr=False)
    #: The architecture's own default of each generic option it read (the ``default``
    #: given to :meth:`dropout_or` / :meth:`batch_norm_or`), for ``ablab list models``.
    defaults: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int
    ) -> ModelSpec:
        return cls(
            input_shape=tuple(int(d) for d in input_shape),
            num_classes=int(num_classes),
            activation_name=cfg.activation.name,
            activation_options=cfg.activation.options,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    def act(self) -> Activation:
        """A new activation module (never shared, so each layer is its own module)."""
        self.reads.add("activation")
        from ablab.models.activation_module import Activation  # torch: a model is built

        return Activation(self.activation_name, self.activation_options)

    def dropout_or(self, default: float) -> float:
        self.reads.add("dropout")
        self.defaults.setdefault("dropout", default)
        return default if self.dropout is None else self.dropout

    def batch_norm_or(self, default: bool) -> bool:
        self.reads.add("batch_norm")
        self.defaults.setdefault("batch_norm", default)
        return default if self.batch_norm is None else self.batch_norm


class InputTooSmall(ValueError):
    """Raised by an architecture whose layers cannot take the given input shape."""


def input_requirement(entry: Entry) -> str | None:
    """What input an architecture needs, in words; None when it takes any shape."""
    min_hw = entry.meta.get("min_hw")
    if min_hw is None:
        return None
    return f"image input (C, H, W) with H, W >= {min_hw}"


def shape_error(entry: Entry, input_shape: tuple[int, ...]) -> ConfigError:
    need = input_requirement(entry) or "a different input shape"
    return ConfigError(
        f"model.name: {entry.name!r} needs {need}; the dataset gives shape {input_shape}"
    )


def check_input(entry: Entry, input_shape: tuple[int, ...]) -> None:
    min_hw = entry.meta.get("min_hw")
    if min_hw is None:
        return
    if len(input_shape) != 3 or min(input_shape[1:]) < min_hw:
        raise shape_error(entry, input_shape)

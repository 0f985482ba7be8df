"""Building a model from its config with input-shape checks, the layer listings probes
use, weight initialisation, and :func:`check_model` for plugin authors. What every
architecture receives (:class:`ModelSpec`) is in :mod:`ablab.models.spec` and the
activation wrapper probes look for (:class:`Activation`) in
:mod:`ablab.models.activation_module`.

Architectures are registered in :mod:`ablab.models.architectures`; nothing here knows
their names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ablab.config import parse_init
from ablab.errors import ConfigError, FieldError
from ablab.models.activation_module import Activation
from ablab.models.plan_check import (  # noqa: F401  (also found here by earlier callers)
    architecture_defaults,
    check_varied_options,
    declared_honours,
    options_read,
)
from ablab.models.spec import (
    GENERIC_OPTIONS,
    InputTooSmall,
    ModelSpec,
    check_input,
    shape_error,
)
from ablab.registry import MODELS, Entry

if TYPE_CHECKING:
    from ablab.config import ModelConfig


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model ``cfg`` names, for inputs of ``input_shape`` and ``num_classes`` outputs,
    initialised as ``cfg.init`` says. Raises ConfigError (one line) when the architecture
    cannot take the input shape."""
    entry = MODELS.get(cfg.name)
    spec = ModelSpec.from_config(cfg, input_shape, num_classes)
    try:
        options = entry.validate_options(cfg.options)
    except FieldError as exc:
        raise ConfigError(f"model.{exc.path}: {exc.message}") from None
    check_input(entry, spec.input_shape)
    try:
        model = entry.fn(spec, **options)
    except InputTooSmall:
        raise shape_error(entry, spec.input_shape) from None
    apply_init(model, cfg.init)
    return model


# ---------------------------------------------------------------- layer listings

_PARAM_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def activation_layers(model: nn.Module) -> list[tuple[str, Activation]]:
    """``(qualified name, module)`` of every activation, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Activation)]


def parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every conv / linear / batch-norm layer with a weight,
    in forward order."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, _PARAM_LAYERS) and getattr(m, "weight", None) is not None
    ]


# ---------------------------------------------------------------- initialisation

_INITIALIZERS: dict[str, Callable[..., Any]] = {
    "normal": lambda w, mean, std: nn.init.normal_(w, mean, std),
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": nn.init.xavier_normal_,
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
}


def apply_init(model: nn.Module, init_spec: str) -> nn.Module:
    """Re-initialise every conv / linear weight as ``init_spec`` says and zero their biases.
    ``"default"`` keeps PyTorch's own initialisation; batch norm is never touched."""
    try:
        kind, args = parse_init(init_spec)
    except ValueError as exc:
        raise ConfigError(f"model.init: {exc}") from None
    if kind == "default":
        return model
    init_fn = _INITIALIZERS[kind]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                init_fn(m.weight, *args)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- varied options read

# ---------------------------------------------------------------- a plugin author's check

#: Each generic option, two settings that must build different networks when the option is
#: honoured, and how a builder honours it.
_CHECKED_SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "activation": ({"activation": {"name": "relu"}}, {"activation": {"name": "tanh"}}),
    "dropout": ({"dropout": 0.0}, {"dropout": 0.5}),
    "batch_norm": ({"batch_norm": False}, {"batch_norm": True}),
}


@dataclass
class ModelCheck:
    """What :func:`check_model` found: for each generic option (activation, dropout,
    batch_norm, init) ``"honoured"`` or ``"ignored"``, with one line of why each."""

    name: str
    input_shape: tuple[int, ...]
    status: dict[str, str]
    why: dict[str, str]

    @property
    def ignored(self) -> list[str]:
        return [k for k, v in self.status.items() if v != "honoured"]

    @property
    def ok(self) -> bool:
        return not self.ignored

    def lines(self) -> list[str]:
        return [f"{k}: {self.status[k]}: {self.why[k]}" for k in self.status]

    def __str__(self) -> str:
        head = f"model {self.name!r} on input {self.input_shape}:"
        return "\n".join([head, *("  " + line for line in self.lines())])


def _build_with(entry: Entry, options: dict[str, Any], generic: dict[str, Any],
                input_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, ModelSpec]:
    from ablab.config import ModelConfig

    cfg = ModelConfig.model_validate({"name": entry.name, **options, **generic})
    spec = ModelSpec.from_config(cfg, input_shape, num_classes)
    model = entry.fn(spec, **entry.validate_options(cfg.options))
    return model, spec


def check_model(
    name: str,
    options: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 3,
) -> ModelCheck:
    """Which generic options (``activation``, ``dropout``, ``batch_norm``, ``init``) the
    registered model ``name`` honours: a ``check_estimator`` for plugin authors.

    Builds the model with two settings of each option and compares the networks (their
    module listing); also records what the builder asked the spec for (``spec.act()``,
    ``spec.dropout_or(default)``, ``spec.batch_norm_or(default)``: what a study's plan
    check relies on) and compares it with a declared ``honours=(...)``. ``init`` is honoured
    when the model has conv / linear layers (``apply_init`` re-initialises those).
    ``input_shape``: one example's shape (default (3, 32, 32) for a model that needs images,
    else tried as (3, 32, 32), then (20,))."""
    entry = MODELS.get(name)
    options = dict(options or {})
    model, shape = _build_on_some_shape(entry, name, options, input_shape, num_classes)
    found = {option: _judge_option(entry, options, option, settings, shape, num_classes)
             for option, settings in _CHECKED_SETTINGS.items()}
    found["init"] = _judge_init(entry, options, model, shape, num_classes)
    status = {option: verdict for option, (verdict, _) in found.items()}
    return ModelCheck(name, tuple(shape), status, {k: why for k, (_, why) in found.items()})


def _build_on_some_shape(entry: Entry, name: str, options: dict[str, Any],
                         input_shape: tuple[int, ...] | None, num_classes: int):
    """(model, shape): built and run on the first input shape it takes (see check_model);
    ConfigError saying which shape to give when none works."""
    shapes = [tuple(input_shape)] if input_shape else [(3, 32, 32), (20,)]
    if input_shape is None and entry.meta.get("min_hw"):
        side = max(32, int(entry.meta["min_hw"]))
        shapes = [(3, side, side)]
    error: Exception | None = None
    for shape in shapes:
        try:
            model, _ = _build_with(entry, options, {}, shape, num_classes)
            with torch.no_grad():  # takes the input (and lazy layers get their sizes)
                model.eval()(torch.zeros(2, *shape))
            return model, shape
        except Exception as exc:  # noqa: BLE001 - tried on the next shape, else reported
            error = exc
    raise ConfigError(
        f"model {name!r}: cannot be built on input {shapes[-1]} "
        f"({error.__class__.__name__}: {' '.join(str(error).split())[:120]}); "
        "give the input shape it takes (--input-shape 3,32,32 or input_shape=(3, 32, 32))"
    )


def _judge_option(entry: Entry, options: dict[str, Any], option: str,
                  settings: tuple[dict, dict], shape: tuple[int, ...], num_classes: int):
    """("honoured" | "ignored", why) for one generic option: built at two settings, did the
    builder ask the spec for it, do the networks differ, does a declared ``honours`` agree."""
    low, high = settings
    declared = declared_honours(entry, entry.validate_options(options))
    a, spec_a = _build_with(entry, options, low, shape, num_classes)
    b, spec_b = _build_with(entry, options, high, shape, num_classes)
    read = option in (spec_a.reads | spec_b.reads)
    differs = str(a) != str(b)
    how = GENERIC_OPTIONS[option]
    said = f"{option}={_setting(low[option])} and {option}={_setting(high[option])}"
    if read and differs:
        status, why = "honoured", f"the builder calls {how}; {said} build different networks"
    elif read:
        status, why = "honoured", (
            f"the builder calls {how}; {said} list the same modules (used in forward?)")
    elif differs:
        status, why = "ignored", (
            f"{said} build different networks, but the builder never calls {how}, so a "
            f"study varying model.{option} is refused; call {how}")
    else:
        status, why = "ignored", (
            f"the builder never calls {how} and {said} build the same network; call "
            f"{how} where the layer is made")
    if declared is not None and (option in declared) != (status == "honoured"):
        # a study trusts the declaration: an undeclared option may not be varied
        status = "ignored"
        word = "declares" if option in declared else "leaves it out of"
        given = entry.meta["honours"]
        shown = tuple(given) if not callable(given) else tuple(sorted(declared))
        why += f"; but its registry entry {word} honours={shown!r}"
    return status, why


def _judge_init(entry: Entry, options: dict[str, Any], model: nn.Module,
                shape: tuple[int, ...], num_classes: int) -> tuple[str, str]:
    """("honoured" | "ignored", why) for ``model.init``: it re-initialises conv / linear
    layers, so a model needs some, and ``apply_init`` must work on a freshly built one."""
    layers = [m for m in model.modules()
              if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    covered = sum(p.numel() for m in layers for p in m.parameters(recurse=False))
    total = count_parameters(model)
    fresh, _ = _build_with(entry, options, {}, shape, num_classes)
    try:
        apply_init(fresh, "normal(0, 0.01)")
        init_error = None
    except Exception as exc:  # noqa: BLE001 - reported as the finding
        init_error = " ".join(str(exc).split())[:100]
    if init_error is not None:
        return "ignored", (
            f"model.init fails on the built model ({init_error}); lazy layers "
            "(nn.LazyLinear) have no weights to initialise until the first batch: give "
            "them their input size from spec.input_shape")
    if layers:
        return "honoured", (
            f"init re-initialises its {len(layers)} conv/linear layers ({covered:,} of "
            f"{total:,} parameters)")
    return "ignored", (
        "the model has no nn.Linear or nn.Conv layers, which is what model.init "
        "re-initialises; build it from them")


def _setting(value: Any) -> str:
    return value["name"] if isinstance(value, dict) else str(value).lower()

"""What every architecture receives (:class:`ModelSpec`), the activation wrapper probes look
for (:class:`Activation`), building a model from its config with input-shape checks, and
weight initialisation.

Architectures are registered in :mod:`ablab.models.architectures`; nothing here knows
their names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ablab.config import parse_init
from ablab.errors import ConfigError, FieldError
from ablab.registry import ACTIVATIONS, MODELS, Entry

if TYPE_CHECKING:
    from ablab.config import ModelConfig


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


def _shape_error(entry: Entry, input_shape: tuple[int, ...]) -> ConfigError:
    need = input_requirement(entry) or "a different input shape"
    return ConfigError(
        f"model.name: {entry.name!r} needs {need}; the dataset gives shape {input_shape}"
    )


def check_input(entry: Entry, input_shape: tuple[int, ...]) -> None:
    min_hw = entry.meta.get("min_hw")
    if min_hw is None:
        return
    if len(input_shape) != 3 or min(input_shape[1:]) < min_hw:
        raise _shape_error(entry, input_shape)


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
        raise _shape_error(entry, spec.input_shape) from None
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

#: Generic model options a study may vary → how a builder honours each.
GENERIC_OPTIONS = {
    "activation": "spec.act()",
    "dropout": "spec.dropout_or(default)",
    "batch_norm": "spec.batch_norm_or(default)",
}


def _generic_option(path: str) -> str | None:
    """``model.dropout`` → ``dropout``; ``model.activation.negative_slope`` → ``activation``."""
    parts = path.split(".")
    if parts[0] != "model" or len(parts) < 2 or parts[1] not in GENERIC_OPTIONS:
        return None
    return parts[1]


def options_read(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> set[str]:
    """The generic options the builder of ``cfg`` reads. A registry entry may declare them
    (``honours=("dropout", ...)`` in its meta); otherwise the model is built once on the
    meta device (no memory, no compute) and the spec records what the builder asked for."""
    entry = MODELS.get(cfg.name)
    declared = entry.meta.get("honours")
    if declared is not None:
        return set(declared)
    spec = ModelSpec.from_config(cfg, input_shape, num_classes)
    with torch.device("meta"):
        entry.fn(spec, **entry.validate_options(cfg.options))
    return set(spec.reads)


def architecture_defaults(entry: Entry) -> dict[str, Any]:
    """What a model does with the generic options a study leaves unset, e.g.
    ``{"dropout": 0.5, "batch_norm": True}`` for simple_cnn: found by building it once, with
    its default options, on the meta device (no memory, no compute) for a 3×32×32 input
    (larger where the model needs it). Options it never reads are absent; {} when the
    builder cannot be built that way."""
    side = max(32, int(entry.meta.get("min_hw") or 0))
    spec = ModelSpec(input_shape=(3, side, side), num_classes=10)
    try:
        with torch.device("meta"):
            entry.fn(spec, **entry.validate_options({}))
    except Exception:  # noqa: BLE001 - a builder that needs real data: nothing to say
        return {}
    return dict(spec.defaults)


def check_varied_options(study: Any) -> None:
    """Refuse a factor varying a generic model option (activation, dropout, batch_norm)
    that some variant's model builder never reads: its levels would train identical
    networks and the report would still give a verdict. A model that cannot be built
    cheaply here (unknown input shape, a builder that needs real data) is left to the
    second line of defence, the analysis' check for bit-identical levels."""
    from ablab.registry import DATASETS

    cache: dict[tuple[str, str, tuple[int, ...]], set[str] | None] = {}
    first_seed = study.runs[0].seed if study.runs else None
    for i, factor in enumerate(study.factors):
        for path in factor:
            option = _generic_option(path)
            if option is None:
                continue
            for run in study.runs:
                if run.seed != first_seed:
                    continue
                cfg = run.config
                meta = DATASETS.get(cfg.dataset.name).meta
                shape = meta.get("shape")
                if shape is None:
                    continue
                shape = tuple(int(d) for d in shape)
                key = (cfg.model.name, repr(sorted(cfg.model.options.items())), shape)
                if key not in cache:
                    try:
                        cache[key] = options_read(cfg.model, shape, int(meta.get("classes", 10)))
                    except Exception:  # noqa: BLE001 - not buildable here: analysis checks
                        cache[key] = None
                read = cache[key]
                if read is not None and option not in read:
                    how = GENERIC_OPTIONS[option]
                    raise ConfigError(
                        f'{study.source}: vary[{i}]."{path}": model {cfg.model.name!r} never '
                        f"reads {option} (its builder does not call {how}), so every level "
                        f"would train the same network; call {how} in the builder (or "
                        f"register it with honours=(...)), or stop varying {path}"
                    )


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
    declared = entry.meta.get("honours")
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
        why += f"; but its registry entry {word} honours={tuple(declared)!r}"
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

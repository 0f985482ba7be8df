"""Registries of named components (datasets, models, activations, losses, optimizers,
schedules, probes, trainers).

A component is one decorated function. Its keyword-only parameters (after ``*``), with
their annotations and defaults, are the options a study file may give it; the registry
turns them into a pydantic model, so options are validated with the same strictness as
the rest of a config and unknown options are rejected::

    @MODELS.register("mlp", "Multi-layer perceptron on flattened inputs")
    def mlp(spec, *, hidden: list[PositiveInt] = [256, 128]) -> nn.Module: ...

This module sits at the far left of the pipeline: config validates names against the
registries, and the component packages fill them when ``ablab`` is imported.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import annotated_types
import pydantic

from ablab.errors import FieldError


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    summary: str
    options: type[pydantic.BaseModel]
    meta: dict[str, Any] = field(default_factory=dict)

    def option_defaults(self) -> dict[str, Any]:
        return {k: f.default for k, f in self.options.model_fields.items()}

    def validate_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Validate ``given`` against this entry's options; return all options resolved
        (defaults filled in). Raises FieldError naming the option."""
        try:
            resolved = self.options.model_validate(given).model_dump()
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(self.options.model_fields) or "none"
                msg = f"unknown option for {self.name!r}; its options are: {allowed}"
                close = difflib.get_close_matches(loc, list(self.options.model_fields), n=1)
                if close:
                    msg += f" (did you mean {close[0]!r}?)"
            elif err["type"] == "missing":
                msg = f"required option of {self.name!r} is missing"
            else:
                msg = domain_message(self.options, err) or err["msg"]
            raise FieldError(loc, msg) from None
        check = self.meta.get("check")
        if check is not None:  # cross-option rules, e.g. nesterov needs momentum
            check(resolved)
        return resolved


def _options_model(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """The pydantic model of ``fn``'s options: its keyword-only parameters. Only their
    annotations are evaluated (a string annotation in ``fn``'s module globals), so a
    return annotation such as ``-> nn.Module`` needs no torch to register a component."""
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        if isinstance(annotation, str):  # ``from __future__ import annotations``
            annotation = eval(annotation, getattr(fn, "__globals__", {}))  # noqa: S307
        default = p.default if p.default is not inspect.Parameter.empty else ...
        fields[p.name] = (annotation, default)
    return pydantic.create_model(
        f"{name}_options",
        __config__=pydantic.ConfigDict(
            extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False
        ),
        **fields,
    )


# ---------------------------------------------------------------- numeric domains
#
# Every number a run or study file gives is finite (models and options are validated with
# ``allow_inf_nan=False``: TOML's ``inf``, ``nan`` and an overflowing ``1e400`` are refused)
# and lies in its own domain, declared once where the field or option is declared:
# ``Annotated[float, Field(gt=0)]`` on a registered function's keyword-only parameter or
# on a config model's field. pydantic enforces it and puts it in the JSON Schema
# (``exclusiveMinimum`` ...), so ``ablab schema`` and ``ablab list`` show the same domain;
# :func:`domain_message` turns a violation into one message naming the whole domain.

#: pydantic error types that mean "a number outside its domain".
DOMAIN_ERRORS = frozenset({
    "finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
})


def _bounds(annotation: Any, metadata: list[Any]) -> tuple[dict[str, Any], type | None]:
    """The bounds (``gt``, ``ge``, ``lt``, ``le``) declared on a field and the number type
    they bound, looking inside ``Optional`` / unions / ``Annotated``."""
    found: dict[str, Any] = {}
    for item in metadata:
        for key in ("gt", "ge", "lt", "le"):
            if isinstance(item, getattr(annotated_types, key.capitalize())):
                found[key] = getattr(item, key)
        for inner in getattr(item, "metadata", ()):  # a FieldInfo inside Annotated
            found.update(_bounds(Any, [inner])[0])
    kind = annotation if annotation in (int, float) else None
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        inner, inner_kind = _bounds(base, list(extra))
        return {**inner, **found}, inner_kind or kind
    for arg in typing.get_args(annotation):
        if arg is type(None):
            continue
        inner, inner_kind = _bounds(arg, [])
        if inner_kind is not None:
            return {**inner, **found}, inner_kind
    return found, kind


def field_domain(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The domain of the number at ``loc`` inside ``model`` (``("optimizer", "lr")``,
    ``("seeds", 2)``) in words: ``a finite number > 0``, ``a finite number in [0, 1)``,
    ``an integer >= 0``; None when ``loc`` is not a declared numeric field."""
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        if isinstance(part, int):  # an item of a list
            args = [a for a in typing.get_args(_strip(annotation)) if a is not type(None)]
            if not args:
                return None
            annotation, metadata = args[0], []
            continue
        cls = _model_in(annotation)
        info = getattr(cls, "model_fields", {}).get(part) if cls is not None else None
        if info is None:
            return None
        annotation, metadata = info.annotation, list(info.metadata)
    bounds, kind = _bounds(annotation, metadata)
    if kind is None:
        return None
    return interval_text(bounds, kind)


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` → X; ``X | None`` → X."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _model_in(annotation: Any) -> type[pydantic.BaseModel] | None:
    annotation = _strip(annotation)
    candidates = [annotation, *typing.get_args(annotation)]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, pydantic.BaseModel):
            return c
    return None


def interval_text(bounds: dict[str, Any], kind: type = float) -> str:
    """``{"ge": 0, "lt": 1}`` → ``a finite number in [0, 1)``; ``{"gt": 0}`` →
    ``a finite number > 0``."""
    what = "an integer" if kind is int else "a finite number"

    def num(v: Any) -> str:
        if isinstance(v, int) and v >= 2**16 and v & (v - 1) == 0:
            return f"2**{v.bit_length() - 1}"  # a seed's bound
        return f"{v:g}" if isinstance(v, float) else str(v)

    lo = ("gt", bounds["gt"]) if "gt" in bounds else ("ge", bounds["ge"]) if "ge" in bounds \
        else None
    hi = ("lt", bounds["lt"]) if "lt" in bounds else ("le", bounds["le"]) if "le" in bounds \
        else None
    if lo and hi:
        left = "(" if lo[0] == "gt" else "["
        right = ")" if hi[0] == "lt" else "]"
        return f"{what} in {left}{num(lo[1])}, {num(hi[1])}{right}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    if lo or hi:
        key, value = lo or hi
        return f"{what} {signs[key]} {num(value)}"
    return what


def domain_message(model: type[pydantic.BaseModel], err: dict[str, Any]) -> str | None:
    """For a pydantic error about a number outside its domain (``inf``, ``nan``, ``-0.1``):
    ``must be a finite number > 0 (got inf)``; None for any other error."""
    if err.get("type") not in DOMAIN_ERRORS:
        return None
    domain = field_domain(model, tuple(err["loc"])) or "a finite number"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, float) or math.isfinite(value) else \
        str(value)
    return f"must be {domain} (got {shown})"


#: The modules whose import registers the built-in components (and the plan checks of
#: ``ablab.data`` and ``ablab.models``). None imports torch: a component imports it when
#: called, so ``ablab list``, ``ablab schema`` and a dry run answer without it. They load
#: on a registry's first use, not with ``import ablab``.
BUILTIN_PACKAGES = (
    "ablab.data.sources", "ablab.data.user_tables", "ablab.data.user_images",
    "ablab.models.activations", "ablab.models.architectures", "ablab.models.plan_check",
    "ablab.data.plan_check", "ablab.train.losses", "ablab.train.optimizers",
    "ablab.train.schedules", "ablab.train.trainers", "ablab.train.command",
    "ablab.probes.catalogue",
)
_builtins_loaded = False


def load_builtins() -> None:
    """Register the built-in components (once; every registry method calls this)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # set first: the packages' own register() calls come back here
    try:
        for name in BUILTIN_PACKAGES:
            importlib.import_module(name)
    except BaseException:
        _builtins_loaded = False
        raise


class Registry:
    """Name → component. ``kind`` is what a user calls it in messages ("model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self.__entries: dict[str, Entry] = {}

    @property
    def _entries(self) -> dict[str, Entry]:
        load_builtins()
        return self.__entries

    def register(self, name: str, summary: str = "", **meta: Any):
        """Decorator. ``meta`` is free-form data about the entry; ``check=fn`` is called
        with the resolved options and may raise FieldError for cross-option rules."""

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            # A built-in registers into the bare dict (the built-ins are loading); anything
            # else (a plugin, a notebook) sees the built-ins first, so a clash is caught.
            builtin = str(getattr(fn, "__module__", "")).startswith("ablab.")
            entries = self.__entries if builtin else self._entries
            if name in entries and entries[name].fn is not fn:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = summary or (inspect.getdoc(fn) or "").split("\n")[0]
            entries[name] = Entry(name, fn, doc, _options_model(name, fn), meta)
            return fn

        return decorator

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def unknown_message(self, name: str) -> str:
        msg = f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
        lowered = {n.lower(): n for n in self.names()}
        close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1)
        if close:
            msg += f" (did you mean {lowered[close[0]]!r}?)"
        return msg

    def canonical(self, name: str) -> str | None:
        """The registered name ``name`` means, matched without regard to case
        (``"ReLU"`` → ``"relu"``); None when there is none."""
        if name in self._entries:
            return name
        if not isinstance(name, str):
            return None
        matches = [n for n in self._entries if n.lower() == name.lower()]
        return matches[0] if len(matches) == 1 else None

    def get(self, name: str) -> Entry:
        canonical = self.canonical(name)
        if canonical is None:
            raise FieldError("name", self.unknown_message(name))
        return self._entries[canonical]

    def check_name(self, name: str) -> str:
        """For pydantic field validators: the registered name (case-insensitive match),
        or raise ValueError."""
        canonical = self.canonical(name)
        if canonical is None:
            raise ValueError(self.unknown_message(name))
        return canonical


DATASETS = Registry("dataset")
MODELS = Registry("model")
ACTIVATIONS = Registry("activation")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
PROBES = Registry("probe")
TRAINERS = Registry("trainer")

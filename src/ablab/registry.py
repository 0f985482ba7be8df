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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
                msg = err["msg"]
            raise FieldError(loc, msg) from None
        check = self.meta.get("check")
        if check is not None:  # cross-option rules, e.g. nesterov needs momentum
            check(resolved)
        return resolved


def _options_model(name: str, fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        annotation = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        default = p.default if p.default is not inspect.Parameter.empty else ...
        fields[p.name] = (annotation, default)
    return pydantic.create_model(
        f"{name}_options",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


#: The packages whose import registers the built-in components. They import torch
#: (seconds), so they load on a registry's first use, not with ``import ablab``.
BUILTIN_PACKAGES = ("ablab.data", "ablab.models", "ablab.train", "ablab.probes")
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

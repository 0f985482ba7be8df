"""Pydantic's validation errors as the one line a user reads: ``FILE: field.path: what is
wrong (got VALUE)``, naming the allowed fields for an unknown key and the domain for a
number outside it. :func:`ablab.config.format_validation_error` is this for a run config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import BaseModel

from ablab.component_config import closest
from ablab.errors import FieldError
from ablab.registry import domain_message


def _allowed_fields(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Names accepted at ``loc`` inside ``model_cls`` (for 'unknown key' messages)."""
    cls: Any = model_cls
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nxt is None:
            return None
        cls = nxt
    return list(getattr(cls, "model_fields", {}))


def dotted(loc: tuple[Any, ...]) -> str:
    """``("probes", 0, "name")`` → ``probes[0].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(
    exc: pydantic.ValidationError,
    source: str,
    root: type[BaseModel],
    path_map: Callable[[str], str] | None = None,
) -> str:
    """One line for the first error of validating ``root``: ``SOURCE: field.path: message
    (got VALUE)``; ``path_map`` turns the field path into where the user wrote it."""
    errors = exc.errors()
    # An unknown key explains a missing one (``epoch = 20`` leaves ``epochs`` missing):
    # name the unknown key first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic tags union branches in the location; they mean nothing to a user.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("int", "str"))))
    msg = err["msg"]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        parts = cause.path.split(".") if cause.path else []
        loc = loc + tuple(int(p) if p.isdigit() else p for p in parts)  # hidden[1], not .1
        msg = cause.message
        got = None
    elif err["type"] == "extra_forbidden":
        allowed = _allowed_fields(root, loc[:-1])
        msg = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        close = closest(str(loc[-1]), allowed or []) if loc else None
        if close:
            msg += f" (did you mean {close!r}?)"
        got = None
    elif err["type"] == "missing":
        msg = "required field is missing"
        got = None
    elif domain_message(root, {**err, "loc": loc}) is not None:
        msg = domain_message(root, {**err, "loc": loc})  # names the value itself
        got = None
    else:
        msg = msg.removeprefix("Value error, ")
        got = None if msg.startswith("unknown ") else err.get("input")
    path = dotted(loc) or "(top level)"
    if path_map is not None:
        path = path_map(path)
    line = f"{source}: {path}: {msg}"
    if got is not None and not isinstance(got, dict):
        line += f" (got {_short(got)})"
    return line

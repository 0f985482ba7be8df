"""How a study names what varies: short column names for varied paths and values shown as
text (``model.activation`` → ``activation``; ``{name = "sgd", lr = 0.1}`` → ``sgd(lr=0.1)``)."""

from __future__ import annotations

from typing import Any


def column_names(paths: list[str]) -> dict[str, str]:
    """Short names for varied paths: ``model.activation`` → ``activation``,
    ``dataset.name`` → ``dataset``; the full path where short names would collide."""

    def short(path: str) -> str:
        parts = path.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    shorts = [short(p) for p in paths]
    return {p: (s if shorts.count(s) == 1 else p) for p, s in zip(paths, shorts, strict=True)}


def format_value(value: Any) -> str:
    if isinstance(value, dict):
        name = value.get("name")
        rest = {k: v for k, v in value.items() if k != "name"}
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in rest.items())
        return f"{name}({inner})" if name and inner else str(name or inner)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)

"""A config as plain tables, before validation: a TOML file read, ``--set`` values parsed
and set by dotted path (``optimizer.lr=0.1``), and relative paths anchored to the folder of
the file that names them. :mod:`ablab.config` validates the result.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ablab.errors import ConfigError
from ablab.registry import DATASETS, TRAINERS


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc.__class__.__name__})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value is read as a TOML value (``3``, ``0.1``, ``true``, ``[1, 2]``,
    ``"x"``); anything that is not valid TOML is taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, expanding component shorthand (``loss = "mse"``)."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # shorthand component: "adam" → {name = "adam"}
            child = {"name": child}
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is a value, not a table")
        node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.path=value")
        try:
            set_path(data, key, parse_value(text.strip()))
        except ConfigError as exc:
            raise ConfigError(f"--set {exc}") from None
    return data


def anchor_dataset(data: dict[str, Any], base_dir: str | Path) -> None:
    """Give ``data``'s dataset table (plain data, before validation) ``base_dir`` as the
    folder its relative file paths are read from, when its dataset reads the user's files
    (registry meta ``paths``) and the table does not name one itself."""
    dataset = data.get("dataset")
    if isinstance(dataset, str):
        dataset = {"name": dataset}
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
        return
    if dataset["name"] in DATASETS and DATASETS.get(dataset["name"]).meta.get("paths"):
        dataset.setdefault("base_dir", str(Path(base_dir).resolve()))
        data["dataset"] = dataset


def anchor_trainer(data: dict[str, Any], base_dir: str | Path) -> None:
    """Give ``data``'s trainer (plain data, before validation) ``base_dir`` (the study or run
    file's folder) as the folder it runs in, when the trainer takes one (registry meta
    ``cwd_option``: the ``command`` trainer's ``cwd``) and the table does not name one."""
    trainer = data.get("trainer")
    if isinstance(trainer, str):
        trainer = {"name": trainer}
    if not isinstance(trainer, dict) or not isinstance(trainer.get("name"), str):
        return
    option = (TRAINERS.get(trainer["name"]).meta.get("cwd_option")
              if trainer["name"] in TRAINERS else None)
    if option:
        trainer.setdefault(option, str(Path(base_dir).resolve()))
        data["trainer"] = trainer

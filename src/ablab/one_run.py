"""One run alone, outside any study directory: :func:`train_run` (``ablab.train_run``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablab.config import apply_overrides, load_toml, parse_run, set_path
from ablab.errors import UserError

if TYPE_CHECKING:
    from ablab.train import RunResult


def _run_data(config: dict[str, Any] | str | Path | Any) -> tuple[dict[str, Any], str]:
    if isinstance(config, (str, Path)):
        path = Path(config)
        data = load_toml(path)
        if isinstance(data.get("plugins"), list):
            from ablab.plugins import resolve_plugins

            data["plugins"] = resolve_plugins(data["plugins"], path.parent)
        return data, str(path)
    if isinstance(config, dict):
        return copy.deepcopy(config), "<config>"
    if hasattr(config, "resolved"):  # a RunConfig
        return config.resolved(), "<config>"
    raise UserError(
        f"train_run: config must be a dict, a run file path or a RunConfig; "
        f"got {type(config).__name__}"
    )


def train_run(
    config: dict[str, Any] | str | Path,
    *,
    sets: list[str] | tuple[str, ...] = (),
    on_epoch=None,
    allow_plugins: bool | None = None,
    artefacts: str | Path | None = None,
    **overrides: Any,
) -> RunResult:
    """Train one run and return its :class:`~ablab.train.RunResult` (history, final
    metrics, probes; ``weights`` when ``keep`` is "best" or "last"). ``config`` is a run
    config as plain data or a run file's path. Keyword overrides set fields, ``__`` for
    a dot (``optimizer__lr=0.01``); ``sets`` are ``--set`` strings.

    >>> r = train_run({"epochs": 2, "dataset": "moons", "model": {"name": "mlp", "hidden": [8]}},
    ...               device="cpu", optimizer__lr=0.02)
    >>> r.status, len(r.history)
    ('done', 2)

    ``allow_plugins``: consent to import the plugin code the config names (None: the
    ``ABLAB_ALLOW_PLUGINS`` environment variable decides). ``artefacts``: the folder the
    run's trainer writes its own files to (None: a temporary folder, removed after).
    The run's trainer trains it (the built-in loop by default), within its ``timeout``.
    """
    from ablab.train.trainers import time_limit, train_one

    data, source = _run_data(config)
    for key, value in overrides.items():
        set_path(data, key.replace("__", "."), value)
    apply_overrides(data, sets)
    if isinstance(data.get("plugins"), list):  # code: imported only with consent
        from ablab.plugins import PluginError, import_plugins

        try:
            import_plugins(data["plugins"], allow=allow_plugins)
        except PluginError as exc:
            raise UserError(f"{source}: {exc}") from None
    if overrides or sets:
        source += " (with overrides)"
    cfg = parse_run(data, source)
    from ablab.plugins import PluginError, require_consent_to_run

    try:  # a command trainer runs a program: consent, as for plugins
        require_consent_to_run([cfg], allow_plugins)
    except PluginError as exc:
        raise UserError(f"{source}: {exc}") from None
    with time_limit(cfg.timeout):
        return train_one(cfg, on_epoch=on_epoch, artefacts=artefacts)

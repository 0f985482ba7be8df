"""Loading a study: a file or a built-in study by name, its plugins imported (with consent),
``--seeds`` and ``--set`` applied, then expanded into its planned runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic

from ablab.config import apply_overrides, format_validation_error, load_toml, parse_value
from ablab.errors import ConfigError
from ablab.study.expansion import expand
from ablab.study.plan import Study
from ablab.study.study_config import StudyConfig

BUILTIN_DIR = Path(__file__).parent.parent / "studies"


def builtin_studies() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def resolve_study_path(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.suffix == ".toml" or path.exists():
        return path
    builtins = builtin_studies()
    if str(path_or_name) in builtins:
        return builtins[str(path_or_name)]
    import difflib

    close = difflib.get_close_matches(str(path_or_name), list(builtins), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{path_or_name}: no such study file or built-in study; built-in: "
        f"{', '.join(builtins)}{hint}"
    )


def _set_inside_varied(cfg: StudyConfig, item: str, key: str, source: str) -> bool:
    """``--set optimizer.lr=0.5`` where a factor varies whole ``optimizer`` tables: set
    the field in every level (so it means what it means on an unvaried study); True when
    ``key`` is inside a varied table. A ``--set`` above a varied key (``--set optimizer=sgd``
    while ``optimizer.lr`` varies) is refused: it could not mean one thing."""
    for i, factor in enumerate(cfg.vary):
        for varied_key in factor:
            if varied_key.startswith("_"):
                continue
            if varied_key.startswith(key + "."):
                raise ConfigError(
                    f'--set {key}: collides with the varied field vary[{i}]."{varied_key}" of '
                    f"{source}; set {varied_key} itself (one value for every level) or "
                    "edit the study file"
                )
            if not key.startswith(varied_key + "."):
                continue
            rest = key[len(varied_key) + 1 :]
            levels = []
            for value in factor[varied_key]:
                level = {"name": value} if isinstance(value, str) else copy.deepcopy(value)
                if not isinstance(level, dict):
                    raise ConfigError(
                        f'--set {key}: vary[{i}]."{varied_key}" holds values, not tables '
                        f"({value!r}), so it has no field {rest!r}"
                    )
                apply_overrides(level, [f"{rest}={item.partition('=')[2]}"])
                levels.append(level)
            factor[varied_key] = levels
            return True
    return False


def load_study(
    path_or_name: str | Path,
    seeds: int | None = None,
    sets: list[str] | tuple[str, ...] = (),
    allow_plugins: bool | None = None,
    seed_list: list[int] | None = None,
) -> Study:
    """Load a study file (or a built-in study by name); ``seeds`` replaces the seed list with
    ``range(seeds)`` (``seed_list`` with exactly those seeds); ``sets`` override fields of
    the base recipe by dotted path. Plugins the file names are imported only with
    ``allow_plugins`` (None: ``ABLAB_ALLOW_PLUGINS``; see :mod:`ablab.plugins`)."""
    path = resolve_study_path(path_or_name)
    data = load_toml(path)
    text = path.read_text(encoding="utf-8")
    source = str(path)
    try:
        cfg = StudyConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, root=StudyConfig)) from None
    given = cfg.base.get("plugins") if isinstance(cfg.base.get("plugins"), list) else []
    if cfg.plugins or given:  # before the runs are validated: they may name plugin components
        from ablab.plugins import PluginError, import_plugins, resolve_plugins

        resolved = resolve_plugins(cfg.plugins, path.parent)
        resolved += [p for p in resolve_plugins(given, path.parent) if p not in resolved]
        try:
            import_plugins(resolved, allow=allow_plugins)
        except PluginError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        cfg.base["plugins"] = resolved
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds: must be at least 1, got {seeds}")
        cfg.seeds = list(range(seeds))
    if seed_list is not None:
        cfg.seeds = [int(s) for s in seed_list]
    forced: dict[str, Any] = {}
    if sets:
        varied = {k for f in cfg.vary for k in f}
        base_sets = []
        for item in sets:
            key = item.partition("=")[0].strip()
            if key in varied:  # one value for every variant, e.g. --set epochs=1
                forced[key] = parse_value(item.partition("=")[2].strip())
            elif not _set_inside_varied(cfg, item, key, source):
                base_sets.append(item)
        apply_overrides(cfg.base, base_sets)
        source += " (with --set)"
    base_dir = None if path.parent.resolve() == BUILTIN_DIR.resolve() else path.parent
    study = expand(cfg, source, text, list(sets), forced, base_dir=base_dir)
    from ablab.plugins import PluginError, require_consent_to_run

    try:  # a command trainer runs a program: consent, as for plugins
        require_consent_to_run((r.config for r in study.runs), allow_plugins)
    except PluginError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return study

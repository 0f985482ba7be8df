"""Study files: a base recipe, the factors that vary, and the seeds — expanded into runs.

Part of the config stage: it validates and expands, and trains nothing::

    name = "moons-activations"
    seeds = [0, 1, 2]
    [base]
    epochs = 300
    dataset = { name = "moons" }
    model = { name = "mlp", hidden = [256, 128] }
    [[vary]]                                 # each [[vary]] is one factor; factors multiply
    "model.activation" = ["relu", "tanh"]
    [[vary]]                                 # keys inside one factor move together (zip)
    "dataset.name" = ["moons", "circles"]
    "dataset.noise" = [0.3, 0.2]

Each run gets a stable id (a hash of its identity, see :mod:`ablab.identity`: the fully
resolved config without what only labels it or sets its speed, so editing an unrelated
factor leaves other runs' ids alone) and a label naming only what varies:
``activation=tanh, dataset=moons, seed=3``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import Field, field_validator

from ablab import identity
from ablab.config import (
    RunConfig,
    Seed,
    Strict,
    apply_overrides,
    format_validation_error,
    load_toml,
    parse_value,
    run_id,
    set_path,
)
from ablab.errors import ConfigError

BUILTIN_DIR = Path(__file__).parent / "studies"


class StudyConfig(Strict):
    """The top level of a study file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    description: str = ""
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0, 1, 2]
    base: dict[str, Any]
    # Each factor: dotted path → values. Optional "_labels" (one name per value, shown in
    # labels and tables instead of the values) and "_name" (that column's name, default
    # "recipe") for factors that swap whole recipes.
    vary: list[dict[str, list[Any] | str]] = []
    # Modules (names or .py paths relative to this file) that register user components
    # (see ablab.plugins); imported before the runs are validated, and by every worker.
    plugins: list[str] = []
    # Differences of accuracy smaller than this (a fraction: 0.01 = 1 percentage point)
    # count as no difference: a comparison can end "equivalent within ±margin" (TOST).
    equivalence_margin: Annotated[float, Field(gt=0, lt=1)] = 0.01

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    variant_id: str
    variant: dict[str, Any]  # factor column → value, for tables ("activation": "tanh")
    variant_label: str  # "activation=tanh, dataset=moons"
    seed: int
    config: RunConfig

    @property
    def label(self) -> str:
        prefix = f"{self.variant_label}, " if self.variant_label else ""
        return f"{prefix}seed={self.seed}"


@dataclass
class Study:
    config: StudyConfig
    source: str  # the file it came from (or the built-in name)
    text: str  # the study file exactly as written, for the report
    factors: list[list[str]]  # dotted paths of each factor
    columns: dict[str, str]  # dotted path → column name in tables
    runs: list[PlannedRun] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def plugins(self) -> list[str]:
        """The plugin modules every run imports (as resolved: absolute paths or names)."""
        out: list[str] = []
        for run in self.runs:
            out += [p for p in run.config.plugins if p not in out]
        return out

    def run(self, out: str | Path, **options: Any):
        """Train every run ``out`` does not hold yet (resumable), write the tables and the
        report; returns :class:`ablab.results.StudyResults`. ``options`` are those of
        :func:`ablab.runner.run_study` (workers, threads, executor, progress, ...);
        ``progress`` defaults to True here."""
        if _runner is None:  # pragma: no cover - ``import ablab`` registers it
            raise RuntimeError("Study.run needs ablab.runner; import ablab first")
        return _runner(self, out, **options)

    def variants(self) -> dict[str, list[PlannedRun]]:
        out: dict[str, list[PlannedRun]] = {}
        for run in self.runs:
            out.setdefault(run.variant_id, []).append(run)
        return out

    def resolved(self) -> dict[str, Any]:
        """Plain data: the study and every run's resolved config."""
        return {
            "name": self.name,
            "description": self.config.description,
            "seeds": self.config.seeds,
            "factors": self.factors,
            "columns": self.columns,
            "overrides": self.overrides,
            "plugins": self.plugins,
            "equivalence_margin": self.config.equivalence_margin,
            "runs": [
                {
                    "run_id": r.run_id,
                    "variant_id": r.variant_id,
                    "variant": r.variant,
                    "variant_label": r.variant_label,
                    "seed": r.seed,
                    "config": r.config.resolved(),
                }
                for r in self.runs
            ],
        }


#: What ``Study.run`` calls. ``ablab.runner`` registers it when imported (``import ablab``
#: imports the runner), so this config-layer module never imports the layers above it.
_runner: Callable[..., Any] | None = None


def set_runner(runner: Callable[..., Any]) -> None:
    """Register the function behind ``Study.run`` (``ablab.runner`` does, once)."""
    global _runner
    _runner = runner


#: Checks every expanded study passes (``check(study)`` raises ConfigError), registered by
#: the layers that know more than the config does (``ablab.models`` registers the check
#: that every varied generic model option is read by the model's builder).
_plan_checks: list[Callable[[Study], None]] = []


def add_plan_check(check: Callable[[Study], None]) -> None:
    """Register a check run on every expanded study (once per function)."""
    if check not in _plan_checks:
        _plan_checks.append(check)


def variant_id(cfg: RunConfig) -> str:
    """What a variant is: the run's identity with the seed left out."""
    return identity.variant_id(cfg)


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


def _locate(vary_paths: dict[str, int]):
    """Map an error's field path to where the user wrote it: base.X or vary[i].X."""

    def locate(path: str) -> str:
        for key, index in vary_paths.items():
            if path == key or path.startswith(key + ".") or path.startswith(key + "["):
                return f'vary[{index}]."{key}"' + path[len(key) :]
        for key, index in vary_paths.items():  # the error is above the varied key: the
            if key.startswith(path + "."):  # key's path itself is wrong ("optimiser.lr")
                return f'vary[{index}]."{key}"'
        return "base." + path

    return locate


def _check_factors(cfg: StudyConfig, source: str) -> list[list[str]]:
    factors: list[list[str]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(cfg.vary):
        for key in raw:
            if key.startswith("_") and key not in ("_labels", "_name"):
                raise ConfigError(
                    f'{source}: vary[{i}]."{key}": allowed meta keys: _labels, _name'
                )
        name = raw.get("_name", "recipe")
        if not isinstance(name, str):
            raise ConfigError(f'{source}: vary[{i}]."_name": must be a string')
        factor = {k: v for k, v in raw.items() if k != "_name"}
        if not any(not k.startswith("_") for k in factor):
            raise ConfigError(f"{source}: vary[{i}]: a factor needs at least one key")
        for key, values in factor.items():
            if not isinstance(values, list):
                raise ConfigError(f'{source}: vary[{i}]."{key}": must be a list of values')
        lengths = {key: len(values) for key, values in factor.items()}
        for key, n in lengths.items():
            if n == 0:
                raise ConfigError(
                    f'{source}: vary[{i}]."{key}": empty list; give at least one value'
                )
            if key == "_labels":
                continue
            if key in seen:
                raise ConfigError(
                    f'{source}: vary[{i}]."{key}": already varied by vary[{seen[key]}]'
                )
            if key == "seed":
                raise ConfigError(f'{source}: vary[{i}]."seed": use the top-level seeds list')
            if identity.outside_identity(key):
                raise ConfigError(
                    f'{source}: vary[{i}]."{key}": does not change what a run computes (it '
                    "is not part of a run's identity), so its values would be the same runs; "
                    "set it in [base] or with --set instead"
                )
            seen[key] = i
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise ConfigError(
                f"{source}: vary[{i}]: keys inside one factor move together, so their lists "
                f"need equal lengths ({sizes})"
            )
        factors.append([k for k in factor if k != "_labels"])
    return factors


def _labels_key(i: int, labelled: dict[int, Any]) -> str:
    return "_labels" if len(labelled) == 1 else f"_labels{i}"


def _factor_options(
    cfg: StudyConfig, factors: list[list[str]], labelled: dict[int, Any]
) -> list[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Each factor's levels as (what the label shows, what the config gets)."""
    choices = []
    for i, factor in enumerate(factors):
        options = []
        for j, values in enumerate(zip(*(cfg.vary[i][k] for k in factor), strict=True)):
            assignment = dict(zip(factor, values, strict=True))
            if i in labelled:  # show the factor by its label, not its many values
                options.append(({_labels_key(i, labelled): cfg.vary[i]["_labels"][j]}, assignment))
            else:
                options.append((assignment, assignment))
        choices.append(options)
    return choices


def _run_config(
    cfg: StudyConfig, source: str, assignment: dict[str, Any], seed: int, label: str, locate
) -> RunConfig:
    """The base recipe with one variant's values and a seed, validated."""
    data = copy.deepcopy(cfg.base)
    for key, value in assignment.items():
        try:
            set_path(data, key, copy.deepcopy(value))
        except ConfigError as exc:
            why = str(exc).partition(": ")[2]  # "'epochs' is a value, not a table"
            raise ConfigError(f"{source}: {locate(key)}: {why}") from None
    data["seed"] = seed
    try:
        return RunConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        where = f" (variant {label})" if label else ""
        raise ConfigError(format_validation_error(exc, source, path_map=locate) + where) from None


def _refuse_duplicates(runs: list[PlannedRun], source: str, first_seed: int) -> None:
    """Two variants with one identity: they would plan the same runs (one run id twice,
    a database error at run time). Checking the first seed covers every seed, since a run's
    identity is its variant's identity plus its seed."""
    variants: dict[str, str] = {}
    for run in runs:
        if run.seed != first_seed:
            continue
        if run.variant_id in variants:
            raise ConfigError(
                f"{source}: vary: variants '{variants[run.variant_id]}' and "
                f"'{run.variant_label}' resolve to the same runs; remove the duplicate"
            )
        variants[run.variant_id] = run.variant_label


def expand(
    cfg: StudyConfig,
    source: str,
    text: str = "",
    overrides: list[str] = (),
    forced: dict[str, Any] | None = None,
) -> Study:
    """Validate every run of the study and give each its id and label. ``forced`` sets
    varied fields to one value in every variant (``--set`` on a varied key)."""
    if "seed" in cfg.base:
        raise ConfigError(f"{source}: base.seed: a study's seeds are the top-level seeds list")
    factors = _check_factors(cfg, source)
    labelled = {i: cfg.vary[i] for i in range(len(factors)) if "_labels" in cfg.vary[i]}
    paths = [p for i, f in enumerate(factors) if i not in labelled for p in f]
    columns = column_names(paths)
    for i, raw in labelled.items():
        columns[_labels_key(i, labelled)] = str(raw.get("_name", "recipe"))
    locate = _locate({p: i for i, f in enumerate(factors) for p in f})
    study = Study(cfg, source, text, factors, columns, overrides=list(overrides))
    choices = _factor_options(cfg, factors, labelled)
    for combo in itertools.product(*choices) if choices else [()]:
        assignment: dict[str, Any] = {k: v for _, part in combo for k, v in part.items()}
        assignment.update(forced or {})
        shown = {k: v for part, _ in combo for k, v in part.items()}
        variant = {columns[k]: format_value(v) for k, v in shown.items()}
        label = ", ".join(f"{k}={v}" for k, v in variant.items())
        for seed in cfg.seeds:
            run_cfg = _run_config(cfg, source, assignment, seed, label, locate)
            study.runs.append(
                PlannedRun(run_id(run_cfg), variant_id(run_cfg), variant, label, seed, run_cfg)
            )
    _refuse_duplicates(study.runs, source, cfg.seeds[0])
    for check in _plan_checks:
        check(study)
    return study


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
    return expand(cfg, source, text, list(sets), forced)

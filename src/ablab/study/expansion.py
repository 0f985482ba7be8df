"""Expanding a study file into its planned runs: the factors checked, every combination of
their levels with every seed validated as a run, each run given its id and label."""

from __future__ import annotations

import copy
import difflib
import itertools
from pathlib import Path
from typing import Any

import pydantic

from ablab import identity
from ablab.config import (
    RunConfig,
    anchor_dataset,
    anchor_trainer,
    format_validation_error,
    run_id,
    set_path,
)
from ablab.errors import ConfigError
from ablab.study.labels import column_names, format_value
from ablab.study.plan import PlannedRun, Study, run_plan_checks, variant_id
from ablab.study.study_config import StudyConfig
from ablab.study.tune_checks import check_tune
from ablab.study.variance_plan import variance_design


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
            if key.startswith("_") and key not in ("_labels", "_name", "_role"):
                raise ConfigError(
                    f'{source}: vary[{i}]."{key}": allowed meta keys: _labels, _name, _role'
                )
        if raw.get("_role", "treatment") not in ("treatment", "context"):
            raise ConfigError(
                f'{source}: vary[{i}]."_role": must be "treatment" (judged) or "context" '
                f"(compared within), got {raw['_role']!r}"
            )
        name = raw.get("_name", "recipe")
        if not isinstance(name, str):
            raise ConfigError(f'{source}: vary[{i}]."_name": must be a string')
        factor = {k: v for k, v in raw.items() if k not in ("_name", "_role")}
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


def _keeps_test(paths: list[str], runs: list[PlannedRun]) -> bool | None:
    """True when every path of a factor is a ``dataset.`` option that each run's dataset
    declares test-set keeping (``register_dataset(..., keeps_test=("shuffle",))``: the
    option changes training data or both splits alike, never which samples are tested);
    None otherwise (ablab's default rule decides)."""
    from ablab.registry import DATASETS

    options = {p.split(".", 1)[1] for p in paths if p.startswith("dataset.")}
    if not options or len(options) != len(paths):
        return None
    names = {(r.config.resolved().get("dataset") or {}).get("name") for r in runs[:1000]}
    for name in names:
        if name not in DATASETS:
            return None
        declared = set(DATASETS.get(name).meta.get("keeps_test") or ())
        if not options <= declared:
            return None
    return True


def _check_outcomes(cfg: StudyConfig, source: str) -> None:
    """``outcomes``: catalogued names (tables declare their own)."""
    from ablab.outcome_catalogue import OUTCOME_NAMES, lookup

    for i, item in enumerate(cfg.outcomes or []):
        if isinstance(item, str) and lookup(item) is None:
            close = difflib.get_close_matches(item, OUTCOME_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: outcomes[{i}]: unknown outcome {item!r}{hint}; allowed: "
                f"{', '.join(OUTCOME_NAMES)} (dead_unit_fraction[i], "
                "zero_activation_fraction[i]: one activation layer's), or a table "
                "{ name, goal, range }"
            )


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
    cfg: StudyConfig, source: str, assignment: dict[str, Any], seed: int, label: str, locate,
    base_dir: Path | None = None,
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
    if cfg.metric is not None and "metric" not in data:  # how the trainer's result is
        data["metric"] = cfg.metric.model_dump()  # checked (not part of the run's identity)
    if base_dir is not None:  # the user's data files: relative to the study file
        anchor_dataset(data, base_dir)
        anchor_trainer(data, base_dir)  # a command runs in the study file's folder
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
    base_dir: Path | None = None,
) -> Study:
    """Validate every run of the study and give each its id and label. ``forced`` sets
    varied fields to one value in every variant (``--set`` on a varied key). ``base_dir``:
    the study file's folder, where relative dataset paths are read from."""
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
            run_cfg = _run_config(cfg, source, assignment, seed, label, locate, base_dir)
            study.runs.append(
                PlannedRun(run_id(run_cfg), variant_id(run_cfg), variant, label, seed, run_cfg)
            )
    _refuse_duplicates(study.runs, source, cfg.seeds[0])
    study.roles = [cfg.vary[i].get("_role") for i in range(len(factors))]
    study.keeps_test = [_keeps_test(f, study.runs) for f in factors]
    _check_outcomes(cfg, source)
    if cfg.variance == "sources":
        study.runs = variance_design(study, source)
    if cfg.tune is not None:
        check_tune(study, source)
    run_plan_checks(study)
    return study

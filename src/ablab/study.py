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
import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, field_validator

from ablab import identity
from ablab.config import (
    MetricSpec,
    RunConfig,
    Seed,
    Strict,
    anchor_dataset,
    anchor_trainer,
    apply_overrides,
    format_validation_error,
    load_toml,
    parse_value,
    run_id,
    set_path,
)
from ablab.errors import ConfigError
from ablab.outcome_catalogue import validation_counterpart
from ablab.references import Reference, ReferenceClaim

BUILTIN_DIR = Path(__file__).parent / "studies"

#: What ``[tune] metric`` may name: validation figures only (tuning on test data would
#: select on the data the verdicts are judged on). Metric → "maximize" / "minimize".
TUNE_METRICS = {"val_accuracy": "maximize", "best_val_accuracy": "maximize",
                "val_loss": "minimize"}
TUNE_SAMPLERS = ("tpe", "random", "grid")
TUNE_PRUNERS = ("none", "median", "successive_halving")


@dataclass(frozen=True)
class Distribution:
    """One ``[tune] params`` entry: ``loguniform(1e-4, 1.0)``, ``uniform(0, 0.5)``,
    ``int(16, 256)`` or ``choice(0, 1e-4)`` (plain data; ablab.tune makes Optuna's)."""

    kind: str  # "loguniform" | "uniform" | "int" | "choice"
    args: tuple[Any, ...]

    @property
    def is_range(self) -> bool:
        return self.kind != "choice"

    def probes(self) -> list[Any]:
        """Values that stand for the whole search space when validating a run with it."""
        return list(self.args) if self.kind == "choice" else [self.args[0], self.args[1]]

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(format_value(a) for a in self.args)})"


def parse_distribution(text: str) -> Distribution:
    """``"loguniform(1e-4, 1.0)"`` → Distribution; ValueError with what is allowed.

    >>> parse_distribution("loguniform(1e-4, 1)")
    Distribution(kind='loguniform', args=(0.0001, 1.0))
    >>> parse_distribution("choice(0, 1e-4)").args
    (0, 0.0001)
    """
    import re

    allowed = "loguniform(LOW, HIGH), uniform(LOW, HIGH), int(LOW, HIGH), choice(A, B, ...)"
    m = re.fullmatch(r"\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*", str(text))
    if not m:
        raise ValueError(f"not a distribution; allowed: {allowed}")
    kind, inner = m.group(1), m.group(2)
    try:
        values = parse_value(f"[{inner}]")
    except Exception:  # noqa: BLE001 - reported below
        values = None
    if not isinstance(values, list) or not values:
        raise ValueError(f"{kind}(...): cannot read its arguments; allowed: {allowed}")
    if kind == "choice":
        if any(isinstance(v, (list, dict)) for v in values):
            raise ValueError("choice(...): values must be numbers, strings or booleans")
        if len(set(map(repr, values))) != len(values):
            raise ValueError("choice(...): values must be distinct")
        return Distribution(kind, tuple(values))
    if len(values) != 2:
        raise ValueError(f"{kind}(LOW, HIGH) takes two numbers, got {len(values)}")
    number = int if kind == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in values):
        what = "integers" if kind == "int" else "numbers"
        raise ValueError(f"{kind}(LOW, HIGH) takes two {what}")
    low, high = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{kind}(LOW, HIGH) takes finite numbers")
    if not low < high:
        raise ValueError(f"{kind}(LOW, HIGH) needs LOW < HIGH")
    if kind == "loguniform" and low <= 0:
        raise ValueError("loguniform(LOW, HIGH) needs LOW > 0")
    if kind != "int":
        low, high = float(low), float(high)
    return Distribution(kind, (low, high))


class TuneConfig(Strict):
    """A study's ``[tune]`` table: every variant gets the same search budget on validation
    data before the evaluation (see :mod:`ablab.tune`)."""

    params: Annotated[dict[str, str], Field(min_length=1)]
    trials: Annotated[int, Field(gt=0)]  # per variant: every variant gets exactly this many
    # the validation figure tuned on; not given: the validation counterpart of the study's
    # primary outcome (val_accuracy for test accuracy, val_X for a declared test_X)
    metric: str | None = None
    seeds: Annotated[list[Seed], Field(min_length=1)] = [1000]
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["none", "median", "successive_halving"] = "none"

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, metric: str | None) -> str | None:
        if metric is None or metric.startswith(("val_", "best_val_")):
            return metric
        if metric not in TUNE_METRICS:
            why = " is a test metric; tuning" if metric.startswith("test") else ":"
            raise ValueError(
                f"{metric!r}{why} must use validation data; allowed: "
                f"{', '.join(TUNE_METRICS)}"
            )
        return metric

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    def distributions(self) -> dict[str, Distribution]:
        return {path: parse_distribution(text) for path, text in self.params.items()}


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
    # Figures and verdicts the source reported (see ablab.references); the report sets
    # them beside ablab's own ("Against the source").
    reference: list[Reference] = []
    reference_claim: list[ReferenceClaim] = []
    # Tune every variant (same budget, validation data) before the evaluation: ablab.tune.
    tune: TuneConfig | None = None
    # The outcome the verdicts are about (name, goal, range); test accuracy when not given.
    metric: MetricSpec | None = None
    # Outcomes judged besides the primary one, each in its own family and report section:
    # catalogued names (ablab.analysis.outcomes: "zero_activation_fraction_mean",
    # "seconds", ...) or tables like ``metric``. Not given: the probes' outcomes and cost.
    outcomes: list[str | MetricSpec] | None = None
    # "sources": also run, for every variant, the nested design that separates the noise of
    # the data split, the initialisation and the training order (see ``variance_design``);
    # the report then shows each source's share of the seed-to-seed variance.
    variance: Literal["sources"] | None = None

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @pydantic.model_validator(mode="after")
    def _tune_objective(self):
        """``[tune] metric`` not given: the validation counterpart of the primary outcome."""
        if self.tune is not None and self.tune.metric is None:
            self.tune.metric = validation_counterpart(self._primary())
        return self

    def _primary(self):
        from ablab.outcome_catalogue import CATALOGUE, DEFAULT_PRIMARY, Outcome

        spec = self.metric
        if spec is None:
            return CATALOGUE[DEFAULT_PRIMARY]
        base = CATALOGUE.get(spec.name)
        goal = spec.goal or (base.goal if base else "max")
        return Outcome(spec.name, spec.name, goal)

    def tune_direction(self) -> str:
        """"maximize" / "minimize": the tuned metric's direction (a built-in validation
        metric's own, else the primary outcome's goal)."""
        assert self.tune is not None and self.tune.metric is not None
        if self.tune.metric in TUNE_METRICS:
            return TUNE_METRICS[self.tune.metric]
        return "maximize" if self._primary().goal == "max" else "minimize"


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    variant_id: str
    variant: dict[str, Any]  # factor column → value, for tables ("activation": "tanh")
    variant_label: str  # "activation=tanh, dataset=moons"
    seed: int
    config: RunConfig
    #: Its place in a ``variance = "sources"`` design: ``{"of": variant id, "split": i,
    #: "init": j, "order": l}`` (None outside one); see :func:`variance_design`.
    variance_cell: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        prefix = f"{self.variant_label}, " if self.variant_label else ""
        extra = "".join(
            f", {key}={value}"
            for key in ("init_seed", "order_seed")
            if (value := getattr(self.config, key)) is not None
        )
        return f"{prefix}seed={self.seed}{extra}"

    @property
    def in_design_only(self) -> bool:
        """A run of a variance design beside the study's own runs (another init or order
        seed): the verdicts leave it out; the decomposition uses it."""
        cell = self.variance_cell
        return bool(cell and (cell["init"] or cell["order"]))

    def __repr__(self) -> str:  # the config is kilobytes: run.config shows it
        return f"<PlannedRun {self.run_id} {self.label}>"


class Variants(dict):
    """Variant id → its planned runs (one per seed), in plan order. Also indexable by
    position: ``variants[0]`` is the first variant's runs, ``variants[:2]`` the first two
    variants (a ``Variants`` again)."""

    def __getitem__(self, key):
        if isinstance(key, slice):
            return Variants(list(self.items())[key])
        if isinstance(key, int) and not isinstance(key, bool):
            return list(self.values())[key]
        return super().__getitem__(key)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{runs[0].variant_label or 'base'!r}: {len(runs)} runs" for runs in self.values()
        )
        return f"<Variants {len(self)}: {shown}>"


@dataclass
class Study:
    config: StudyConfig
    source: str  # the file it came from (or the built-in name)
    text: str  # the study file exactly as written, for the report
    factors: list[list[str]]  # dotted paths of each factor
    columns: dict[str, str]  # dotted path → column name in tables
    runs: list[PlannedRun] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    #: per factor: "treatment" / "context" as its ``_role`` says (None: the default)
    roles: list[str | None] = field(default_factory=list)
    #: per factor: True when its levels keep the test set (a dataset option its dataset
    #: declares ``keeps_test``), None when ablab decides from the path
    keeps_test: list[bool | None] = field(default_factory=list)
    # True for the evaluation plan of a study with [tune] (each variant at its best
    # setting): only such a plan may be run without tuning first.
    tuned: bool = False

    def __repr__(self) -> str:
        n_variants = len(self.variants())
        return (f"<Study {self.name!r}: {len(self.runs)} runs, {n_variants} variants × "
                f"{len(self.config.seeds)} seeds, from {self.source}>")

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

    def variants(self) -> Variants:
        """Variant id → its runs (a variance design's runs under the variant they belong
        to); ``study.variants()[:2]``: the first two variants."""
        out = Variants()
        for run in self.runs:
            key = run.variance_cell["of"] if run.variance_cell else run.variant_id
            out.setdefault(key, []).append(run)
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
            **({"metric": self.config.metric.model_dump()} if self.config.metric else {}),
            **({"outcomes": [o if isinstance(o, str) else o.model_dump()
                             for o in self.config.outcomes]}
               if self.config.outcomes is not None else {}),
            **({"roles": self.roles} if any(r is not None for r in self.roles) else {}),
            **({"keeps_test": self.keeps_test}
               if any(k is not None for k in self.keeps_test) else {}),
            "runs": [
                {
                    "run_id": r.run_id,
                    "variant_id": r.variant_id,
                    "variant": r.variant,
                    "variant_label": r.variant_label,
                    "seed": r.seed,
                    "config": r.config.resolved(),
                    **({"variance_cell": r.variance_cell} if r.variance_cell else {}),
                }
                for r in self.runs
            ],
            **({"variance": self.config.variance} if self.config.variance else {}),
        }


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
    for check in _plan_checks:
        check(study)
    return study


#: Stride between the seeds a variance design derives from a study seed ``s``: the j-th
#: initialisation under split ``s`` has ``init_seed = s + j * DESIGN_SEED_STRIDE`` and the
#: l-th order of it ``order_seed = s + (j * k + l) * DESIGN_SEED_STRIDE`` (k levels); j = l = 0
#: is the study's own run of seed ``s`` (every seed at its default).
DESIGN_SEED_STRIDE = 100_003


def variance_design(study: Study, source: str) -> list[PlannedRun]:
    """The study's runs plus, for each variant, the nested design that separates the three
    sources of seed-to-seed noise (``variance = "sources"``): with the study's k seeds as
    k data splits, k initialisations inside each split and k training orders inside each
    initialisation, k³ runs per variant (k² − 1 new ones per seed). Every initialisation
    and order seed is distinct, so each level is a fresh draw of its source, as the
    nested random-effects model assumes (:mod:`ablab.analysis.variance`). The study's
    own runs are the cells (split, 0, 0); the new ones come after all of them, so the
    verdicts' runs train first."""
    cfg = study.config
    taken = [
        f"{where}{key}"
        for where, data in [("base.", cfg.base)] + [(f"vary[{i}].", f) for i, f in
                                                      enumerate(cfg.vary)]
        for key in data
        if key in ("init_seed", "order_seed", "split_seed", "dataset.split_seed")
        or (key == "dataset" and isinstance(data[key], dict) and "split_seed" in data[key])
    ]
    if taken:
        raise ConfigError(
            f'{source}: {taken[0]}: variance = "sources" draws the split, init and order '
            "seeds itself; remove it, or leave variance out to fix or vary it"
        )
    if cfg.tune is not None:
        raise ConfigError(
            f'{source}: variance: "sources" and [tune] cannot be combined; run the '
            "decomposition on the tuned settings written into [base]"
        )
    k = len(cfg.seeds)
    plain, extra = [], []
    for run in study.runs:
        split = cfg.seeds.index(run.seed)
        cell = {"of": run.variant_id, "split": split, "init": 0, "order": 0}
        plain.append(dataclasses.replace(run, variance_cell=cell))
        for j, order in itertools.product(range(k), range(k)):
            if j == order == 0:
                continue
            data = run.config.resolved()
            if j:
                data["init_seed"] = run.seed + j * DESIGN_SEED_STRIDE
            data["order_seed"] = run.seed + (j * k + order) * DESIGN_SEED_STRIDE
            run_cfg = RunConfig.model_validate(data)
            extra.append(PlannedRun(
                run_id(run_cfg), variant_id(run_cfg), run.variant, run.variant_label,
                run.seed, run_cfg, {**cell, "init": j, "order": order},
            ))
    return plain + extra


def check_tune(study: Study, source: str) -> None:
    """``[tune]`` against the expanded study: each distribution readable, each parameter a
    real field of every variant (its values applied and the run validated), not a varied
    key, tuning seeds disjoint from the evaluation seeds, validation data held out."""
    tune = study.config.tune
    assert tune is not None
    overlap = sorted(set(tune.seeds) & set(study.config.seeds))
    if overlap:
        raise ConfigError(
            f"{source}: tune.seeds: {', '.join(map(str, overlap))} also in the evaluation "
            "seeds; tuning seeds must be disjoint from the study's seeds"
        )
    varied = {k for factor in study.factors for k in factor}
    first = {vid: runs[0] for vid, runs in study.variants().items()}
    for path, text in tune.params.items():
        where = f'{source}: tune.params."{path}"'
        try:
            dist = parse_distribution(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc} (got {text!r})") from None
        if path in varied:
            raise ConfigError(f"{where}: is a varied factor; tune it or vary it, not both")
        if path == "seed" or identity.outside_identity(path):
            raise ConfigError(f"{where}: does not change what a run computes; nothing to tune")
        if tune.sampler == "grid" and dist.kind in ("uniform", "loguniform"):
            raise ConfigError(
                f'{where}: sampler = "grid" needs choice(...) or int(LOW, HIGH), got {text}'
            )
        for run in first.values():
            for value in dist.probes():
                data = run.config.resolved()
                try:
                    set_path(data, path, copy.deepcopy(value))
                    RunConfig.model_validate(data)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {str(exc).partition(': ')[2]}") from None
                except pydantic.ValidationError as exc:
                    detail = format_validation_error(exc, "", path_map=lambda p: p)
                    label = f" (variant {run.variant_label})" if run.variant_label else ""
                    raise ConfigError(
                        f"{where}: {detail.removeprefix(': ')}{label}"
                    ) from None
    if tune.sampler == "grid":
        size = 1
        for dist in tune.distributions().values():
            size *= len(dist.args) if dist.kind == "choice" else dist.args[1] - dist.args[0] + 1
        if tune.trials > size:
            raise ConfigError(
                f"{source}: tune.trials: {tune.trials} is more than the grid's {size} points"
            )
    for run in first.values():
        if run.config.dataset.validate_on == "test":
            raise ConfigError(
                f'{source}: tune: dataset.validate_on = "test" would tune on test data; '
                "hold out a validation split (validate_on = \"holdout\")"
            )
        if run.config.dataset.val_fraction <= 0:
            raise ConfigError(
                f"{source}: tune: dataset.val_fraction is 0, so there is no validation data "
                "to tune on; set dataset.val_fraction > 0"
            )


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

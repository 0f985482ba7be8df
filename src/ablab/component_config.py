"""The component tables of a run's config: ``dataset``, ``model``, ``loss``, ``optimizer``,
``schedule``, ``trainer``, ``probes``, ``augment``, ``early_stopping`` and ``metric``, and the
field types they share. Each named component takes a ``name`` plus the options its registry
entry declares; :mod:`ablab.config` assembles them into a ``RunConfig``.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from ablab.errors import FieldError
from ablab.registry import (
    ACTIVATIONS,
    DATASETS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    PROBES,
    SCHEDULES,
    TRAINERS,
    Registry,
)

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
# A seed: what numpy's and torch's generators and the index (SQLite INTEGER) all take.
Seed = Annotated[int, Field(ge=0, lt=2**63)]
OpenFraction = Annotated[float, Field(gt=0.0, lt=1.0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Strict(BaseModel):
    # Every number is finite (TOML's inf / nan, 1e400) and in its field's declared domain;
    # see ablab.registry.domain_message for the message.
    model_config = ConfigDict(
        extra="forbid", frozen=False, validate_assignment=False, allow_inf_nan=False
    )


class MetricSpec(Strict):
    """A study's declared outcome: ``metric = { name = "roc_auc", goal = "max", range =
    [0, 1] }``. ``goal``: "max" (higher is better) or "min"; ``range``: [low, high] where
    the metric has bounds (``inf`` / ``-inf`` for an open end), so that its intervals stay
    inside them. A built-in metric's name alone keeps its own goal and range."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
    goal: Literal["max", "min"] | None = None
    # ``inf`` / ``-inf`` say "no bound" here (the one place a config takes them); nan never
    range: list[Annotated[float, Field(allow_inf_nan=True)]] | None = None

    @field_validator("range")
    @classmethod
    def _range(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        if any(math.isnan(v) for v in value):
            raise ValueError("range bounds must be numbers or inf / -inf, not nan")
        if len(value) != 2 or not value[0] < value[1]:
            raise ValueError("range must be [low, high] with low < high (inf for no bound)")
        return [float(v) for v in value]


class Component(BaseModel):
    """A registry entry chosen by ``name`` plus that entry's own options (the extras).

    Subclasses declare the fields every entry shares; anything else is validated against
    the entry's options and stored resolved (defaults filled in), so two configs that mean
    the same thing dump to the same dict and hash to the same run id."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    registry: ClassVar[Registry]
    name: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return cls.registry.check_name(name)

    @model_validator(mode="after")
    def _resolve_options(self):
        extras = dict(self.__pydantic_extra__ or {})
        entry = self.registry.get(self.name)
        for key in extras:
            if key not in entry.options.model_fields:
                raise FieldError(key, self.unknown_option_message(key))
        resolved = self.registry.get(self.name).validate_options(extras)
        self.__pydantic_extra__.clear()
        self.__pydantic_extra__.update(resolved)
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    @classmethod
    def generic_fields(cls) -> list[str]:
        """The fields every entry of this registry takes (``dropout`` for every model)."""
        return [k for k in cls.model_fields if k != "name"]

    def unknown_option_message(self, key: str) -> str:
        """``key`` is neither this entry's option nor a generic field: say so, with what
        is allowed and the closest of *all* of them (generic fields included)."""
        own = list(self.registry.get(self.name).options.model_fields)
        generic = self.generic_fields()
        msg = f"unknown option for {self.name!r}; its options are: {', '.join(own) or 'none'}"
        if generic:
            msg += f"; and every {self.registry.kind}'s: {', '.join(generic)}"
        close = closest(key, own + generic)
        return msg + (f" (did you mean {close!r}?)" if close else "")


def closest(name: str, allowed: list[str]) -> str | None:
    """The allowed name closest to ``name``, ignoring case (``Dropuot`` → ``dropout``)."""
    lowered = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


class AugmentConfig(Strict):
    """Per-sample augmentation, applied on each training batch tensor."""

    flip: bool = False
    crop_padding: NonNegativeInt = 0  # random crop back to size after zero-padding
    translate: NonNegativeInt = 0  # random shift of up to this many pixels
    cutout: NonNegativeInt = 0  # side of a zeroed square at a random place

    @property
    def enabled(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.translate > 0 or self.cutout > 0


class DatasetConfig(Component):
    registry: ClassVar[Registry] = DATASETS
    subset: PositiveInt | None = None  # cap on the training-split size, for quick runs
    # Cap on the validation and test split sizes (stratified, fixed), for smoke tests only:
    # figures from a reduced test set are noisier than the study's.
    eval_subset: PositiveInt | None = None
    val_fraction: Fraction = 0.2  # of the training data, stratified
    test_fraction: OpenFraction = 0.2  # held out when the dataset has no official test set
    # None: the dataset's own. "standard": one mean / std per channel (images) or feature
    # (tabular). "per_feature": one mean / std per input value (each pixel of each channel),
    # scikit-learn StandardScaler's semantics (population std; a constant feature keeps
    # scale 1) -- what source report 001 did to Digits.
    normalize: Literal["unit", "half", "standard", "per_feature", "none"] | None = None
    # What the "standard" / "per_feature" moments are fitted on: "train" (the training
    # split, the sound choice) or "all" (every example the dataset holds, test included,
    # before any split -- what source report 001 did: StandardScaler.fit_transform on all
    # of Digits / moons / circles, then train_test_split).
    normalize_fit_on: Literal["train", "all"] = "train"
    augment: AugmentConfig = AugmentConfig()
    # "test" evaluates each epoch on the test set instead of a validation split (source
    # report 003's set-up). Allowed so such a study can be reproduced; the report flags it.
    validate_on: Literal["holdout", "test"] = "holdout"
    # Seed of the train/validation/test split and of the subset; None: the run's seed, so
    # runs that share a seed share their split (what a paired comparison needs).
    split_seed: Seed | None = None
    # The folder that relative paths in a dataset's path options (csv, npz, image_folder:
    # ``path``) are read from: set by the study loader to the study file's folder, else the
    # current directory when the config is validated. Where files are, not what a run
    # computes: left out of a run's identity (see ablab.identity).
    base_dir: str | None = None

    @model_validator(mode="after")
    def _anchor_paths(self):
        if self.base_dir is None and DATASETS.get(self.name).meta.get("paths"):
            self.base_dir = str(Path.cwd())
        return self

    @model_validator(mode="after")
    def _fit_on_needs_fitted_mode(self):
        if self.normalize_fit_on == "all" and self.normalize in ("unit", "half", "none"):
            raise FieldError(
                "normalize_fit_on",
                f'"all" fits normalization moments, but normalize = "{self.normalize}" has '
                'none; use normalize = "standard" or "per_feature", or leave it "train"',
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_fit_on(self, handler):
        """Leave ``normalize_fit_on`` out at its default, so configs written before it
        existed keep their run ids."""
        data = handler(self)
        if isinstance(data, dict) and data.get("normalize_fit_on") == "train":
            data.pop("normalize_fit_on")
        if isinstance(data, dict) and self.name in TASK_DATASETS:
            # added after run ids were issued: left out at their defaults (csv, npz)
            for key, default in TASK_OPTION_DEFAULTS.items():
                if key in data and data[key] == default:
                    data.pop(key)
        if isinstance(data, dict) and data.get("base_dir", 0) is None:
            data.pop("base_dir")  # only datasets that read the user's files have one
        return data


    @property
    def task(self) -> str:
        """"regression" when the dataset says ``task = "regression"`` (csv, npz), else
        "classification" (what every other dataset is; a csv / npz target that looks
        continuous without ``task`` is refused when the data are read)."""
        return "regression" if self.options.get("task") == "regression" else "classification"


#: Datasets with a ``task`` option, and the options that came with it: left out of the
#: resolved config at these defaults, so the run ids of earlier csv / npz studies hold.
TASK_DATASETS = ("csv", "npz")
TASK_OPTION_DEFAULTS = {"task": None, "standardize_target": True}


_INIT_RE = re.compile(r"^normal\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)$")
INIT_NAMES = ("default", "glorot_uniform", "glorot_normal", "kaiming_normal", "kaiming_uniform")
#: What ``model.init`` accepts, for the JSON Schema and ``ablab list models``.
INIT_SCHEMA = {
    "pattern": r"^(" + "|".join(INIT_NAMES) + r"|normal\(\s*[-+0-9.eE]+\s*,\s*[-+0-9.eE]+\s*\))$",
    "x-allowed": " | ".join(f'"{n}"' for n in INIT_NAMES) + ' | "normal(MEAN, STD)"',
}


def parse_init(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"normal(0, 0.01)"`` → ``("normal", (0.0, 0.01))``; ``"glorot_uniform"`` → (name, ())."""
    if spec in INIT_NAMES:
        return spec, ()
    m = _INIT_RE.match(spec.strip())
    if m:
        mean, std = float(m.group(1)), float(m.group(2))
        if not (math.isfinite(mean) and math.isfinite(std)):  # 1e400 reads as inf
            raise ValueError("normal(mean, std) needs finite numbers")
        if std <= 0:
            raise ValueError(f"normal(mean, std) needs std > 0, got {std}")
        return "normal", (mean, std)
    raise ValueError(f"unknown init {spec!r}; allowed: {', '.join(INIT_NAMES)}, normal(MEAN, STD)")


class ActivationConfig(Component):
    registry: ClassVar[Registry] = ACTIVATIONS


class ModelConfig(Component):
    registry: ClassVar[Registry] = MODELS
    # "relu", or a table with options: {name = "leaky_relu", negative_slope = 0.1}
    activation: ActivationConfig = Field(default_factory=lambda: ActivationConfig(name="relu"))
    dropout: Fraction | None = None  # None: the architecture's own default
    batch_norm: bool | None = None  # None: the architecture's own default
    init: Annotated[str, Field(json_schema_extra=INIT_SCHEMA)] = "default"

    @field_validator("init")
    @classmethod
    def _init(cls, v: str) -> str:
        parse_init(v)
        return v


class LossConfig(Component):
    registry: ClassVar[Registry] = LOSSES


class OptimizerConfig(Component):
    registry: ClassVar[Registry] = OPTIMIZERS


class ScheduleConfig(Component):
    registry: ClassVar[Registry] = SCHEDULES


class EarlyStoppingConfig(Strict):
    """Keras EarlyStopping: stop when ``monitor`` has not improved by ``min_delta`` for
    ``patience`` epochs; optionally restore the best epoch's weights."""

    # val_accuracy: classification; val_rmse, val_mae, val_r2: regression (task = "regression")
    monitor: Literal["val_loss", "val_accuracy", "val_rmse", "val_mae", "val_r2"] = "val_loss"
    patience: PositiveInt = 10
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    restore_best_weights: bool = True


class ProbeConfig(Component):
    """A probe by name, or a table with its options: {name = "boundary", grid = 100}."""

    registry: ClassVar[Registry] = PROBES


class TrainerConfig(Component):
    """What trains the run: a registered trainer by name, with its options
    (``trainer = { name = "command", argv = [...] }``). The default, ``"builtin"``, is
    ablab's own loop, configured by the rest of the run config."""

    registry: ClassVar[Registry] = TRAINERS


#: The trainer a run gets when its config names none: ablab's own training loop.
BUILTIN_TRAINER = "builtin"
#: The metric the built-in loop's verdicts are about when a study declares none.
BUILTIN_METRIC = "test_accuracy"


#: Fields the built-in loop needs and other trainers may leave out.
BUILTIN_NEEDS = ("epochs", "dataset", "model")

"""Run configuration: the pydantic model of a run, its validation messages, run ids.

Every field is validated and unknown keys are rejected. Named components (dataset, model,
loss, optimizer, schedule) take a ``name`` plus the options their registry entry declares;
a string is shorthand for ``{name = "..."}``::

    >>> cfg = parse_run({"epochs": 2, "dataset": {"name": "moons"},
    ...                  "model": {"name": "mlp", "hidden": [8]}}, "example")
    >>> cfg.model.options["hidden"]
    [8]

Errors come out as one line, ``FILE: field.path: what is wrong (got VALUE)``. The component
tables (``DatasetConfig``, ``ModelConfig``, ...) live in :mod:`ablab.component_config` and
are importable from here too, as are the plain-table helpers of :mod:`ablab.config_tables`
(TOML reading, ``--set`` overrides); the messages come from :mod:`ablab.validation_messages`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    Field,
    model_serializer,
    model_validator,
)

from ablab import identity
from ablab.component_config import (  # the component tables, also importable from here
    BUILTIN_METRIC,
    BUILTIN_NEEDS,
    BUILTIN_TRAINER,
    ActivationConfig,  # noqa: F401 - re-exported
    AugmentConfig,  # noqa: F401 - re-exported
    Component,  # noqa: F401 - re-exported
    DatasetConfig,
    EarlyStoppingConfig,
    Fraction,  # noqa: F401 - re-exported
    LossConfig,
    MetricSpec,
    ModelConfig,
    OptimizerConfig,
    PositiveInt,
    ProbeConfig,
    ScheduleConfig,
    Seed,
    Strict,
    TrainerConfig,
    closest,  # noqa: F401 - re-exported
    parse_init,  # noqa: F401 - re-exported
)
from ablab.config_tables import (  # the plain-table helpers, also importable from here
    anchor_dataset,
    anchor_trainer,
    apply_overrides,
    load_toml,
    parse_value,  # noqa: F401 - re-exported
    set_path,  # noqa: F401 - re-exported
)
from ablab.errors import ConfigError, FieldError
from ablab.registry import (
    ACTIVATIONS,
    DATASETS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    PROBES,
    SCHEDULES,
    TRAINERS,
)
from ablab.validation_messages import validation_message


def _switch(v: Any) -> Any:
    """``false`` → none; ``true`` → the defaults; a table as is."""
    if v is False:
        return None
    if v is True:
        return {}
    return v


def _batch_size(v: Any) -> Any:
    if v == "full":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError('must be a positive integer or "full"')
    return v


class RunConfig(Strict):
    """One fully specified training run."""

    name: str | None = None  # a label only; not part of the run id
    seed: Seed = 0
    # Required by the built-in trainer (``trainer`` unset); other trainers may omit it.
    epochs: PositiveInt | None = None
    batch_size: Annotated[
        int | str,
        pydantic.BeforeValidator(_batch_size),
        Field(json_schema_extra={"anyOf": [{"type": "integer", "exclusiveMinimum": 0},
                                           {"const": "full"}]}),
    ] = 64
    eval_batch_size: PositiveInt = 2048
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # How the arithmetic runs. memory_format: "auto" lays conv nets out channels-last
    # (1.2-1.6x faster training measured on CPU); precision "bf16" runs forward and loss
    # under bf16 autocast (weights, optimizer and probes stay fp32); compile wraps the
    # model in torch.compile ("reduce-overhead" adds CUDA graphs on a GPU).
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: Literal[False, True, "default", "reduce-overhead", "max-autotune"] = False
    # TF32 tensor-core matmuls and convolutions on a CUDA GPU (10-bit mantissa inputs):
    # changes the numbers, so part of the run id; off by default (full fp32, as the CPU
    # computes; PyTorch's own default turns TF32 on for convolutions only).
    tf32: bool = False
    dataset: DatasetConfig | None = None  # required by the built-in trainer
    model: ModelConfig | None = None  # required by the built-in trainer
    loss: LossConfig = Field(default_factory=lambda: LossConfig(name="cross_entropy"))
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adam"))
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="none"))
    # A table, or false for none (so a study can vary it: [false, {patience = 10}]).
    early_stopping: Annotated[
        EarlyStoppingConfig | None,
        pydantic.BeforeValidator(_switch),
        Field(json_schema_extra=lambda s: s["anyOf"].append({"type": "boolean"})),
    ] = None
    probes: list[ProbeConfig] = []
    probe_batch_size: PositiveInt = 1024
    # Weights the run keeps (saved by the store as DIR/runs/ID.safetensors): "last" = the
    # weights the test metrics come from, "best" = the best validation-accuracy epoch's.
    keep: Literal["none", "best", "last"] = "none"
    # Modules (names or .py paths) that register user components; imported when a file is
    # loaded with consent, never by validation (see ablab.plugins).
    plugins: list[str] = []
    # The three sources of seed-to-seed noise, each drawn from its own seed (None: ``seed``,
    # what every run did before they existed, so unset they leave run ids and results as
    # they were). The split seed is ``dataset.split_seed`` (a top-level ``split_seed`` is
    # read as it); ``init_seed`` draws the initial weights; ``order_seed`` the batch order,
    # the augmentation and dropout (see ``ablab.train.state.start_run``).
    init_seed: Seed | None = None
    order_seed: Seed | None = None
    # What trains the run (see ablab.train.trainers); left out of a resolved config at its
    # default, the built-in loop, so run ids issued before trainers existed stay the same.
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(name=BUILTIN_TRAINER))
    # Seconds a run may take; past it the run is failed ("timed out after N s") and its
    # worker process replaced. None: no limit. Not part of a run's identity.
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    # The study's declared outcome (a study's top-level ``metric``); not part of a run's
    # identity. None: the built-in loop's test accuracy.
    metric: MetricSpec | None = None

    @model_validator(mode="after")
    def _trainer_has_what_it_needs(self):
        """The built-in loop needs epochs, a dataset and a model; any other trainer needs a
        declared ``metric`` (ablab cannot guess which of its numbers the study is about),
        and may check the whole run (``check_run`` in its registry meta)."""
        if self.trainer.name == BUILTIN_TRAINER:
            for name in BUILTIN_NEEDS:
                if getattr(self, name) is None:
                    raise FieldError(name, "required field is missing")
            return self
        if self.metric is None:
            raise FieldError(
                "metric",
                f"trainer {self.trainer.name!r} returns its own metrics, so the study must "
                'declare which one it is about: metric = { name = "...", goal = "max" | '
                '"min", range = [LOW, HIGH] }',
            )
        check = TRAINERS.get(self.trainer.name).meta.get("check_run")
        if check is not None:
            check(self)
        return self

    @model_validator(mode="before")
    @classmethod
    def _split_seed_at_top(cls, data: Any) -> Any:
        """``split_seed = 3`` beside ``init_seed`` and ``order_seed`` means
        ``dataset.split_seed = 3``: one place holds the split seed, so it has one run id."""
        if not isinstance(data, dict) or "split_seed" not in data:
            return data
        data = dict(data)
        value = data.pop("split_seed")
        dataset = data.get("dataset")
        dataset = {"name": dataset} if isinstance(dataset, str) else dict(dataset or {})
        given = dataset.get("split_seed")
        if given is not None and given != value:
            raise FieldError(
                "split_seed",
                f"is dataset.split_seed, which is already {given!r}; set one of them",
            )
        dataset["split_seed"] = value
        data["dataset"] = dataset
        return data

    @model_validator(mode="before")
    @classmethod
    def _regression_loss(cls, data: Any) -> Any:
        """A regression dataset without a ``loss`` trains with ``mse``."""
        if not isinstance(data, dict) or "loss" in data:
            return data
        dataset = data.get("dataset")
        if isinstance(dataset, dict) and dataset.get("task") == "regression":
            data = {**data, "loss": "mse"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _plugins_loaded(cls, data: Any) -> Any:
        from ablab.plugins import CONSENT_ENV, unloaded_plugins

        if isinstance(data, dict) and isinstance(data.get("plugins"), list):
            missing = unloaded_plugins(data["plugins"])
            if missing:
                raise FieldError(
                    "plugins",
                    f"{missing[0]!r} is not loaded; plugins are imported when the file is "
                    f"loaded with --allow-plugins (or {CONSENT_ENV}=1, or "
                    "ablab.plugins.import_plugins(..., allow=True))",
                )
        return data

    @model_validator(mode="after")
    def _record_plugins(self):
        """Name the modules that registered user components this run uses, so worker
        processes import them even when the file did not list them."""
        from ablab.plugins import plugins_used

        used = [(LOSSES, self.loss.name), (OPTIMIZERS, self.optimizer.name),
                (SCHEDULES, self.schedule.name), (TRAINERS, self.trainer.name)]
        if self.dataset is not None:
            used.append((DATASETS, self.dataset.name))
        if self.model is not None:
            used += [(MODELS, self.model.name), (ACTIVATIONS, self.model.activation.name)]
        used += [(PROBES, p.name) for p in self.probes]
        self.plugins += [m for m in plugins_used(used) if m not in self.plugins]
        return self

    @model_validator(mode="after")
    def _needs_validation_data(self):
        if self.dataset is None:
            return self
        has_val = self.dataset.val_fraction > 0 or self.dataset.validate_on == "test"
        monitors = []
        if self.early_stopping is not None:
            monitors.append("early_stopping.monitor")
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            raise FieldError("probes", f"each probe may be named once; got {names}")
        if "monitor" in self.schedule.options:
            monitors.append("schedule.monitor")
        for path in monitors:
            if not has_val:
                raise FieldError(
                    path,
                    "monitors validation metrics, but dataset.val_fraction is 0; "
                    "set dataset.val_fraction > 0",
                )
        return self

    @model_validator(mode="after")
    def _fits_the_task(self):
        """A regression dataset takes a regression loss (mse, mae, huber), monitors its
        regression figures and no classification-only probe; a classification dataset the
        other way round."""
        if self.dataset is None:  # another trainer without a dataset: nothing to fit
            return self
        task = self.dataset.task
        loss_task = LOSSES.get(self.loss.name).meta.get("task", "classification")
        if loss_task != task:
            allowed = [n for n in LOSSES.names()
                       if LOSSES.get(n).meta.get("task", "classification") == task]
            raise FieldError("loss.name", f"{self.loss.name!r} is a {loss_task} loss but the "
                                          f"dataset's task is {task}; allowed: "
                                          f"{', '.join(allowed)}")
        regression_monitors = ("val_rmse", "val_mae", "val_r2")
        monitors = []
        if self.early_stopping is not None:
            monitors.append(("early_stopping.monitor", self.early_stopping.monitor))
        if "monitor" in self.schedule.options:
            monitors.append(("schedule.monitor", self.schedule.options["monitor"]))
        for path, monitor in monitors:
            if task == "regression" and monitor == "val_accuracy":
                raise FieldError(path, "a regression run has no accuracy; monitor val_loss, "
                                       "val_rmse, val_mae or val_r2")
            if task == "classification" and monitor in regression_monitors:
                raise FieldError(path, f"{monitor} is a regression figure; monitor val_loss "
                                       "or val_accuracy")
        if task == "regression":
            for i, probe in enumerate(self.probes):
                if PROBES.get(probe.name).meta.get("classification_only"):
                    raise FieldError(f"probes.{i}", f"{probe.name!r} needs classes; a "
                                                    "regression run cannot take it")
        if self.dataset.augment.enabled and DATASETS.get(self.dataset.name).meta.get("tabular"):
            raise FieldError("dataset.augment", f"augmentation needs image data; dataset "
                                                f"{self.dataset.name!r} is a table; turn "
                                                "dataset.augment off")
        return self

    @model_validator(mode="after")
    def _model_takes_the_data(self):
        """Refuse, before any training, a model that cannot take the dataset's input (a CNN
        on 2-feature moons, vgg7 on 8x8 digits) and augmentation of tabular data. Uses only
        registry metadata (datasets' ``shape``, models' ``min_hw``); ``build_model``
        checks the same again on the real tensors."""
        if self.dataset is None or self.model is None:
            return self
        shape = DATASETS.get(self.dataset.name).meta.get("shape")
        if shape is None:
            return self
        shape = tuple(int(d) for d in shape)
        min_hw = MODELS.get(self.model.name).meta.get("min_hw")
        if min_hw is not None and (len(shape) != 3 or min(shape[1:]) < min_hw):
            raise FieldError(
                "model.name",
                f"{self.model.name!r} needs image input (C, H, W) with H, W >= {min_hw}; "
                f"dataset {self.dataset.name!r} gives shape {shape}",
            )
        if self.dataset.augment.enabled and len(shape) != 3:
            raise FieldError(
                "dataset.augment",
                f"augmentation needs image data; dataset {self.dataset.name!r} gives shape "
                f"{shape}; turn dataset.augment off",
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_seeds(self, handler):
        """Leave ``init_seed`` / ``order_seed`` out while unset (they are ``seed``), the
        fields added with trainers (``trainer`` at the built-in loop, ``timeout``,
        ``metric``, and the built-in loop's ``epochs`` / ``dataset`` / ``model`` where
        another trainer leaves them out) while unset, and ``tf32`` while off, so configs
        written before they existed keep their run ids and records read as they did."""
        data = handler(self)
        if isinstance(data, dict):
            for key in (*SOURCE_SEEDS, "timeout", "metric", *BUILTIN_NEEDS):
                if data.get(key, 0) is None:
                    data.pop(key)
            if data.get("tf32") is False:
                data.pop("tf32")
            if data.get("trainer") == {"name": BUILTIN_TRAINER}:
                data.pop("trainer")
        return data

    @property
    def split_seed(self) -> int:
        """The seed of the data split (and subset): ``dataset.split_seed``, else ``seed``."""
        given = None if self.dataset is None else self.dataset.split_seed
        return self.seed if given is None else given

    @property
    def metric_spec(self) -> MetricSpec:
        """The outcome the run's verdicts are about: the declared ``metric``, else the
        built-in loop's test accuracy (higher is better, in [0, 1]), or its test R² for a
        regression dataset (as the analysis judges such a study: at most 1)."""
        if self.metric is not None:
            return self.metric
        if self.dataset is not None and getattr(self.dataset, "task", None) == "regression":
            return MetricSpec(name="test_r2", goal="max", range=[float("-inf"), 1.0])
        return MetricSpec(name=BUILTIN_METRIC, goal="max", range=[0.0, 1.0])

    @property
    def init_seed_value(self) -> int:
        """The seed of the weight initialisation: ``init_seed``, else ``seed``."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def order_seed_value(self) -> int:
        """The seed of batch order, augmentation and dropout: ``order_seed``, else ``seed``."""
        return self.seed if self.order_seed is None else self.order_seed

    def resolved(self) -> dict[str, Any]:
        """The full config as plain data, every default filled in."""
        return self.model_dump(mode="json")


#: Run-level seeds of the sources of variance besides the split (``dataset.split_seed``);
#: left out of a resolved config while unset.
SOURCE_SEEDS = ("init_seed", "order_seed")


def run_id(cfg: RunConfig) -> str:
    """Stable id: a hash of the run's identity (see :mod:`ablab.identity`), 12 hex digits."""
    return identity.run_id(cfg)


# ---------------------------------------------------------------- loading and errors


def format_validation_error(
    exc: pydantic.ValidationError,
    source: str,
    root: type[BaseModel] = RunConfig,
    path_map: Callable[[str], str] | None = None,
) -> str:
    """One line for the first error: ``SOURCE: field.path: message (got VALUE)``."""
    return validation_message(exc, source, root, path_map)


def parse_run(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a run given as plain data; raise ConfigError with one clear line."""
    try:
        return RunConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_run(
    path: str | Path, sets: list[str] | tuple[str, ...] = (), allow_plugins: bool | None = None
) -> RunConfig:
    """Load a run file, apply ``--set`` overrides, validate. Plugins the file names are
    imported only with ``allow_plugins`` (None: ``ABLAB_ALLOW_PLUGINS``)."""
    data = apply_overrides(load_toml(path), sets)
    anchor_dataset(data, Path(path).parent)  # the user's data files: relative to the file
    anchor_trainer(data, Path(path).parent)  # a command runs in the file's folder
    if isinstance(data.get("plugins"), list):  # relative paths are relative to the file
        from ablab.plugins import PluginError, import_plugins, resolve_plugins

        data["plugins"] = resolve_plugins(data["plugins"], Path(path).parent)
        try:
            import_plugins(data["plugins"], allow=allow_plugins)
        except PluginError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    source = str(path) + (" (with --set)" if sets else "")
    cfg = parse_run(data, source)
    from ablab.plugins import PluginError, require_consent_to_run

    try:  # a command trainer runs a program: consent, as for plugins
        require_consent_to_run([cfg], allow_plugins)
    except PluginError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg

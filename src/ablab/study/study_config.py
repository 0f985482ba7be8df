"""The top level of a study file (``name``, ``seeds``, ``[base]``, ``[[vary]]``, ``[tune]``,
``metric``, ``outcomes``, ``variance``...), as pydantic validates it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, field_validator

from ablab.config import MetricSpec, Seed, Strict
from ablab.outcome_catalogue import validation_counterpart
from ablab.references import Reference, ReferenceClaim
from ablab.study.tune_config import TUNE_METRICS, TuneConfig


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

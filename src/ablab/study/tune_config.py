"""A study's ``[tune]`` table: the search space (``loguniform(1e-4, 1.0)``...), the budget,
the sampler and the validation metric tuned on. Plain data; :mod:`ablab.tune` runs Optuna."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ablab.config import Seed, Strict, parse_value
from ablab.study.labels import format_value

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

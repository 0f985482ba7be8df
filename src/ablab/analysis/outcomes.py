"""What a verdict is about: the outcome catalogue.

An :class:`Outcome` is one per-run figure a comparison can judge, with how to read it: its
direction (``goal``), its range (intervals stay inside it), how it is shown (``unit``) and
the family of verdicts it belongs to (its own Holm family per factor, its own section of the
report). The built-in loop's metrics, the regression metrics, the probes' diagnostics,
training dynamics and cost are catalogued here; a study's declared ``metric`` (any name)
becomes one more::

    >>> outcome_of("test_accuracy").goal, scale_of(outcome_of("test_accuracy")).name
    ('max', 'unit')
    >>> scale_of(declared({"name": "roc_auc", "goal": "max", "range": [0, 1]})).name
    'unit'
    >>> scale_of(outcome_of("test_r2")).low, scale_of(outcome_of("test_r2")).high
    (-inf, 1.0)

Where a run's value of an outcome comes from is :func:`run_outcome_values`: the run's final
metrics, its per-epoch history, its probes, or what the run cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ablab.analysis.scales import Scale, difference_scale_for, scale_for_range
from ablab.outcome_catalogue import (
    CATALOGUE,
    DEFAULT_COST,
    DEFAULT_PRIMARY,
    DEFAULT_SECONDARY,
    FAMILIES,
    INF,
    PROBE_OUTCOMES,
    Outcome,
    lookup,
    validation_counterpart,
)

__all__ = ["CATALOGUE", "DEFAULT_PRIMARY", "Outcome", "Outcomes", "declared", "outcome_of",
           "run_outcome_values", "scale_of", "difference_scale_of", "study_outcomes",
           "validation_counterpart"]



def scale_of(outcome: Outcome) -> Scale:
    """Where ``outcome``'s values live (a mean's interval is made there, so it stays
    inside its range)."""
    return scale_for_range(outcome.low, outcome.high)


def difference_scale_of(outcome: Outcome) -> Scale:
    """Where a difference of two values lives (accuracies: [−1, 1])."""
    return difference_scale_for(scale_of(outcome))


def outcome_of(metric: str | Outcome, declared_outcomes: dict[str, Outcome] | None = None
               ) -> Outcome:
    """The outcome called ``metric``: a declared one first, then the catalogue; a name in
    neither is a figure with no known direction or range (higher is better, unbounded)."""
    if isinstance(metric, Outcome):
        return metric
    if declared_outcomes and metric in declared_outcomes:
        return declared_outcomes[metric]
    found = lookup(metric)
    if found is not None:
        return found
    return Outcome(metric, metric.replace("_", " "), "max")


def declared(spec: dict[str, Any] | Any) -> Outcome:
    """The outcome a study's ``metric = { name, goal, range }`` declares. A catalogued name
    keeps its label and unit and takes the declared goal and range where given."""
    if not isinstance(spec, dict):
        spec = spec.model_dump() if hasattr(spec, "model_dump") else dict(vars(spec))
    name = spec["name"]
    base = CATALOGUE.get(name)
    goal = spec.get("goal") or (base.goal if base else "max")
    rng = spec.get("range")
    low, high = (float(rng[0]), float(rng[1])) if rng else (
        (base.low, base.high) if base else (-INF, INF)
    )
    if base is not None:
        unit = base.unit if (low, high) == (base.low, base.high) else ""
        return Outcome(name, base.label, goal, low, high, unit, "performance")
    return Outcome(name, name.replace("_", " "), goal, low, high, "", "performance")


@dataclass(frozen=True)
class Outcomes:
    """A study's judged outcomes: the primary one first, then the others in report order."""

    primary: Outcome
    others: tuple[Outcome, ...] = ()

    @property
    def all(self) -> tuple[Outcome, ...]:
        return (self.primary, *self.others)

    def by_name(self) -> dict[str, Outcome]:
        return {o.name: o for o in self.all}

    def get(self, name: str) -> Outcome:
        return outcome_of(name, self.by_name())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.all)


def study_outcomes(info: dict[str, Any], probes: set[str] | None = None) -> Outcomes:
    """The outcomes a study judges, from ``study.json``'s ``metric`` and ``outcomes`` and
    the probes its runs recorded: the primary one (declared, or test accuracy), test
    cross-entropy beside the default primary, the named extra outcomes, or by default the
    turned-on probes' outcomes and the cost of a run."""
    spec = info.get("metric")
    primary = declared(spec) if spec else CATALOGUE[DEFAULT_PRIMARY]
    names: list[str] = []
    if not spec or spec.get("name") == DEFAULT_PRIMARY:
        names += [n for n in DEFAULT_SECONDARY if n != primary.name]
    asked = info.get("outcomes")
    if asked is None:
        for probe in sorted(probes or ()):
            names += PROBE_OUTCOMES.get(probe, ())
        names += DEFAULT_COST
    else:
        names += list(asked)
    seen = {primary.name}
    others = []
    for n in names:
        if n not in seen:
            seen.add(n)
            others.append(outcome_of(n))
    order = list(FAMILIES)
    others.sort(key=lambda o: order.index(o.family) if o.family in order else len(order))
    return Outcomes(primary, tuple(others))


# ---------------------------------------------------------------- a run's values


def _as_rows(per_epoch) -> list[np.ndarray]:
    """Per-epoch rows of per-layer values as float arrays (None → NaN); a stored record
    read with arrays gives a 2-D array, a JSON one lists of lists."""
    if per_epoch is None:
        return []
    if isinstance(per_epoch, np.ndarray) and per_epoch.ndim == 2 and per_epoch.dtype.kind == "f":
        return list(per_epoch.astype(float))  # packed: the same floats, no loop per value
    rows = []
    for row in per_epoch:
        values = row if isinstance(row, (list, tuple, np.ndarray)) else [row]
        rows.append(np.asarray([np.nan if v is None else float(v) for v in values], float))
    return rows


def _mean_of(values) -> float | None:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        x = values.astype(float).ravel()  # no None in a float array: the same floats
    else:
        x = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _last_row_mean(per_epoch) -> float | None:
    """The mean over layers of the last epoch that has any value."""
    for row in reversed(_as_rows(per_epoch)):
        value = _mean_of(row)
        if value is not None:
            return value
    return None


def _mean_rows(per_epoch) -> float | None:
    return _mean_of([v for v in (_mean_of(r) for r in _as_rows(per_epoch)) if v is not None])


def _flat(values) -> list:
    return [] if values is None else list(np.asarray(values, dtype=object).ravel())


def probe_values(probes: dict[str, Any]) -> dict[str, float | None]:
    """A run's diagnostic outcomes from its probes' output (None where the probe did not
    run or the figure means nothing for its layers: no ReLU-like layer for dead units)."""
    dead = probes.get("dead_units") or {}
    grads = probes.get("gradients") or {}
    zero_mean = dead.get("zero_activation_fraction_mean")
    if isinstance(zero_mean, np.ndarray):
        zero_mean = zero_mean.item() if zero_mean.size == 1 else None
    per_layer = {}
    for name in ("dead_unit_fraction", "zero_activation_fraction"):
        rows = [r for r in _as_rows(dead.get(name)) if np.isfinite(r).any()]
        for i, value in enumerate(rows[-1] if rows else []):
            if np.isfinite(value):
                per_layer[f"{name}[{i}]"] = float(value)
    return {
        **per_layer,
        "dead_unit_fraction": _last_row_mean(dead.get("dead_unit_fraction")),
        "dead_unit_fraction_mean": _mean_rows(dead.get("dead_unit_fraction")),
        "zero_activation_fraction": _last_row_mean(dead.get("zero_activation_fraction")),
        "zero_activation_fraction_mean": (
            float(zero_mean) if isinstance(zero_mean, (int, float)) else None
        ),
        "grad_norm": _last_row_mean(_flat(grads.get("global_grad_norm"))),
        "grad_norm_mean": _mean_of(_flat(grads.get("global_grad_norm"))),
    }


def cost_values(row: dict[str, Any], record: dict[str, Any] | None) -> dict[str, float | None]:
    """Seconds per run, training steps per second (from epochs run, the training split's
    size and the batch size) and peak memory where recorded."""
    final = row.get("final") or (record or {}).get("final") or {}
    seconds = final.get("seconds") or row.get("seconds")
    out: dict[str, float | None] = {
        "seconds": float(seconds) if seconds else None,
        "steps_per_second": None,
        "peak_memory_mb": final.get("peak_memory_mb"),
    }
    sizes = (record or {}).get("sizes") or row.get("sizes") or {}
    epochs = final.get("epochs_run")
    batch = (row.get("config") or {}).get("batch_size")
    n_train = sizes.get("train")
    if seconds and epochs and n_train:
        per_epoch = 1 if batch in (None, "full") else math.ceil(n_train / int(batch))
        out["steps_per_second"] = epochs * per_epoch / float(seconds)
    return out


def run_outcome_values(
    row: dict[str, Any], record: dict[str, Any] | None
) -> dict[str, float | None]:
    """Every catalogued figure a run's record gives beyond its index row's metrics: every
    numeric final metric (a declared metric of any name), its probes' diagnostics and its
    cost."""
    final = row.get("final") or (record or {}).get("final") or {}
    out: dict[str, float | None] = {
        k: float(v) for k, v in final.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if record is not None:
        out.update({k: v for k, v in probe_values(record.get("probes") or {}).items()
                    if v is not None})
    out.update({k: v for k, v in cost_values(row, record).items() if v is not None})
    return out


def metric_scale(metric) -> Scale:
    """The scale of ``metric``'s values (a name from :mod:`ablab.analysis.outcomes` or an
    ``Outcome``): ``metric_scale("test_accuracy").name == "unit"``."""
    return scale_of(outcome_of(metric))


def difference_scale(metric) -> Scale:
    """The scale of a difference of two ``metric`` values (accuracies: [−1, 1])."""
    return difference_scale_of(outcome_of(metric))

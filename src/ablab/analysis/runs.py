"""Runs grouped into variants and factors, and the per-run figures derived from a run's
history (convergence speed, stability, overfitting gap).

Inputs are plain data: index rows as ``StudyStore.rows()`` gives them (``run_id``,
``variant_id``, ``variant_label``, ``variant`` (column → value), ``seed``, ``config``,
``status``, ``final``, ``error``, ``diverged_epoch``) and run records as
``StudyStore.load_record`` gives them (``history``, ``batch_losses``, ``probes``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ablab.analysis.curves import VariantCurves
from ablab.analysis.outcomes import CATALOGUE, run_outcome_values
from ablab.identity import NOT_IN_IDENTITY

#: Final metrics taken from a run's ``final`` dict.
FINAL_METRICS = ("test_accuracy", "test_loss", "test_cross_entropy", "best_val_accuracy")
#: Metrics derived from a run's history.
HISTORY_METRICS = ("convergence_epoch", "stability", "overfit_gap")
METRICS = FINAL_METRICS + HISTORY_METRICS

#: What each metric is called in tables and sentences, and whether higher is better (a
#: view of :data:`ablab.analysis.outcomes.CATALOGUE`).
METRIC_INFO: dict[str, tuple[str, bool]] = {
    name: (o.label, o.higher_is_better) for name, o in CATALOGUE.items()
}

#: Config paths that never make two runs different experiments (see :mod:`ablab.identity`).
IGNORED_PATHS = ("seed", *NOT_IN_IDENTITY)


# Dataset fields that change how a model trains but not what it is tested on.
TRAINING_SIDE_DATASET_FIELDS = {"subset", "val_fraction", "normalize", "augment", "validate_on"}


@dataclass(frozen=True)
class Factor:
    """One ``[[vary]]`` table: its dotted paths, their table columns and its levels."""

    paths: tuple[str, ...]
    columns: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...] = ()  # column values of each level, in plan order
    #: "treatment" (judged) or "context" (compared within), as the study declared it
    #: (``_role`` in its ``[[vary]]`` table, or a dataset option that keeps the test set);
    #: None: the default, a context exactly when the factor changes the test data
    role: str | None = None
    #: True when the study found its levels keep the test set (a dataset option its
    #: dataset declares ``keeps_test``); None: decided from the paths
    keeps_test: bool | None = None

    @property
    def name(self) -> str:
        return self.columns[0]

    @property
    def changes_task(self) -> bool:
        """True when the factor changes the data a variant is tested on (another dataset,
        its generator options, the test hold-out): its levels are contexts to compare
        within, not choices to rank — their accuracies come from different test sets.
        A dataset option its dataset declares test-set keeping does not."""
        if self.keeps_test is not None:
            return not self.keeps_test
        for path in self.paths:
            parts = path.split(".")
            if parts[0] != "dataset":
                continue
            if len(parts) == 1 or parts[1] not in TRAINING_SIDE_DATASET_FIELDS:
                return True
        return False

    @property
    def is_context(self) -> bool:
        """Its levels are contexts to compare within, not choices to judge."""
        if self.role is not None:
            return self.role == "context"
        return self.changes_task

    @property
    def on_different_data(self) -> bool:
        """A treatment whose levels are tested on different data (asked for)."""
        return not self.is_context and self.changes_task and self.role == "treatment"

    def level_of(self, values: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(values.get(c)) for c in self.columns)

    def level_label(self, level: tuple[str, ...]) -> str:
        """``relu``; for a zipped factor the first column's value, with the other columns
        added only where the first does not tell the levels apart."""
        if len(self.columns) == 1:
            return level[0]
        firsts = [lv[0] for lv in self.levels]
        if firsts.count(level[0]) <= 1:
            return level[0]
        rest = ", ".join(f"{c}={v}" for c, v in zip(self.columns[1:], level[1:], strict=True))
        return f"{level[0]} ({rest})"

    def describe(self, values: dict[str, Any]) -> str:
        """``dataset=moons``: this factor's part of a stratum description."""
        level = self.level_of(values)
        return f"{self.columns[0]}={self.level_label(level)}"


@dataclass
class Variant:
    """The runs of one variant (all seeds, every status)."""

    variant_id: str
    label: str
    values: dict[str, str]
    config: dict[str, Any]  # resolved config of its first run
    runs: list[dict[str, Any]] = field(default_factory=list)  # index rows, in plan order
    run_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id → metrics
    #: run_id → the other outcomes its record gives (final metrics of any name, probes'
    #: diagnostics, cost); not in results.csv
    outcome_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what the figures draw of its done runs' records (the records are not kept)
    curves: VariantCurves = field(default_factory=VariantCurves)

    def with_status(self, *statuses: str) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] in statuses]

    @property
    def done(self) -> list[dict[str, Any]]:
        return self.with_status("done")

    @property
    def at_chance(self) -> list[dict[str, Any]]:
        return [r for r in self.done if (r.get("final") or {}).get("at_chance")]

    def by_seed(self, metric: str) -> dict[int, float]:
        """Seed → value of ``metric`` over the variant's ``done`` runs (finite values)."""
        out = {}
        for row in self.done:
            value = self.run_metrics.get(row["run_id"], {}).get(metric)
            if value is None:
                value = self.outcome_values.get(row["run_id"], {}).get(metric)
            if value is not None and math.isfinite(value):
                out[row["seed"]] = float(value)
        return out

    def values_of(self, metric: str) -> list[float]:
        return list(self.by_seed(metric).values())


def history_metrics(history: list[dict[str, Any]], last: int = 5) -> dict[str, float | None]:
    """From one run's per-epoch history:

    - ``convergence_epoch``: first epoch whose validation accuracy reaches 95 % of the final
      validation accuracy;
    - ``stability``: std (ddof 0) of validation accuracy over the last ``last`` epochs;
    - ``overfit_gap``: final train accuracy − final validation accuracy.

    None where the run has no validation data.

    >>> h = [{"epoch": e, "train_accuracy": a + 0.05, "val_accuracy": a}
    ...      for e, a in enumerate([0.5, 0.8, 0.9, 0.9], start=1)]
    >>> history_metrics(h)["convergence_epoch"]
    3
    """
    val = [
        (h["epoch"], h["val_accuracy"]) for h in history if h.get("val_accuracy") is not None
    ]
    out: dict[str, float | None] = dict.fromkeys(HISTORY_METRICS)
    if not val:
        return out
    final = val[-1][1]
    out["convergence_epoch"] = next(e for e, a in val if a >= 0.95 * final)
    tail = np.asarray([a for _, a in val[-last:]], dtype=float)
    out["stability"] = float(tail.std()) if len(tail) >= 2 else None
    train = history[-1].get("train_accuracy")
    if train is not None and history[-1].get("val_accuracy") is not None:
        out["overfit_gap"] = float(train) - float(history[-1]["val_accuracy"])
    return out


def run_metrics(row: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """All per-run metrics: the final ones from the index row, the rest from the history
    (or, without the record, from the index row's ``metrics``, computed by the same
    :func:`history_metrics` when the run was recorded)."""
    final = row.get("final") or (record or {}).get("final") or {}
    out: dict[str, Any] = {m: final.get(m) for m in FINAL_METRICS}
    kept = row.get("metrics")
    if record is None and isinstance(kept, dict):
        out.update({m: kept.get(m) for m in HISTORY_METRICS})
    else:
        out.update(history_metrics((record or {}).get("history") or []))
    return out


def build_factors(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[Factor]:
    """Factors from ``study.json``'s ``factors``, ``columns`` and ``roles``, levels from
    the rows."""
    columns_of = info.get("columns", {})
    roles = list(info.get("roles") or [])
    keeps = list(info.get("keeps_test") or [])
    factors = []
    for i, paths in enumerate(info.get("factors", [])):
        # A factor with _labels shows as one column named by its _name (see study.expand).
        labels = columns_of.get(f"_labels{i}") or columns_of.get("_labels")
        if labels is not None and not any(p in columns_of for p in paths):
            cols: tuple[str, ...] = (labels,)
        else:
            cols = tuple(dict.fromkeys(columns_of.get(p, p) for p in paths))
        levels: list[tuple[str, ...]] = []
        for row in rows:
            level = tuple(str((row.get("variant") or {}).get(c)) for c in cols)
            if level not in levels:
                levels.append(level)
        role = roles[i] if i < len(roles) else None
        keeps_test = keeps[i] if i < len(keeps) else None
        factors.append(Factor(tuple(paths), cols, tuple(levels), role, keeps_test))
    return factors


def build_variants(
    rows: list[dict[str, Any]], records: Mapping[str, dict[str, Any]] | None = None
) -> list[Variant]:
    """Group rows by variant (plan order) and compute every run's metrics; each done run's
    record is folded into its variant's curves. ``records`` is looked up once per row and
    may read each record lazily (``analyze`` does): no record is kept, so memory does not
    grow with the records' size."""
    records = records or {}
    variants: dict[str, Variant] = {}
    for row in rows:
        vid = row.get("variant_id") or row["variant_label"]
        if vid not in variants:
            config = {k: v for k, v in (row.get("config") or {}).items() if k != "seed"}
            variants[vid] = Variant(
                vid, row["variant_label"], dict(row.get("variant") or {}), config
            )
        variant = variants[vid]
        variant.runs.append(row)
        record = records.get(row["run_id"])
        if record is not None and row["status"] == "done":
            variant.curves.add(row, record)
        variant.run_metrics[row["run_id"]] = run_metrics(row, record)
        if row["status"] == "done":
            variant.outcome_values[row["run_id"]] = run_outcome_values(row, record)
    return list(variants.values())


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay whole values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out

"""The outcome catalogue: every per-run figure a verdict can be about, with how to read it
(direction, range, unit, family). Plain data below every layer, so that the study file's
``outcomes`` are validated where the study is read; :mod:`ablab.analysis.outcomes` adds
where each figure comes from and the scale its intervals are made on.

    >>> CATALOGUE["test_accuracy"].goal, CATALOGUE["test_r2"].high
    ('max', 1.0)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

INF = math.inf

#: Families, in the order the report shows their sections.
FAMILIES = {
    "performance": "performance",
    "diagnostic": "diagnostics",
    "dynamics": "training dynamics",
    "cost": "cost",
}


@dataclass(frozen=True)
class Outcome:
    """One judged figure: name as recorded, label for sentences, direction and range.

    ``unit``: ``"fraction"`` (shown ×100: %, differences in pp), ``"s"`` (seconds),
    ``"epochs"``, ``""`` (shown as it is)."""

    name: str
    label: str
    goal: str = "max"  # "max" | "min"
    low: float = -INF
    high: float = INF
    unit: str = ""
    family: str = "performance"

    @property
    def higher_is_better(self) -> bool:
        return self.goal == "max"

    @property
    def percent(self) -> bool:
        return self.unit == "fraction"

    @property
    def has_margin(self) -> bool:
        """The equivalence margin is a fraction: it applies to outcomes in [0, 1]."""
        return self.low == 0.0 and self.high == 1.0

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _fraction(name: str, label: str, goal: str, family: str) -> Outcome:
    return Outcome(name, label, goal, 0.0, 1.0, "fraction", family)


def _positive(name: str, label: str, goal: str, family: str, unit: str = "") -> Outcome:
    return Outcome(name, label, goal, 0.0, INF, unit, family)


#: Every built-in outcome by name.
CATALOGUE: dict[str, Outcome] = {
    o.name: o
    for o in (
        # the built-in loop's final metrics (classification)
        _fraction("test_accuracy", "test accuracy", "max", "performance"),
        _positive("test_loss", "test loss (own loss)", "min", "performance"),
        _positive("test_cross_entropy", "test cross-entropy", "min", "performance"),
        _fraction("best_val_accuracy", "best validation accuracy", "max", "performance"),
        _fraction("test_f1", "test F1", "max", "performance"),
        _fraction("test_precision", "test precision", "max", "performance"),
        _fraction("test_recall", "test recall", "max", "performance"),
        # regression
        _positive("test_rmse", "test RMSE", "min", "performance"),
        _positive("test_mae", "test MAE", "min", "performance"),
        _positive("test_mse", "test MSE", "min", "performance"),
        Outcome("test_r2", "test R²", "max", -INF, 1.0, "", "performance"),
        # training dynamics (from the per-epoch history)
        _positive("convergence_epoch", "epochs to 95 % of final val. accuracy", "min",
                  "dynamics", "epochs"),
        _positive("stability", "std of val. accuracy, last 5 epochs", "min", "dynamics",
                  "fraction"),
        Outcome("overfit_gap", "final train − val. accuracy", "min", -1.0, 1.0, "fraction",
                "dynamics"),
        _positive("best_val_epoch", "epoch of the best val. accuracy", "min", "dynamics",
                  "epochs"),
        # diagnostics (probes)
        _fraction("dead_unit_fraction", "dead-unit fraction (last epoch, mean over layers)",
                  "min", "diagnostic"),
        _fraction("dead_unit_fraction_mean",
                  "dead-unit fraction (mean over layers and epochs)", "min", "diagnostic"),
        _fraction("zero_activation_fraction",
                  "zero-activation fraction (last epoch, mean over layers)", "min",
                  "diagnostic"),
        _fraction("zero_activation_fraction_mean",
                  "zero-activation fraction (mean over layers and epochs)", "min",
                  "diagnostic"),
        _positive("grad_norm", "gradient norm (last epoch, global)", "max", "diagnostic"),
        _positive("grad_norm_mean", "gradient norm (mean over epochs, global)", "max",
                  "diagnostic"),
        # cost
        Outcome("seconds", "time per run", "min", 0.0, INF, "s", "cost"),
        Outcome("steps_per_second", "training steps per second", "max", 0.0, INF,
                "steps/s", "cost"),
        Outcome("peak_memory_mb", "peak memory (MB)", "min", 0.0, INF, "MB", "cost"),
    )
}

#: The outcome verdicts are about when a study declares none.
DEFAULT_PRIMARY = "test_accuracy"
#: Judged beside the primary one without being asked (the built-in loop records it).
DEFAULT_SECONDARY = ("test_cross_entropy",)
#: Judged without being asked when a study turns a probe on: probe → its outcomes.
PROBE_OUTCOMES = {
    "dead_units": ("zero_activation_fraction_mean", "dead_unit_fraction"),
    "gradients": ("grad_norm",),
}
#: Cost outcomes judged without being asked.
DEFAULT_COST = ("seconds",)



def validation_counterpart(outcome: Outcome, recorded: set[str] | None = None) -> str:
    """The validation figure that stands for ``outcome`` when tuning: ``test_X`` → ``val_X``
    (``best_val_X`` when only that is recorded); other names as they are."""
    name = outcome.name
    if not name.startswith("test_"):
        return name
    stem = name.removeprefix("test_")
    if recorded is not None and f"val_{stem}" not in recorded and f"best_val_{stem}" in recorded:
        return f"best_val_{stem}"
    return f"val_{stem}"


#: Every name a study's ``outcomes`` may give (and ``NAME[i]`` for these, per layer).
OUTCOME_NAMES = tuple(CATALOGUE)
#: Diagnostics also judged per activation layer: ``dead_unit_fraction[0]`` is the first
#: activation layer's, at the last measured epoch.
PER_LAYER = {"dead_unit_fraction": "dead-unit fraction",
             "zero_activation_fraction": "zero-activation fraction"}


def lookup(name: str) -> Outcome | None:
    """The catalogued outcome called ``name`` (``NAME[i]``: one layer's), or None.

    >>> lookup("dead_unit_fraction[1]").label
    'dead-unit fraction of activation layer 1 (last epoch)'
    """
    if name in CATALOGUE:
        return CATALOGUE[name]
    m = re.fullmatch(r"(\w+)\[(\d+)\]", name)
    if m and m.group(1) in PER_LAYER:
        base = CATALOGUE[m.group(1)]
        label = f"{PER_LAYER[m.group(1)]} of activation layer {m.group(2)} (last epoch)"
        return Outcome(name, label, base.goal, base.low, base.high, base.unit, base.family)
    return None

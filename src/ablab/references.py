"""What a source reported, as a study file states it: ``[[reference]]`` figures and
``[[reference_claim]]`` verdicts. Part of the config stage (schema only); the report sets
them beside ablab's own figures (:mod:`ablab.report.against_source`).

    [[reference]]                       # one figure the source reported
    levels = { loss = "cross_entropy", "dataset.name" = "digits" }
    metric = "test_accuracy"            # in the metric's own unit: accuracies as fractions
    value = 0.9833
    source = "source report 001, experiment A, Digits table"

    [[reference_claim]]                 # one verdict the source drew (from one run)
    claim = "cross-entropy beats MSE on Digits"
    better = { loss = "cross_entropy", "dataset.name" = "digits" }
    worse = { loss = "mse_softmax", "dataset.name" = "digits" }
    source = "source report 001, experiment A"

``levels`` names one variant: each key is a dotted config path (``"optimizer.lr"``,
``"dataset.name"``; a component given by name, ``loss = "mse_softmax"``, matches its name,
a table matches the keys it gives) or a column of the study's tables (``model =
"model3"`` for a labelled factor).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ablab.config import Strict

#: Metrics a reference figure may name: (description, unit, higher is better). "fraction"
#: values are written as fractions (0.9833 for 98.33 %) and shown in %.
REFERENCE_METRICS: dict[str, tuple[str, str, bool]] = {
    "test_accuracy": ("final test accuracy", "fraction", True),
    "test_cross_entropy": ("final test softmax cross-entropy", "value", False),
    "test_loss": ("final test loss (the run's own loss)", "value", False),
    "best_val_accuracy": ("best validation accuracy", "fraction", True),
    "final_train_loss": ("training loss of the last epoch", "value", False),
    "final_train_accuracy": ("training accuracy of the last epoch", "fraction", True),
    "final_val_loss": ("validation loss of the last epoch", "value", False),
    "final_val_accuracy": ("validation accuracy of the last epoch", "fraction", True),
    "zero_activation_fraction_mean": (
        "zero-activation fraction averaged over layers and epochs (\"dead ReLU %\")",
        "fraction",
        False,
    ),
}
ReferenceMetric = Literal[
    "test_accuracy",
    "test_cross_entropy",
    "test_loss",
    "best_val_accuracy",
    "final_train_loss",
    "final_train_accuracy",
    "final_val_loss",
    "final_val_accuracy",
    "zero_activation_fraction_mean",
]

Levels = Annotated[dict[str, Any], Field(min_length=1)]


class Reference(Strict):
    """One figure a source reported, for one variant of the study."""

    levels: dict[str, Any] = {}  # empty: the study has one variant
    metric: ReferenceMetric = "test_accuracy"
    value: float
    approximate: bool = False  # the source gave it as "about" (shown with ≈)
    source: Annotated[str, Field(min_length=1)]  # where the figure comes from
    note: str = ""

    @model_validator(mode="after")
    def _unit(self):
        unit = REFERENCE_METRICS[self.metric][1]
        if unit == "fraction" and not 0.0 <= self.value <= 1.0:
            raise ValueError(
                f"{self.metric} is a fraction: write {self.value / 100:g} for {self.value:g} %"
            )
        return self


class ReferenceClaim(Strict):
    """One verdict a source drew: variant ``better`` beats variant ``worse`` on ``metric``."""

    claim: Annotated[str, Field(min_length=1)]  # the source's words
    better: Levels
    worse: Levels
    metric: ReferenceMetric = "test_accuracy"
    source: Annotated[str, Field(min_length=1)]


def references_from_text(text: str) -> tuple[list[Reference], list[ReferenceClaim]]:
    """The ``[[reference]]`` and ``[[reference_claim]]`` tables of a study file's text (as
    the store keeps it), validated; empty when the text has none or is not a study file
    (the file was validated when the study was loaded)."""
    import tomllib

    import pydantic

    try:
        data = tomllib.loads(text) if text else {}
        refs = [Reference.model_validate(r) for r in data.get("reference", [])]
        claims = [ReferenceClaim.model_validate(c) for c in data.get("reference_claim", [])]
    except (tomllib.TOMLDecodeError, pydantic.ValidationError, TypeError):
        return [], []
    return refs, claims

"""What one training run produces: plain data, so stores and executors never need torch."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Status = Literal["done", "diverged", "failed"]

_IMMUTABLE = (str, int, float, bool, type(None))


def _plain_copy(value: Any) -> Any:
    """A copy of plain data: dicts and lists rebuilt, immutable leaves shared, anything
    else deep-copied (what ``dataclasses.asdict`` gives, without a call per number)."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    if type(value) is tuple:
        return tuple(_plain_copy(v) for v in value)
    return copy.deepcopy(value)


@dataclass
class RunResult:
    run_id: str
    config: dict[str, Any]  # the fully resolved run config
    status: Status
    # Per epoch: an ``EpochRecord.to_dict()``.
    history: list[dict[str, Any]] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)  # every training batch, in order
    # A ``FinalMetrics.to_dict()``.
    final: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # train / val / test examples
    probes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    diverged_epoch: int | None = None
    device: str = "cpu"
    input_shape: list[int] = field(default_factory=list)  # one example's shape, for load_model
    num_classes: int | None = None
    # ``keep = "best" | "last"``: the kept weights (a state_dict of CPU tensors). Never part
    # of the record (to_dict); the store saves them as DIR/runs/ID.safetensors.
    weights: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        acc = self.final.get("test_accuracy")
        shown = f", test_accuracy {acc:.4f}" if isinstance(acc, float) else ""
        return (f"<RunResult {self.run_id} {self.status}: {len(self.history)} epochs"
                f"{shown}>")

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (a copy). ``dataclasses.asdict`` deep-copies every
        float of the history and probes one by one (~24,000 calls for a 300-epoch run with
        probes); plain data needs only its containers copied."""
        return {
            f.name: _plain_copy(getattr(self, f.name))
            for f in fields(self) if f.name != "weights"
        }

    def weights_bytes(self) -> bytes | None:
        """The kept weights as safetensors bytes (what crosses process borders)."""
        if self.weights is None:
            return None
        from safetensors.torch import save

        return save(self.weights)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        data = {k: v for k, v in data.items() if k != "weights"}
        return cls(**data)


@dataclass
class EpochRecord:
    """One epoch of one run. Stored as ``to_dict()`` in ``RunResult.history``; a loss that
    is not finite is stored as missing (``drop_non_finite``), never as NaN."""

    epoch: int  # 1-based
    train_loss: float | None
    train_accuracy: float | None  # None for a regression run
    lr: float  # the rate this epoch trained with
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_cross_entropy: float | None = None
    seconds: float = 0.0  # training, validation and what callbacks measured
    # A regression run's validation figures, in the target's units (absent otherwise).
    val_rmse: float | None = None
    val_mae: float | None = None
    val_r2: float | None = None
    val_mse: float | None = None

    def is_finite(self) -> bool:
        return all(v is None or math.isfinite(v) for v in (self.train_loss, self.val_loss))

    def drop_non_finite(self) -> None:
        for name in ("train_loss", "val_loss", "val_cross_entropy", *REGRESSION_VAL_FIELDS):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                setattr(self, name, None)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "val_cross_entropy": self.val_cross_entropy,
            "lr": self.lr,
            "seconds": self.seconds,
        }
        data.update((k, getattr(self, k)) for k in REGRESSION_VAL_FIELDS
                    if getattr(self, k) is not None)
        return data


#: A regression run's per-epoch validation figures (in its history only when present).
REGRESSION_VAL_FIELDS = ("val_rmse", "val_mae", "val_r2", "val_mse")


#: The test figures of ``FinalMetrics``, absent from a run whose weights are not finite.
TEST_FIELDS = (
    "test_loss",
    "test_cross_entropy",
    "test_accuracy",
    "test_precision",
    "test_recall",
    "test_f1",
    "confusion",
)
#: A regression run's test figures, in the target's units (``ablab.train.metrics``).
REGRESSION_TEST_FIELDS = ("test_loss", "test_rmse", "test_mae", "test_r2", "test_mse")


@dataclass
class FinalMetrics:
    """A run's final figures. Stored as ``to_dict()`` in ``RunResult.final``: optional
    figures that do not apply are left out (no test figures for diverged weights, no
    ``kept_epoch`` without kept weights, ``batched_seeds`` only for seeds trained
    together), in the key order records have always had."""

    epochs_run: int
    stopped_early: bool
    best_val_accuracy: float | None
    best_val_epoch: int | None
    chance_accuracy: float | None  # None for a regression run (no classes, no chance)
    weights_epoch: int | None = None  # the epoch the tested weights come from
    test_loss: float | None = None  # the run's own loss
    test_cross_entropy: float | None = None  # the common yardstick
    test_accuracy: float | None = None
    test_precision: float | None = None  # macro
    test_recall: float | None = None
    test_f1: float | None = None
    confusion: list[list[int]] | None = None
    at_chance: bool | None = None
    kept_epoch: int | None = None
    seconds: float = 0.0
    batched_seeds: int | None = None
    # regression runs only (``task = "regression"``): in the target's units
    test_rmse: float | None = None
    test_mae: float | None = None
    test_r2: float | None = None
    test_mse: float | None = None
    best_val_rmse: float | None = None  # the lowest validation RMSE (at best_val_epoch)
    #: the confusion matrix's classes, in row order: the names the dataset gives (a csv's
    #: string labels, an npz ``classes`` array, image folders' names); recorded only when
    #: they are not the numbers 0..K-1
    class_names: list[str] | None = None

    @property
    def names_classes(self) -> bool:
        """The dataset gave its classes names other than their numbers 0..K-1 (recorded
        then, so the report labels the confusion matrices with them)."""
        names = self.class_names
        return (self.confusion is not None and names is not None
                and names != [str(i) for i in range(len(names))])

    @property
    def regression(self) -> bool:
        return self.test_rmse is not None or self.best_val_rmse is not None

    @property
    def tested(self) -> bool:
        return self.test_accuracy is not None or self.test_rmse is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "best_val_accuracy": self.best_val_accuracy,
            "best_val_epoch": self.best_val_epoch,
            "chance_accuracy": self.chance_accuracy,
        }
        if self.best_val_rmse is not None:
            data["best_val_rmse"] = self.best_val_rmse
        if self.tested:
            data["weights_epoch"] = self.weights_epoch
            names = REGRESSION_TEST_FIELDS if self.test_rmse is not None else TEST_FIELDS
            data.update((name, getattr(self, name)) for name in names)
            if self.names_classes:
                data["class_names"] = list(self.class_names)
            data["at_chance"] = self.at_chance
        else:
            data.update(at_chance=self.at_chance, weights_epoch=self.weights_epoch)
        if self.kept_epoch is not None:
            data["kept_epoch"] = self.kept_epoch
        data["seconds"] = self.seconds
        if self.batched_seeds is not None:
            data["batched_seeds"] = self.batched_seeds
        return data

"""Data containers: what a dataset returns (``RawData``), and what training consumes
(``Split`` and ``DataBundle``, tensors already on the run's device)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and torch only in annotations: the datasets' modules import this
    import numpy as np
    import torch


@dataclass
class RawData:
    """A dataset as its registry function returns it (numpy, on the host).

    ``x``: uint8 N×C×H×W for images, float32 N×C×H×W (e.g. digits) or float32 N×F for
    tabular data; ``y``: int64 labels 0..K-1 (``task = "classification"``) or float32
    targets (``task = "regression"``, ``class_names`` empty). ``x_test``/``y_test`` hold the
    official test set when the dataset has one (None otherwise). ``default_normalize`` is
    the mode used when the config leaves ``normalize`` unset; ``standardize_target``
    (regression only): train on the target standardised with the training split's mean and
    std (metrics are still reported in the target's own units)."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    default_normalize: str = "unit"
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    task: str = "classification"
    standardize_target: bool = False

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    @property
    def has_official_test(self) -> bool:
        return self.x_test is not None


@dataclass
class Split:
    """One split in stored form: ``x`` uint8 N×C×H×W (images) or float32 (tabular, digits),
    ``y`` int64 (classes) or float32 (regression targets, original units), both on the
    same device. Normalize batches with ``DataBundle.normalize``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DataBundle:
    """The splits of one run plus how to normalize them.

    ``val`` is the validation split; it is None when ``val_fraction`` is 0 and
    ``validate_on == "holdout"``. When ``validate_on == "test"``, ``val`` IS the test split
    (the same object), so per-epoch "validation" metrics are test metrics.

    ``normalize(x)`` returns ``(x.float() * scale - mean) / std`` with ``mean``/``std``
    shaped (1, C, 1, 1) for images and (1, F) for tabular data, or (1, C, H, W) for
    ``normalize = "per_feature"`` (one mean / std per pixel).

    ``task``: "classification" (``num_classes`` outputs) or "regression" (``num_classes``
    is the model's output width, 1, and ``class_names`` is empty). A regression model
    trains on ``training_target(y)`` (the target standardised by ``target_mean`` /
    ``target_std`` when the dataset asks for it, else as is); ``to_target_units`` maps its
    outputs back, so every reported metric is in the target's own units."""

    name: str
    train: Split
    val: Split | None
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    normalize_mode: str
    scale: float
    mean: torch.Tensor
    std: torch.Tensor
    validate_on: str = "holdout"
    meta: dict = field(default_factory=dict)
    task: str = "classification"
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    @property
    def output_dim(self) -> int:
        """The model's output width: one per class, or 1 for a regression target."""
        return self.num_classes

    def training_target(self, y: torch.Tensor) -> torch.Tensor:
        """What the loss compares the model's output with: labels as they are; a regression
        target standardised (when the dataset asks for it)."""
        if not self.is_regression:
            return y
        return (y - self.target_mean) / self.target_std

    def to_target_units(self, output: torch.Tensor) -> torch.Tensor:
        """A regression model's output (N×1) as predictions (N) in the target's units."""
        return output.reshape(output.shape[0], -1)[:, 0] * self.target_std + self.target_mean

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.scale - self.mean) / self.std

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "val": len(self.val) if self.val is not None else 0,
            "test": len(self.test),
        }

    def to(self, device: str | torch.device) -> DataBundle:
        """A copy with every tensor on ``device`` (val stays the test split if it was)."""
        test = self.test.to(device)
        if self.val is None:
            val = None
        elif self.val is self.test:
            val = test
        else:
            val = self.val.to(device)
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            val=val,
            test=test,
            mean=self.mean.to(device),
            std=self.std.to(device),
        )

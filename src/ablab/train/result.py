"""What one training run produces: plain data, so stores and executors never need torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["done", "diverged", "failed"]


@dataclass
class RunResult:
    run_id: str
    config: dict[str, Any]  # the fully resolved run config
    status: Status
    # Per epoch: epoch (1-based), train_loss, train_accuracy, val_loss, val_accuracy,
    # val_cross_entropy, lr, seconds.
    history: list[dict[str, Any]] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)  # every training batch, in order
    # test_loss (the run's own loss), test_cross_entropy (common yardstick), test_accuracy,
    # test_precision / test_recall / test_f1 (macro), confusion, chance_accuracy, at_chance,
    # weights_epoch, best_val_accuracy, best_val_epoch, epochs_run, stopped_early, seconds.
    final: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # train / val / test examples
    probes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    diverged_epoch: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**data)

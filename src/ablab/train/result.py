"""What one training run produces: plain data, so stores and executors never need torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
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
    input_shape: list[int] = field(default_factory=list)  # one example's shape, for load_model
    num_classes: int | None = None
    # ``keep = "best" | "last"``: the kept weights (a state_dict of CPU tensors). Never part
    # of the record (to_dict); the store saves them as DIR/runs/ID.safetensors.
    weights: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, weights=None))
        data.pop("weights")
        return data

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

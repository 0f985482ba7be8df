"""Keras-style early stopping (``monitor``, ``patience``, ``min_delta``,
``restore_best_weights``)."""

from __future__ import annotations

import copy

import torch

from ablab.config import EarlyStoppingConfig


class EarlyStopping:
    """Stops when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs in a row (Keras semantics). With ``restore_best_weights`` the best epoch's
    weights are put back when training ends, stopped early or not.

    >>> stopper = EarlyStopping(EarlyStoppingConfig(patience=2))
    >>> [stopper.update(e, {"val_loss": v}, None) for e, v in enumerate([1.0, 0.9, 0.95, 0.93], 1)]
    [False, False, False, True]
    """

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.maximize = cfg.monitor.endswith("accuracy")
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.maximize:
            return value - self.cfg.min_delta > self.best
        return value + self.cfg.min_delta < self.best

    def update(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module | None) -> bool:
        """Record this epoch; return True when training should stop."""
        value = metrics[self.cfg.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.cfg.restore_best_weights and model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.wait += 1
        if self.wait >= self.cfg.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, model: torch.nn.Module) -> int | None:
        """Load the best weights if configured; return the epoch they came from."""
        if self.cfg.restore_best_weights and self.best_state is not None:
            model.load_state_dict(self.best_state)
            return self.best_epoch
        return None

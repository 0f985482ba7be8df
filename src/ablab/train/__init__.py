"""Training: losses, optimizers, schedules, callbacks, metrics and ``fit``."""

from ablab.train import losses, optimizers, schedules  # noqa: F401  (fill the registries)
from ablab.train.callbacks import Callback
from ablab.train.loop import evaluate, fit, resolve_device
from ablab.train.result import EpochRecord, FinalMetrics, RunResult

__all__ = [
    "fit", "evaluate", "resolve_device", "RunResult", "EpochRecord", "FinalMetrics", "Callback"
]

"""Training: losses, optimizers, schedules, callbacks, metrics, ``fit`` and the trainers
(``ablab.train.trainers``: what trains a run, the built-in loop being one)."""

from ablab.train import losses, optimizers, schedules, trainers  # noqa: F401  (registries)
from ablab.train.callbacks import Callback
from ablab.train.loop import evaluate, fit, resolve_device
from ablab.train.result import EpochRecord, FinalMetrics, RunResult

__all__ = [
    "fit", "evaluate", "resolve_device", "RunResult", "EpochRecord", "FinalMetrics", "Callback"
]

"""Training: losses, optimizers, schedules, callbacks, metrics, ``fit`` and the trainers
(``ablab.train.trainers``: what trains a run, the built-in loop being one; the ``command``
trainer in ``ablab.train.command``).

The registering modules (losses, optimizers, schedules, trainers, command) import no
torch; ``ablab.registry.load_builtins`` loads them. The names below are imported from their
modules on first use (``ablab.lazy``): ``fit`` from :mod:`ablab.train.loop` (torch), where
tests replace it (``monkeypatch.setattr(ablab.train.loop, "fit", ...)``).
"""

from ablab.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), {
    "callbacks": ("Callback",),
    "loop": ("evaluate", "fit", "resolve_device"),
    "result": ("EpochRecord", "FinalMetrics", "RunResult"),
})

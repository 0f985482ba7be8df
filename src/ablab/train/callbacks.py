"""Callbacks: what happens around the training of one run, in the style of Keras.

A ``Callback`` has a no-op method for each moment of training; a ``CallbackList`` calls
its callbacks in order. ``fit`` and the seed-batched ``fit_seeds`` call the same hooks
with the same ``RunState`` (see ``ablab.train.state``), so early stopping, the learning
rate schedule, kept weights, probes and progress behave alike on both paths:

- ``on_train_begin(run)``: the model, data and optimizer are built;
- ``on_epoch_begin(run, epoch)``;
- ``on_backward_end(run)``: after each batch's backward pass, before the optimizer
  step; called only when some callback ``wants_gradients``;
- ``on_epoch_end(run, record)``: the epoch's ``EpochRecord`` (trained and validated;
  non-finite losses already dropped and ``run.diverged`` set). Set ``run.stop_training``
  to end training after this epoch;
- ``on_train_end(run)``: after the last epoch, before the test evaluation (weights
  restored here are the ones tested).

The standard list (``run_callbacks``) runs in this order: schedule, early stopping, kept
weights, probes, progress; callbacks given to ``fit`` come after it, so they see finished
records. A run's result must depend on its config alone: a callback that changes the
weights, the optimizer or the random state makes a run that no config describes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from ablab.config import EarlyStoppingConfig, RunConfig
from ablab.probes import ProbeContext, attach_probes
from ablab.probes.base import mode_independent
from ablab.train.result import EpochRecord
from ablab.train.schedules import EpochSchedule

if TYPE_CHECKING:
    from ablab.train.state import RunState

#: ``fit``'s ``on_epoch``: receives each epoch's record as stored (a dict).
EpochCallback = Callable[[dict[str, Any]], None]


class Callback:
    """Base class: every hook does nothing."""

    wants_gradients = False

    def on_train_begin(self, run: RunState) -> None:
        pass

    def on_epoch_begin(self, run: RunState, epoch: int) -> None:
        pass

    def on_backward_end(self, run: RunState) -> None:
        pass

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        pass

    def on_train_end(self, run: RunState) -> None:
        pass


class CallbackList(Callback):
    """Callbacks called in order, as one."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    @property
    def wants_gradients(self) -> bool:  # type: ignore[override]
        return any(cb.wants_gradients for cb in self.callbacks)

    def on_train_begin(self, run: RunState) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(run)

    def on_epoch_begin(self, run: RunState, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(run, epoch)

    def on_backward_end(self, run: RunState) -> None:
        for cb in self.callbacks:
            cb.on_backward_end(run)

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(run, record)

    def on_train_end(self, run: RunState) -> None:
        for cb in self.callbacks:
            cb.on_train_end(run)


class LearningRateScheduler(Callback):
    """Steps the run's schedule after each epoch, with the epoch's record (which
    ``reduce_on_plateau`` reads its ``monitor`` from)."""

    def __init__(self, schedule: EpochSchedule):
        self.schedule = schedule

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        if not run.diverged:
            self.schedule.step(record.to_dict())


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs in a row (Keras semantics). With ``restore_best_weights`` the best epoch's
    weights are put back when training ends, stopped early or not.

    >>> stopper = EarlyStopping(EarlyStoppingConfig(patience=2))
    >>> [stopper.update(e, {"val_loss": v}, None) for e, v in enumerate([1.0, 0.9, 0.95, 0.93], 1)]
    [False, False, False, True]
    """

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.maximize = cfg.monitor in ("val_accuracy", "val_r2")
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        if not run.diverged and self.update(record.epoch, record.to_dict(), run.model):
            run.stop_training = run.stopped_early = True

    def on_train_end(self, run: RunState) -> None:
        if not run.diverged:  # non-finite weights are never tested, restored or not
            run.weights_epoch = self.restore(run.model) or run.weights_epoch

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


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state_dict on the CPU (what ``keep`` returns)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class KeepWeights(Callback):
    """``keep = "best"``: the weights of the epoch with the best validation accuracy (the
    lowest validation RMSE for a regression run); ``"last"`` (or ``"best"`` without
    validation data): the weights tested. Never the weights of a diverged run
    (``finish_run`` drops them if the test loss is not finite)."""

    def __init__(self, keep: str):
        self.keep = keep
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None  # epoch, score, w

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        # higher is better: accuracy, or minus the RMSE of a regression run
        score = record.val_accuracy if record.val_rmse is None else -record.val_rmse
        if self.keep != "best" or run.diverged or score is None:
            return
        if self.best is None or score > self.best[1]:
            self.best = (record.epoch, score, cpu_state(run.model))

    def on_train_end(self, run: RunState) -> None:
        if run.diverged:
            return
        if self.best is not None:
            run.kept_epoch, run.result.weights = self.best[0], self.best[2]
        else:
            run.kept_epoch, run.result.weights = run.weights_epoch, cpu_state(run.model)


class Probes(Callback):
    """The run's probes (``cfg.probes``): attached when training begins, measured after
    each epoch (their time counts in the epoch's ``seconds``), summarised into
    ``RunResult.probes`` when it ends (after best weights are restored)."""

    def __init__(self) -> None:
        self.probes: Any = None

    @property
    def wants_gradients(self) -> bool:  # type: ignore[override]
        return self.probes is not None and self.probes.wants_gradients

    def on_train_begin(self, run: RunState) -> None:
        cfg = run.cfg
        context = ProbeContext(
            run.model, run.bundle, cfg.probe_batch_size, cfg.seed, cfg.epochs, run.optimizer,
            training_forward=training_forward_is_probe_pass(run),
            training_order=lambda: next_training_order(run),
        )
        self.probes = attach_probes(cfg.probes, context)

    def on_backward_end(self, run: RunState) -> None:
        self.probes.after_backward()

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        started = time.perf_counter()
        continues = not run.stop_training and record.epoch < run.cfg.epochs
        self.probes.on_epoch_end(record.epoch, training_continues=continues)
        record.seconds += time.perf_counter() - started

    def on_train_end(self, run: RunState) -> None:
        run.result.probes = self.probes.finish()


def training_forward_is_probe_pass(run: RunState) -> bool:
    """Whether each training step's forward pass computes what the probes' own pass over
    the probe batch would, on the weights the step starts from: the steps call the run's
    model itself (``fit``; not ``fit_seeds``'s batched copy), one batch per epoch holding
    the whole training split, which the probe batch holds too (``probe_batch_size`` is
    at least the split), without augmentation, in fp32, uncompiled (hooks fire), in the
    default memory layout, and a model that computes the same in train and eval mode (no
    dropout or batch norm). Then the order-free probes (dead units) read that pass
    instead of running one more forward per epoch."""
    cfg, n = run.cfg, len(run.bundle.train)
    return (
        run.steps_call_model
        and n > 0
        and len(run.loader) == 1
        and run.loader.batch_size >= n
        and run.loader.augment is None
        and cfg.probe_batch_size >= n
        and cfg.precision == "fp32"
        and cfg.compile is False
        and run.memory_format == torch.contiguous_format
        and mode_independent(run.model)
    )


def next_training_order(run: RunState) -> torch.Tensor:
    """The order of the training split's samples in the next epoch's (single) batch: the
    permutation the shuffling loader will draw next, drawn from a copy of its generator
    (the loader draws ``randperm(n)`` with it at the start of each epoch)."""
    loader, n = run.loader, len(run.bundle.train)
    device = run.bundle.train.x.device
    if not loader.shuffle:
        return torch.arange(n, device=device)
    generator = torch.Generator(device=loader.generator.device)
    generator.set_state(loader.generator.get_state())
    return torch.randperm(n, generator=generator, device=device)


class Progress(Callback):
    """Hands each epoch's record, as stored, to ``on_epoch`` (display only)."""

    def __init__(self, on_epoch: EpochCallback):
        self.on_epoch = on_epoch

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None:
        self.on_epoch(record.to_dict())


def run_callbacks(
    cfg: RunConfig,
    on_epoch: EpochCallback | None = None,
    schedule: EpochSchedule | None = None,
    extra: Iterable[Callback] = (),
) -> CallbackList:
    """The callbacks a run's config asks for, in their order, then ``extra``.
    ``schedule`` is left out where one schedule steps several runs (``fit_seeds``)."""
    callbacks: list[Callback] = []
    if schedule is not None:
        callbacks.append(LearningRateScheduler(schedule))
    if cfg.early_stopping:
        callbacks.append(EarlyStopping(cfg.early_stopping))
    if cfg.keep != "none":
        callbacks.append(KeepWeights(cfg.keep))
    callbacks.append(Probes())
    if on_epoch is not None:
        callbacks.append(Progress(on_epoch))
    return CallbackList([*callbacks, *extra])

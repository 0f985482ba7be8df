"""The training loop: ``fit(config) -> RunResult``, a pure function of its config.

One obvious path: load data onto the device, build the model, then for each epoch train
on shuffled index batches, validate, and hand the epoch's record to the callbacks (the
schedule, early stopping, kept weights, probes, progress: ``ablab.train.callbacks``).
Metric reductions stay on the device until the epoch ends (one host sync per epoch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ablab.config import RunConfig
from ablab.data import BatchLoader
from ablab.train.accel import Forward, autocast, compiled_forward
from ablab.train.callbacks import Callback, CallbackList, EpochCallback, run_callbacks
from ablab.train.losses import LossFn, build_loss
from ablab.train.optimizers import build_optimizer
from ablab.train.result import EpochRecord, RunResult
from ablab.train.schedules import build_schedule
from ablab.train.state import (
    RunState,
    close_epoch,
    evaluate,
    finish_run,
    open_record,
    resolve_device,
    start_run,
)

__all__ = ["fit", "train_epoch", "evaluate", "resolve_device"]


def train_epoch(
    model: torch.nn.Module,
    loader: BatchLoader,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    on_backward: Callable[[], None] | None = None,
    *,
    forward: Forward | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over ``loader``: (per-batch losses, correct predictions, examples seen),
    both tensors on the device — nothing is read back to the host here (no correct
    predictions are counted for a regression target: they stay 0). ``forward``
    (default: the model) runs under ``precision``'s autocast; the loss and the backward
    pass run in fp32. ``on_backward`` (optional) is called after each backward pass,
    before the optimizer step."""
    model.train()
    forward = forward or model
    device = next(model.parameters()).device
    batch_losses = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    classes = not loader.bundle.is_regression
    for i, (x, y) in enumerate(loader):
        with autocast(device, precision):
            logits = forward(x)
        logits = logits.float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if on_backward is not None:
            on_backward()
        optimizer.step()
        batch_losses[i] = loss.detach()
        if classes:
            correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += y.numel()
    return batch_losses, correct, seen


def _train_and_validate(
    run: RunState, epoch: int, loss_fn: LossFn, callbacks: CallbackList, **speed: Any
) -> EpochRecord:
    """One epoch of training, then validation: the epoch's record (without its time)."""
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this epoch trains with
    on_backward = (lambda: callbacks.on_backward_end(run)) if callbacks.wants_gradients else None
    batch_losses, correct, seen = train_epoch(
        run.model, run.loader, loss_fn, run.optimizer, on_backward, **speed
    )
    regression = run.bundle.is_regression
    train_accuracy = None if regression else correct.item() / seen
    record = open_record(run, epoch, lr, batch_losses.tolist(), train_accuracy)
    if run.bundle.val is not None:
        val = evaluate(
            run.model, run.bundle.val, run.bundle, loss_fn, run.cfg.eval_batch_size,
            memory_format=run.memory_format, **speed,
        )
        record.val_loss, record.val_accuracy = val["loss"], val["accuracy"]
        record.val_cross_entropy = val["cross_entropy"]
        if regression:
            record.val_rmse, record.val_mae = val["rmse"], val["mae"]
            record.val_r2, record.val_mse = val["r2"], val["mse"]
    return record


def fit(
    cfg: RunConfig,
    on_epoch: EpochCallback | None = None,
    callbacks: Iterable[Callback] = (),
) -> RunResult:
    """Train one run. ``on_epoch`` (optional) receives each epoch's record, for progress
    display only; ``callbacks`` (optional) are called after the run's own, and must not
    change the result either.

    >>> from ablab.config import parse_run
    >>> cfg = parse_run({"epochs": 1, "dataset": "moons", "model": {"name": "mlp", "hidden": [8]}})
    >>> fit(cfg).status
    'done'
    """
    started = time.perf_counter()
    run = start_run(cfg, resolve_device(cfg.device))
    run.steps_call_model = True
    speed = {"forward": compiled_forward(run.model, cfg.compile), "precision": cfg.precision}
    loss_fn = build_loss(cfg.loss.name, cfg.loss.options)
    run.optimizer = build_optimizer(
        cfg.optimizer.name, cfg.optimizer.options, run.model.parameters()
    )
    schedule = build_schedule(cfg.schedule.name, cfg.schedule.options, run.optimizer, cfg.epochs)
    every = run_callbacks(cfg, on_epoch, schedule, extra=callbacks)

    every.on_train_begin(run)
    for epoch in range(1, cfg.epochs + 1):
        every.on_epoch_begin(run, epoch)
        epoch_start = time.perf_counter()
        record = _train_and_validate(run, epoch, loss_fn, every, **speed)
        record.seconds = time.perf_counter() - epoch_start
        close_epoch(run, record, every)
        if run.stop_training:
            break
    final = finish_run(run, every, loss_fn, **speed)
    final.seconds = time.perf_counter() - started
    run.result.final = final.to_dict()
    return run.result

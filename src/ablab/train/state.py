"""What one run carries through training, and the steps every training path shares.

``fit`` (one run) and ``fit_seeds`` (seeds trained as one batched model) differ only in
how an epoch is trained and validated. Around that, both do the same, from here:
``start_run`` (seed, data, model, memory layout, loader, result), ``open_record`` and
``close_epoch`` (the epoch's record, divergence, the callbacks, the history) and
``finish_run`` (the callbacks' end, the test evaluation, the final metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ablab.config import RunConfig, run_id
from ablab.data import BatchLoader, DataBundle, Split, load_data
from ablab.errors import ConfigError
from ablab.models import build_model
from ablab.train.accel import Forward, autocast, memory_format_for, use_tf32
from ablab.train.losses import LossFn
from ablab.train.metrics import (
    chance_accuracy,
    classification_metrics,
    confusion_matrix,
    is_at_chance,
    regression_metrics,
)
from ablab.train.result import EpochRecord, FinalMetrics, RunResult


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' was asked for but no CUDA GPU is visible; use auto or cpu"
        )
    return torch.device(name)


@dataclass
class RunState:
    """One run in training: what callbacks read, and the few things they may set."""

    cfg: RunConfig
    bundle: DataBundle
    model: torch.nn.Module
    loader: BatchLoader
    memory_format: torch.memory_format
    result: RunResult
    optimizer: torch.optim.Optimizer | None = None
    stop_training: bool = False  # set by a callback (or divergence): no further epoch
    stopped_early: bool = False  # early stopping ended the run
    weights_epoch: int | None = None  # the epoch the tested weights come from
    kept_epoch: int | None = None  # the epoch of the kept weights (``keep``)
    #: The training steps call ``model`` itself (``fit``); False where a batched copy of
    #: several seeds trains (``fit_seeds``) and ``model`` only holds one seed's slice.
    steps_call_model: bool = False

    @property
    def diverged(self) -> bool:
        return self.result.status == "diverged"


class RunHooks(Protocol):
    """What the shared steps call on a run's callbacks (``ablab.train.callbacks``'
    ``CallbackList`` is one): the callbacks act on a ``RunState``, so they sit above this
    module and it names only the two moments it calls."""

    def on_epoch_end(self, run: RunState, record: EpochRecord) -> None: ...

    def on_train_end(self, run: RunState) -> None: ...


def start_run(cfg: RunConfig, device: torch.device) -> RunState:
    """Seed, data, model (in its memory layout), shuffling loader and an empty result:
    the same for a run whatever path trains it."""
    # Three seeds, one per source of noise (each is ``seed`` unless set): the split
    # (``dataset.split_seed``, drawn by load_data with numpy), the initial weights
    # (``init_seed``: torch's global generator, as the model is built) and the training
    # order (``order_seed``: the loader's generator for batch order and augmentation, and
    # torch's global generator for dropout). While ``order_seed`` equals ``init_seed``
    # dropout continues the initialisation's stream, as every run did before these seeds
    # existed; otherwise that stream restarts from ``order_seed``.
    init_seed, order_seed = cfg.init_seed_value, cfg.order_seed_value
    use_tf32(cfg.tf32)
    torch.manual_seed(init_seed)
    bundle = load_data(cfg.dataset, cfg.seed, device)
    model = build_model(cfg.model, bundle.input_shape, bundle.output_dim).to(device)
    if order_seed != init_seed:
        torch.manual_seed(order_seed)
    memory_format = memory_format_for(model, cfg.memory_format)
    model = model.to(memory_format=memory_format)
    loader = BatchLoader(
        bundle.train,
        bundle,
        None if cfg.batch_size == "full" else int(cfg.batch_size),
        shuffle=True,
        augment=cfg.dataset.augment if cfg.dataset.augment.enabled else None,
        generator=torch.Generator(device=device).manual_seed(order_seed),
        memory_format=memory_format,
    )
    result = RunResult(
        run_id=run_id(cfg),
        config=cfg.resolved(),
        status="done",
        sizes=bundle.sizes(),
        device=str(device),
        input_shape=[int(d) for d in bundle.input_shape],
        num_classes=int(bundle.num_classes),
    )
    return RunState(cfg, bundle, model, loader, memory_format, result)


def open_record(
    run: RunState, epoch: int, lr: float, losses: list[float], train_accuracy: float | None
) -> EpochRecord:
    """The epoch's record from its batch losses, which join the run's (a non-finite batch
    loss is stored as missing: JSON has no NaN)."""
    run.result.batch_losses.extend(v if math.isfinite(v) else None for v in losses)
    return EpochRecord(
        epoch=epoch, train_loss=sum(losses) / len(losses), train_accuracy=train_accuracy, lr=lr
    )


def close_epoch(run: RunState, record: EpochRecord, callbacks: RunHooks) -> None:
    """A trained and validated epoch: marks divergence (a non-finite loss ends the run,
    stored as missing), hands the record to the callbacks, and stores it."""
    if not record.is_finite():
        run.result.status, run.result.diverged_epoch = "diverged", record.epoch
        record.drop_non_finite()
        run.stop_training = True
    callbacks.on_epoch_end(run, record)
    run.result.history.append(record.to_dict())


def finish_run(
    run: RunState, callbacks: RunHooks, loss_fn: LossFn, **speed: Any
) -> FinalMetrics:
    """After the last epoch: the callbacks' end (best weights restored, weights kept,
    probes summarised), then the test evaluation. Weights are never kept from a run
    that diverged. ``seconds`` is the caller's to fill in."""
    run.weights_epoch = len(run.result.history)
    callbacks.on_train_end(run)
    final = final_metrics(run, loss_fn, **speed)
    if run.result.status != "done":
        run.result.weights = run.kept_epoch = None
    final.kept_epoch = run.kept_epoch
    return final


def final_metrics(run: RunState, loss_fn: LossFn, **speed: Any) -> FinalMetrics:
    """The run's final figures; ``speed`` (forward, precision) is passed to
    :func:`evaluate` as the training loop used it. A non-finite test loss marks the run
    diverged."""
    history, bundle, result = run.result.history, run.bundle, run.result
    if bundle.is_regression:
        return _regression_final(run, loss_fn, **speed)
    val_accs = [(h["val_accuracy"], h["epoch"]) for h in history if h["val_accuracy"] is not None]
    best_val, best_epoch = max(val_accs, key=lambda p: (p[0], -p[1])) if val_accs else (None, None)
    final = FinalMetrics(
        epochs_run=len(history),
        stopped_early=run.stopped_early,
        best_val_accuracy=best_val,
        best_val_epoch=best_epoch,
        chance_accuracy=chance_accuracy(bundle.test.y, bundle.num_classes),
    )
    if run.diverged:
        return final  # non-finite weights: any test figure would be noise posing as a result
    test = evaluate(
        run.model, bundle.test, bundle, loss_fn, run.cfg.eval_batch_size,
        memory_format=run.memory_format, **speed,
    )
    confusion = confusion_matrix(test["pred"], bundle.test.y, bundle.num_classes)
    scores = classification_metrics(confusion)
    final.weights_epoch = run.weights_epoch
    final.test_loss, final.test_cross_entropy = test["loss"], test["cross_entropy"]
    final.test_accuracy, final.test_precision = scores["accuracy"], scores["precision"]
    final.test_recall, final.test_f1 = scores["recall"], scores["f1"]
    final.confusion = confusion.tolist()
    final.class_names = list(bundle.class_names)
    final.at_chance = is_at_chance(scores["accuracy"], final.chance_accuracy, len(bundle.test))
    if not math.isfinite(test["loss"]):
        result.status, result.diverged_epoch = "diverged", len(history)
    return final


def _regression_final(run: RunState, loss_fn: LossFn, **speed: Any) -> FinalMetrics:
    """A regression run's final figures: test loss (the run's own, in training units) and
    RMSE, MAE, R², MSE in the target's units; the best validation RMSE and its epoch. No
    accuracy, chance level or confusion matrix: there are no classes."""
    history, bundle, result = run.result.history, run.bundle, run.result
    val = [(h["val_rmse"], h["epoch"]) for h in history if h.get("val_rmse") is not None]
    best_val, best_epoch = min(val, key=lambda p: (p[0], p[1])) if val else (None, None)
    final = FinalMetrics(
        epochs_run=len(history),
        stopped_early=run.stopped_early,
        best_val_accuracy=None,
        best_val_epoch=best_epoch,
        chance_accuracy=None,
        best_val_rmse=best_val,
    )
    if run.diverged:
        return final
    test = evaluate(
        run.model, bundle.test, bundle, loss_fn, run.cfg.eval_batch_size,
        memory_format=run.memory_format, **speed,
    )
    final.weights_epoch = run.weights_epoch
    final.test_loss = test["loss"]
    final.test_rmse, final.test_mae = test["rmse"], test["mae"]
    final.test_r2, final.test_mse = test["r2"], test["mse"]
    if not all(math.isfinite(v) for v in (test["loss"], test["rmse"])):
        result.status, result.diverged_epoch = "diverged", len(history)
    return final


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    split: Split,
    bundle: DataBundle,
    loss_fn: LossFn,
    batch_size: int,
    *,
    forward: Forward | None = None,
    precision: str = "fp32",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, Any]:
    """Loss (the run's own), softmax cross-entropy, accuracy and predictions on a split.
    ``forward`` (default: the model) is what is called, under ``precision``'s autocast.
    For a regression bundle: the loss (in training units), predictions in the target's
    units and their RMSE, MAE, R² and MSE (``cross_entropy`` and ``accuracy`` None)."""
    model.eval()
    forward = forward or model
    n = len(split)
    device = split.y.device
    if bundle.is_regression:
        return _evaluate_regression(forward, split, bundle, loss_fn, batch_size,
                                    precision=precision)
    loss_sum = torch.zeros((), device=device)
    ce_sum = torch.zeros((), device=device)
    preds = []
    for start in range(0, n, batch_size):
        x = split.x[start : start + batch_size]
        if x.dim() == 4 and memory_format != torch.contiguous_format:
            x = x.contiguous(memory_format=memory_format)
        x = bundle.normalize(x)
        y = split.y[start : start + batch_size]
        with autocast(device, precision):
            logits = forward(x)
        logits = logits.float()
        loss_sum += loss_fn(logits, y) * y.numel()
        ce_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        preds.append(logits.argmax(dim=1))
    pred = torch.cat(preds)
    correct = (pred == split.y).sum()
    loss, ce, acc = (t.item() for t in (loss_sum / n, ce_sum / n, correct / n))
    return {"loss": loss, "cross_entropy": ce, "accuracy": acc, "pred": pred}


def _evaluate_regression(
    forward: Forward, split: Split, bundle: DataBundle, loss_fn: LossFn, batch_size: int,
    *, precision: str = "fp32",
) -> dict[str, Any]:
    n = len(split)
    device = split.y.device
    loss_sum = torch.zeros((), device=device)
    preds = []
    for start in range(0, n, batch_size):
        x = bundle.normalize(split.x[start : start + batch_size])
        y = split.y[start : start + batch_size]
        with autocast(device, precision):
            output = forward(x)
        output = output.float()
        loss_sum += loss_fn(output, bundle.training_target(y)) * y.numel()
        preds.append(bundle.to_target_units(output))
    pred = torch.cat(preds)
    return {"loss": (loss_sum / n).item(), "cross_entropy": None, "accuracy": None,
            "pred": pred, **regression_metrics(pred, split.y)}

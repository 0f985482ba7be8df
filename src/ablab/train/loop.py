"""The training loop: ``fit(config) -> RunResult``, a pure function of its config.

One obvious path: load data onto the device, build the model, then for each epoch train
on shuffled index batches, validate, step the schedule, and ask early stopping. Metric
reductions stay on the device until the epoch ends (one host sync per epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ablab.config import RunConfig, run_id
from ablab.data import BatchLoader, DataBundle, Split, load_data
from ablab.errors import ConfigError
from ablab.models import build_model
from ablab.probes import ProbeContext, attach_probes
from ablab.train.accel import Forward, autocast, compiled_forward, memory_format_for
from ablab.train.callbacks import EarlyStopping
from ablab.train.losses import LossFn, build_loss
from ablab.train.metrics import (
    chance_accuracy,
    classification_metrics,
    confusion_matrix,
    is_at_chance,
)
from ablab.train.optimizers import build_optimizer
from ablab.train.result import RunResult
from ablab.train.schedules import build_schedule

EpochCallback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' was asked for but no CUDA GPU is visible; use auto or cpu"
        )
    return torch.device(name)


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
    ``forward`` (default: the model) is what is called, under ``precision``'s autocast."""
    model.eval()
    forward = forward or model
    n = len(split)
    device = split.y.device
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


def train_epoch(
    model: torch.nn.Module,
    loader: BatchLoader,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    probes: Any = None,
    *,
    forward: Forward | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over ``loader``: (per-batch losses, correct predictions, examples seen),
    both tensors on the device — nothing is read back to the host here. ``forward``
    (default: the model) runs under ``precision``'s autocast; the loss and the backward
    pass run in fp32."""
    model.train()
    forward = forward or model
    device = next(model.parameters()).device
    batch_losses = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    wants_gradients = probes is not None and probes.wants_gradients
    for i, (x, y) in enumerate(loader):
        with autocast(device, precision):
            logits = forward(x)
        logits = logits.float()
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if wants_gradients:
            probes.after_backward()
        optimizer.step()
        batch_losses[i] = loss.detach()
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += y.numel()
    return batch_losses, correct, seen


def _finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


def fit(cfg: RunConfig, on_epoch: EpochCallback | None = None) -> RunResult:
    """Train one run. ``on_epoch`` (optional) receives each epoch's record, for progress
    display only; it cannot change the result.

    >>> from ablab.config import parse_run
    >>> cfg = parse_run({"epochs": 1, "dataset": "moons", "model": {"name": "mlp", "hidden": [8]}})
    >>> fit(cfg).status
    'done'
    """
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    bundle = load_data(cfg.dataset, cfg.seed, device)
    model = build_model(cfg.model, bundle.input_shape, bundle.num_classes).to(device)
    memory_format = memory_format_for(model, cfg.memory_format)
    model = model.to(memory_format=memory_format)
    forward = compiled_forward(model, cfg.compile)
    speed = {"forward": forward, "precision": cfg.precision}
    loss_fn = build_loss(cfg.loss.name, cfg.loss.options)
    optimizer = build_optimizer(cfg.optimizer.name, cfg.optimizer.options, model.parameters())
    schedule = build_schedule(cfg.schedule.name, cfg.schedule.options, optimizer, cfg.epochs)
    stopper = EarlyStopping(cfg.early_stopping) if cfg.early_stopping else None
    probes = attach_probes(
        cfg.probes,
        ProbeContext(model, bundle, cfg.probe_batch_size, cfg.seed, cfg.epochs, optimizer),
    )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    loader = BatchLoader(
        bundle.train,
        bundle,
        None if cfg.batch_size == "full" else int(cfg.batch_size),
        shuffle=True,
        augment=cfg.dataset.augment if cfg.dataset.augment.enabled else None,
        generator=generator,
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
    best: tuple[int, float, dict[str, torch.Tensor]] | None = None  # keep="best": epoch, acc, w
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trains with
        batch_losses, correct, seen = train_epoch(
            model, loader, loss_fn, optimizer, probes, **speed
        )
        losses = batch_losses.tolist()
        # A non-finite batch loss is stored as missing (JSON has no NaN).
        result.batch_losses.extend(v if math.isfinite(v) else None for v in losses)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(losses),
            "train_accuracy": correct.item() / seen,
            "val_loss": None,
            "val_accuracy": None,
            "val_cross_entropy": None,
            "lr": lr,
        }
        if bundle.val is not None:
            val = evaluate(
                model, bundle.val, bundle, loss_fn, cfg.eval_batch_size,
                memory_format=memory_format, **speed,
            )
            record.update(
                val_loss=val["loss"],
                val_accuracy=val["accuracy"],
                val_cross_entropy=val["cross_entropy"],
            )
        probes.on_epoch_end(epoch)
        record["seconds"] = time.perf_counter() - epoch_start
        if not _finite(record["train_loss"], record["val_loss"]):
            result.status, result.diverged_epoch = "diverged", epoch
            for key in ("train_loss", "val_loss", "val_cross_entropy"):
                if record[key] is not None and not math.isfinite(record[key]):
                    record[key] = None  # stored as missing, never as NaN in a table
            result.history.append(record)
            if on_epoch:
                on_epoch(record)
            break
        result.history.append(record)
        acc = record["val_accuracy"]
        if cfg.keep == "best" and acc is not None and (best is None or acc > best[1]):
            best = (epoch, acc, _cpu_state(model))
        if on_epoch:
            on_epoch(record)
        schedule.step(record)
        if stopper and stopper.update(epoch, record, model):
            break

    result.final = _final_metrics(
        result, model, bundle, loss_fn, cfg, stopper, memory_format=memory_format, **speed
    )
    result.probes = probes.finish()
    if cfg.keep != "none" and result.status == "done":  # never non-finite weights
        if cfg.keep == "best" and best is not None:
            result.final["kept_epoch"], result.weights = best[0], best[2]
        else:  # "last", or "best" without validation data: the weights tested
            result.final["kept_epoch"] = result.final["weights_epoch"]
            result.weights = _cpu_state(model)
    result.final["seconds"] = time.perf_counter() - started
    return result


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state_dict on the CPU (what ``keep`` returns)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _final_metrics(
    result: RunResult,
    model: torch.nn.Module,
    bundle: DataBundle,
    loss_fn: LossFn,
    cfg: RunConfig,
    stopper: EarlyStopping | None,
    **speed: Any,
) -> dict[str, Any]:
    """The run's final figures; ``speed`` (forward, precision, memory_format) is passed
    to :func:`evaluate` as the training loop used it."""
    history = result.history
    val_accs = [(h["val_accuracy"], h["epoch"]) for h in history if h["val_accuracy"] is not None]
    best_val, best_epoch = max(val_accs, key=lambda p: (p[0], -p[1])) if val_accs else (None, None)
    final: dict[str, Any] = {
        "epochs_run": len(history),
        "stopped_early": bool(stopper and stopper.stopped_epoch is not None),
        "best_val_accuracy": best_val,
        "best_val_epoch": best_epoch,
        "chance_accuracy": chance_accuracy(bundle.test.y, bundle.num_classes),
    }
    if result.status == "diverged":
        # The weights are not finite: any test figure would be noise posing as a result.
        final.update(at_chance=None, weights_epoch=None)
        return final
    weights_epoch = (stopper.restore(model) if stopper else None) or len(history)
    test = evaluate(model, bundle.test, bundle, loss_fn, cfg.eval_batch_size, **speed)
    confusion = confusion_matrix(test["pred"], bundle.test.y, bundle.num_classes)
    scores = classification_metrics(confusion)
    final.update(
        weights_epoch=weights_epoch,
        test_loss=test["loss"],
        test_cross_entropy=test["cross_entropy"],
        test_accuracy=scores["accuracy"],
        test_precision=scores["precision"],
        test_recall=scores["recall"],
        test_f1=scores["f1"],
        confusion=confusion.tolist(),
        at_chance=is_at_chance(scores["accuracy"], final["chance_accuracy"], len(bundle.test)),
    )
    if not _finite(test["loss"]):
        result.status, result.diverged_epoch = "diverged", len(history)
    return final

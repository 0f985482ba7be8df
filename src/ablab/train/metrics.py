"""Classification metrics from a confusion matrix (built on the device in one bincount),
and regression metrics (RMSE, MAE, R², MSE) from predictions in the target's units."""

from __future__ import annotations

import math

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes. A model with more outputs than
    classes (source report 003's pooled channels used as logits) can predict an output
    that is no class: such predictions are wrong, counted in one extra last column."""
    columns = num_classes
    if pred.numel() and int(pred.max()) >= num_classes:
        columns = num_classes + 1
        pred = pred.clamp(max=num_classes)
    flat = target * columns + pred
    counts = torch.bincount(flat, minlength=num_classes * columns)
    return counts.reshape(num_classes, columns).cpu().numpy()


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 (a class never predicted or never present
    contributes 0, as scikit-learn does with ``zero_division=0``). An extra last column
    (predictions that are no class) counts as wrong and is no class of its own."""
    confusion = np.asarray(confusion, dtype=np.float64)
    num_classes = confusion.shape[0]
    true_pos = np.diag(confusion)
    predicted = confusion.sum(axis=0)[:num_classes]
    actual = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_pos / predicted, 0.0)
        recall = np.where(actual > 0, true_pos / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = confusion.sum()
    return {
        "accuracy": float(true_pos.sum() / total) if total else 0.0,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }


def chance_accuracy(target: torch.Tensor, num_classes: int) -> float:
    """Accuracy of always predicting the majority class."""
    counts = torch.bincount(target, minlength=num_classes)
    return float(counts.max().item() / max(1, target.numel()))


def is_at_chance(accuracy: float, chance: float, n: int) -> bool:
    """No better than chance: within two binomial standard errors (at least 1 pp) of the
    majority-class accuracy."""
    margin = max(0.01, 2.0 * math.sqrt(chance * (1.0 - chance) / max(1, n)))
    return accuracy <= chance + margin


#: The regression metrics :func:`regression_metrics` gives (a run records them as
#: ``test_*`` and, each epoch, ``val_*``); R² is higher-is-better, the others lower.
REGRESSION_METRICS = ("rmse", "mae", "r2", "mse")


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """RMSE, MAE, R² (1 − SSE / SST about the split's own mean, as scikit-learn's
    ``r2_score``; 0 when the target is constant and predicted exactly, −inf never: a
    constant target gives R² 0 if mispredicted) and MSE, in float64.

    >>> t = torch.tensor([1.0, 2.0, 3.0])
    >>> regression_metrics(t, t)["r2"]
    1.0
    """
    pred = pred.reshape(-1).to(torch.float64)
    target = target.reshape(-1).to(torch.float64)
    err = pred - target
    sse = float((err * err).sum())
    sst = float(((target - target.mean()) ** 2).sum())
    n = max(1, target.numel())
    mse = sse / n
    if sst > 0:
        r2 = 1.0 - sse / sst
    else:
        r2 = 1.0 if sse == 0 else 0.0
    return {"rmse": math.sqrt(mse), "mae": float(err.abs().sum()) / n, "r2": r2, "mse": mse}

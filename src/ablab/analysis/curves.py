"""Per-epoch curves and probe data aggregated over a variant's seeds (mean and 95 % CI
band), ready for plotting. Only ``done`` runs are aggregated.

    >>> band([[1.0, 2.0], [3.0, 4.0]])["mean"].tolist()
    [2.0, 3.0]
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
from scipy import stats

from ablab.analysis.runs import Variant


def band(series: list[list[float | None]], confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Align series of different lengths at index 0; at each index the mean, t-based CI
    (NaN where fewer than 2 finite values) and the count of finite values."""
    length = max((len(s) for s in series), default=0)
    data = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        data[i, : len(s)] = [np.nan if v is None else float(v) for v in s]
    finite = np.isfinite(data)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(data, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(finite, data - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=0) / np.maximum(n - 1, 1))
        t = stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1))
        half = np.where(n >= 2, t * std / np.sqrt(np.maximum(n, 1)), np.nan)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def _done_records(v: Variant) -> list[dict[str, Any]]:
    return [v.records[r["run_id"]] for r in v.done if r["run_id"] in v.records]


def history_curve(v: Variant, key: str) -> dict[str, np.ndarray]:
    """``key`` (train_loss, val_accuracy, lr, ...) per epoch: epochs (1-based) and band."""
    series = [[h.get(key) for h in rec.get("history") or []] for rec in _done_records(v)]
    out = band(series)
    out["epochs"] = np.arange(1, len(out["mean"]) + 1)
    return out


def batch_curve(v: Variant) -> dict[str, np.ndarray]:
    """Training loss of every batch, averaged over seeds."""
    out = band([rec.get("batch_losses") or [] for rec in _done_records(v)])
    out["steps"] = np.arange(1, len(out["mean"]) + 1)
    return out


def has_history(v: Variant, key: str) -> bool:
    return any(
        any(h.get(key) is not None for h in rec.get("history") or [])
        for rec in _done_records(v)
    )


def probe_records(v: Variant, probe: str) -> list[dict[str, Any]]:
    """The ``probe`` outputs of the variant's done runs (those that recorded it)."""
    return [
        rec["probes"][probe] for rec in _done_records(v) if probe in (rec.get("probes") or {})
    ]


def probe_matrix(v: Variant, probe: str, key: str) -> dict[str, Any] | None:
    """An epoch-major probe field (``values[e][l]``) averaged over seeds: returns
    ``{"layers", "epochs", "values": array (layers × epochs), "defined": bool}``; NaN where
    no seed has a value. None when no run recorded the probe."""
    data = probe_records(v, probe)
    if not data:
        return None
    first = data[0]
    epochs, layers = list(first.get("epochs", [])), list(first.get("layers", []))
    stack = np.full((len(data), len(epochs), len(layers)), np.nan)
    for i, d in enumerate(data):
        values = d.get(key) or []
        for e, row in enumerate(values[: len(epochs)]):
            for layer, x in enumerate((row or [])[: len(layers)]):
                if x is not None and math.isfinite(x):
                    stack[i, e, layer] = x
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(stack).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    return {
        "layers": layers,
        "kinds": list(first.get("kinds", [])),
        "epochs": epochs,
        "values": mean.T,
        "defined": bool(np.isfinite(mean).any()),
    }


def activation_hist(v: Variant, layer: int) -> dict[str, Any] | None:
    """Activation histograms of one layer summed over seeds and normalized per epoch:
    ``{"layer", "kind", "epochs", "edges", "density": array (bins × epochs)}``."""
    data = probe_records(v, "activations")
    if not data or layer >= len(data[0].get("layers", [])):
        return None
    first = data[0]
    epochs = list(first["epochs"])
    edges = np.asarray(first["bin_edges"][layer], dtype=float)
    total = np.zeros((len(edges) - 1, len(epochs)))
    for d in data:
        for e, per_layer in enumerate(d.get("hist", [])[: len(epochs)]):
            counts = per_layer[layer] if per_layer and layer < len(per_layer) else None
            if counts is not None:
                total[:, e] += np.asarray(counts, dtype=float)
    sums = total.sum(axis=0, keepdims=True)
    density = np.divide(total, sums, out=np.zeros_like(total), where=sums > 0)
    return {
        "layer": first["layers"][layer],
        "kind": first.get("kinds", [""] * (layer + 1))[layer],
        "epochs": epochs,
        "edges": edges,
        "density": density,
    }


def boundary_of(v: Variant) -> dict[str, Any] | None:
    """The decision-boundary probe of the variant's first done run that has one, with
    that run's seed and test accuracy."""
    for row in v.done:
        rec = v.records.get(row["run_id"])
        if rec and "boundary" in (rec.get("probes") or {}):
            acc = (row.get("final") or {}).get("test_accuracy")
            return {"seed": row["seed"], "test_accuracy": acc, **rec["probes"]["boundary"]}
    return None


def decode_grid(data: str, grid: int, scale: float = 255.0) -> np.ndarray:
    """A stored boundary grid (base64 of ``grid × grid`` uint8, row-major, row = y,
    column = x; see the ``boundary`` probe) as floats: probabilities with ``scale=255``,
    class indices with ``scale=1``."""
    raw = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(grid, grid)
    return raw.astype(np.float64) / scale

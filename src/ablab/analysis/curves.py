"""Per-epoch curves and probe data of a variant's seeds, ready for plotting. Only ``done``
runs count.

Each run record is folded into its variant's :class:`VariantCurves` once, when the
analysis reads it, and then dropped: a variant keeps a fixed-size sum per probe field
(whatever its number of runs), each run's per-epoch history values (a few floats an epoch)
and the first run's decision boundary, so analysing a study of thousands of runs never
holds every record. Curves are summaries, not one line per run: the median with the
interquartile band per epoch, the per-batch loss as a mean over seeds (at most
:data:`MAX_CURVE_POINTS` points drawn), probe fields as means over seeds.

    >>> band([[1.0, 2.0], [3.0, 4.0]])["mean"].tolist()
    [2.0, 3.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ablab.stored_grid import decode_grid

#: Per-batch curves are drawn with at most this many points (means of consecutive steps).
MAX_CURVE_POINTS = 1000
#: Decision-boundary grids are drawn with at most this many cells a side (block means).
MAX_GRID_CELLS = 100
#: Probe fields folded into per-variant means (``probe_matrix``): epoch-major
#: ``values[epoch][layer]``.
PROBE_FIELDS = (
    ("dead_units", "dead_unit_fraction"),
    ("dead_units", "zero_activation_fraction"),
    ("gradients", "grad_norm"),
    ("weights", "weight_norm"),
)
#: The interquartile band drawn around per-epoch medians.
QUANTILES = (0.25, 0.75)


def band(series: list[list[float | None]], confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Align series of different lengths at index 0; at each index the mean, t-based CI
    (NaN where fewer than 2 finite values) and the count of finite values."""
    length = max((len(s) for s in series), default=0)
    data = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        data[i, : len(s)] = [np.nan if v is None else float(v) for v in s]
    finite = np.isfinite(data)
    n = finite.sum(axis=0)
    total = np.where(finite, data, 0.0).sum(axis=0)
    squares = np.where(finite, data**2, 0.0).sum(axis=0)
    return _band_from_sums(total, squares, n, confidence)


def _band_from_sums(
    total: np.ndarray, squares: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> dict[str, np.ndarray]:
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        var = np.maximum(squares - n * mean**2, 0.0) / np.maximum(n - 1, 1)
        t = stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1))
        half = np.where(n >= 2, t * np.sqrt(var) / np.sqrt(np.maximum(n, 1)), np.nan)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def _floats(values: Any) -> np.ndarray | None:
    """A (possibly nested, rectangular) list with None for missing values as a float
    array (None → NaN); None when it is ragged."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None


def _given(value: Any) -> Any:
    """``value``, or [] for a missing one (never the truth value of a numpy array)."""
    return [] if value is None else value


def _listed(value: Any) -> list:
    """A record's short list (epochs, layers, kinds) as a list of Python values, whether
    the record was read with numpy arrays or lists."""
    return value.tolist() if isinstance(value, np.ndarray) else list(value)


def _add_into(acc: np.ndarray, cnt: np.ndarray | None, values: np.ndarray) -> None:
    """Add ``values`` (NaN = missing) into the leading corner of ``acc`` (and count)."""
    index = tuple(slice(0, min(a, b)) for a, b in zip(acc.shape, values.shape, strict=True))
    part = values[index]
    ok = np.isfinite(part)
    acc[index] += np.where(ok, part, 0.0)
    if cnt is not None:
        cnt[index] += ok


def _grow(a: np.ndarray, length: int) -> np.ndarray:
    return a if len(a) >= length else np.concatenate([a, np.zeros(length - len(a), a.dtype)])


@dataclass
class VariantCurves:
    """What the figures draw of one variant's done runs, folded in one record at a time."""

    #: history key → one float32 array (per epoch, NaN = missing) per done run
    history: dict[str, list[np.ndarray]] = field(default_factory=dict)
    #: per-batch training loss: sums, sums of squares and counts per step
    batch_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batch_squares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batch_n: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: (probe, field) → layers, kinds, epochs (of the first run), sum and count arrays
    probes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: activation histograms: layers, kinds, epochs, bin edges and summed counts per layer
    activations: dict[str, Any] | None = None
    #: the decision-boundary probe of the first done run that has one
    boundary: dict[str, Any] | None = None
    #: run id → its last history entry / its scalar probe figures (``against_source``)
    last_epoch: dict[str, dict[str, Any]] = field(default_factory=dict)
    scalars: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        """Fold one done run's record in (``row``: its index row)."""
        history = record.get("history") or []
        if history:
            self.last_epoch[row["run_id"]] = dict(history[-1])
        keys = dict.fromkeys(k for h in history for k in h if k != "epoch")
        for key in keys:
            values = [h.get(key) for h in history]
            if any(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
                series = np.array(
                    [x if isinstance(x, (int, float)) else np.nan for x in values],
                    dtype=np.float32,
                )
                self.history.setdefault(key, []).append(series)
        losses = _floats(_given(record.get("batch_losses")))
        if losses is not None and losses.ndim == 1 and len(losses):
            self.batch_sum = _grow(self.batch_sum, len(losses))
            self.batch_squares = _grow(self.batch_squares, len(losses))
            self.batch_n = _grow(self.batch_n, len(losses))
            ok = np.isfinite(losses)
            clean = np.where(ok, losses, 0.0)
            self.batch_sum[: len(losses)] += clean
            self.batch_squares[: len(losses)] += clean**2
            self.batch_n[: len(losses)] += ok
        probes = record.get("probes") or {}
        zero = (probes.get("dead_units") or {}).get("zero_activation_fraction_mean")
        if isinstance(zero, (int, float)):
            self.scalars[row["run_id"]] = {"zero_activation_fraction_mean": float(zero)}
        for name, key in PROBE_FIELDS:
            if name in probes:
                self._add_probe_field(name, key, probes[name])
        if "activations" in probes:
            self._add_activations(probes["activations"])
        if self.boundary is None and "boundary" in probes:
            acc = (row.get("final") or {}).get("test_accuracy")
            kept = {k: v for k, v in probes["boundary"].items() if k != "snapshots"}
            self.boundary = {"seed": row["seed"], "test_accuracy": acc, **kept}

    def _add_probe_field(self, name: str, key: str, data: dict[str, Any]) -> None:
        slot = self.probes.get((name, key))
        if slot is None:
            epochs = _listed(_given(data.get("epochs")))
            layers = _listed(_given(data.get("layers")))
            slot = self.probes[(name, key)] = {
                "layers": layers, "kinds": _listed(_given(data.get("kinds"))), "epochs": epochs,
                "sum": np.zeros((len(epochs), len(layers))),
                "count": np.zeros((len(epochs), len(layers)), dtype=np.int64),
            }
        values = _given(data.get(key))
        array = _floats(values)
        if array is not None and array.ndim == 2:
            _add_into(slot["sum"], slot["count"], array)
            return
        if isinstance(values, np.ndarray):  # a packed array of another shape: nothing to add
            return
        for e, row in enumerate(values[: len(slot["epochs"])]):  # ragged: one at a time
            for layer, x in enumerate((row or [])[: len(slot["layers"])]):
                if isinstance(x, (int, float)) and math.isfinite(x):
                    slot["sum"][e, layer] += x
                    slot["count"][e, layer] += 1

    def _add_activations(self, data: dict[str, Any]) -> None:
        if self.activations is None:
            layers = _listed(_given(data.get("layers")))
            epochs = _listed(_given(data.get("epochs")))
            edges = [np.asarray(e, dtype=float) for e in _given(data.get("bin_edges"))]
            self.activations = {
                "layers": layers, "kinds": _listed(_given(data.get("kinds"))), "epochs": epochs,
                "edges": edges,
                "total": [np.zeros((len(e) - 1, len(epochs))) for e in edges],
            }
        acc = self.activations
        hist = _given(data.get("hist"))
        if isinstance(hist, np.ndarray):  # packed: epochs × layers × bins, added at once
            part = np.asarray(hist, dtype=float)[: len(acc["epochs"])]
            for layer, total in enumerate(acc["total"]):
                if part.ndim == 3 and layer < part.shape[1]:
                    counts = part[:, layer, : total.shape[0]]
                    total[: counts.shape[1], : counts.shape[0]] += counts.T
            return
        for e, per_layer in enumerate(list(hist)[: len(acc["epochs"])]):
            for layer, total in enumerate(acc["total"]):
                counts = per_layer[layer] if per_layer and layer < len(per_layer) else None
                if counts is not None:
                    counts = np.asarray(counts, dtype=float)[: total.shape[0]]
                    total[: len(counts), e] += counts


class HasCurves(Protocol):
    """What the functions below read of a variant (:class:`ablab.analysis.runs.Variant`,
    which imports this module): its runs folded into one :class:`VariantCurves`."""

    curves: VariantCurves


def history_curve(v: HasCurves, key: str) -> dict[str, np.ndarray]:
    """``key`` (train_loss, val_accuracy, lr, ...) per epoch over the variant's done runs:
    epochs (1-based), ``median`` with the interquartile band ``low`` – ``high``, ``mean``
    and ``n`` (finite values at each epoch)."""
    series = v.curves.history.get(key, [])
    length = max((len(s) for s in series), default=0)
    data = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        data[i, : len(s)] = s
    finite = np.isfinite(data)
    data[~finite] = np.nan
    n = finite.sum(axis=0)
    some = n > 0
    out: dict[str, np.ndarray] = {"n": n, "epochs": np.arange(1, length + 1)}
    quantiles = np.full((3, length), np.nan)
    probs = [0.5, *QUANTILES]
    full = n == len(series)  # every run has a value: np.quantile, the same numbers at once
    if full.any():
        quantiles[:, full] = np.quantile(data[:, full], probs, axis=0)
    gaps = some & ~full  # nanquantile goes column by column: only where values are missing
    if gaps.any():
        quantiles[:, gaps] = np.nanquantile(data[:, gaps], probs, axis=0)
    out["median"], out["low"], out["high"] = quantiles
    out["mean"] = np.full(length, np.nan)
    out["mean"][some] = np.nansum(data, axis=0)[some] / n[some]
    return out


def batch_curve(v: HasCurves, max_points: int = MAX_CURVE_POINTS) -> dict[str, np.ndarray]:
    """Training loss of every batch, mean over seeds (with its t band): ``steps`` (1-based)
    and ``mean`` / ``low`` / ``high``; longer than ``max_points`` steps, the means of
    consecutive blocks of steps (``steps`` their centres), so the figure stays light
    whatever the run length (the records keep every batch)."""
    c = v.curves
    out = _band_from_sums(c.batch_sum, c.batch_squares, c.batch_n)
    out["steps"] = np.arange(1, len(out["mean"]) + 1, dtype=float)
    if len(out["steps"]) > max_points:
        size = math.ceil(len(out["steps"]) / max_points)
        out = {k: _block_mean(np.asarray(x, dtype=float), size) for k, x in out.items()}
    return out


def _block_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Means of consecutive blocks of ``size`` values (NaN ignored; the last block may be
    shorter)."""
    pad = (-len(x)) % size
    blocks = np.concatenate([x, np.full(pad, np.nan)]).reshape(-1, size)
    ok = np.isfinite(blocks)
    with np.errstate(invalid="ignore"):
        return np.where(ok.any(axis=1),
                        np.where(ok, blocks, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1),
                        np.nan)


def has_history(v: HasCurves, key: str) -> bool:
    return any(np.isfinite(s).any() for s in v.curves.history.get(key, []))


def probe_matrix(v: HasCurves, probe: str, key: str) -> dict[str, Any] | None:
    """A probe field (one of :data:`PROBE_FIELDS`, epoch-major ``values[e][l]``) averaged
    over seeds: ``{"layers", "kinds", "epochs", "values": array (layers × epochs),
    "defined": bool}``; NaN where no seed has a value. None when no run recorded it."""
    slot = v.curves.probes.get((probe, key))
    if slot is None:
        return None
    count = slot["count"]
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, slot["sum"] / np.maximum(count, 1), np.nan)
    return {
        "layers": slot["layers"],
        "kinds": slot["kinds"],
        "epochs": slot["epochs"],
        "values": mean.T,
        "defined": bool(np.isfinite(mean).any()),
    }


def activation_hist(v: HasCurves, layer: int) -> dict[str, Any] | None:
    """Activation histograms of one layer summed over seeds and normalized per epoch:
    ``{"layer", "kind", "epochs", "edges", "density": array (bins × epochs)}``."""
    acc = v.curves.activations
    if acc is None or layer >= len(acc["layers"]) or layer >= len(acc["total"]):
        return None
    total = acc["total"][layer]
    sums = total.sum(axis=0, keepdims=True)
    density = np.divide(total, sums, out=np.zeros_like(total), where=sums > 0)
    kinds = acc["kinds"] or [""] * (layer + 1)
    return {
        "layer": acc["layers"][layer],
        "kind": kinds[layer] if layer < len(kinds) else "",
        "epochs": acc["epochs"],
        "edges": acc["edges"][layer],
        "density": density,
    }


def boundary_of(v: HasCurves) -> dict[str, Any] | None:
    """The decision-boundary probe of the variant's first done run that has one, with
    that run's seed and test accuracy."""
    return v.curves.boundary


def display_grid(
    b: dict[str, Any], max_cells: int = MAX_GRID_CELLS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A boundary probe (``boundary_of``) for drawing: (xs, ys, P(class 1) or None, class
    indices or None), at most ``max_cells`` a side: probabilities as block means, class
    indices as every k-th cell; xs / ys the cells' centres."""
    grid = b["grid"]
    step = max(1, math.ceil(grid / max_cells))
    xs = np.linspace(*b["x_range"], grid)
    ys = np.linspace(*b["y_range"], grid)
    multi = b.get("num_classes", 2) > 2
    if multi:
        classes = decode_grid(b["final"]["argmax"], grid, scale=1)[::step, ::step]
        return xs[::step], ys[::step], None, classes
    prob = decode_grid(b["final"]["prob"], grid)
    if step > 1:
        cut = grid - grid % step
        prob = prob[:cut, :cut].reshape(cut // step, step, cut // step, step).mean(axis=(1, 3))
        xs = xs[:cut].reshape(-1, step).mean(axis=1)
        ys = ys[:cut].reshape(-1, step).mean(axis=1)
    return xs, ys, prob, None

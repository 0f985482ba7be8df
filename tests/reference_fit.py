"""A reference for ``ablab.train.fit`` computed in the test, on the machine the test runs
on (issue #34): the same run trained by a plain loop written out step by step (forward,
loss, backward, step, with the run's seeds), and every probe computed the slow, direct
way (hooks on a plain forward pass, float64 sums, one measurement at a time).

What this replaces: digests of whole results recorded on one CPU. Bit-for-bit results are
a property of one machine and one build, so the tests compare ``fit`` with this loop on
the machine they run on:

- the training itself (batch losses, history, test figures, kept weights) uses the same
  operations as ``fit`` (the run's model, ``F.cross_entropy``, torch's optimizer and
  scheduler, the same gathers and evaluation batches), so it must agree bit for bit:
  ``assert_trains_as_reference``;
- the probes are computed here by other operations than the library's (float64 instead
  of float32 sums, ``vector_norm`` per tensor instead of ``_foreach_norm``, numpy bins
  instead of the library's in-place ``bincount``), so they agree within tolerances stated
  at ``assert_probes_match``, each of which a different summation order cannot break and
  any real change (a wrong layer, epoch, sample, count or range) exceeds many times over.

Data and models come from the library (``load_data``, ``build_model``): they are what
the run trains on, not what is under test here.
"""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablab.data import load_data
from ablab.models import activation_layers, build_model, parameter_layers

SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}  # histogram range = codomain


def _optimizer(cfg, params) -> torch.optim.Optimizer:
    """torch's optimizer for the run, with ``foreach=True`` where ``build_optimizer`` uses
    it (tests/test_fastrun.py checks that this is bit for bit the default loop's update)."""
    o = cfg.optimizer.options
    name = cfg.optimizer.name
    if name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"],
                               nesterov=o["nesterov"], weight_decay=o["weight_decay"],
                               foreach=True)
    adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return adam(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                weight_decay=o["weight_decay"], foreach=True)


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _evaluate(model, split, bundle, batch_size, layout):
    """Mean cross-entropy, accuracy and predictions on ``split``: the batch means weighted
    by their sizes, summed in float32 as any mean over batches is; eval mode, no grad."""
    model.eval()
    n = len(split)
    total, total_ce = torch.zeros(()), torch.zeros(())
    correct = 0
    preds = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = split.x[start:start + batch_size]
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            y = split.y[start:start + batch_size]
            logits = model(bundle.normalize(x))
            total += F.cross_entropy(logits, y) * y.numel()
            total_ce += F.cross_entropy(logits, y, reduction="sum")
            pred = logits.argmax(dim=1)
            correct += int((pred == y).sum())
            preds.append(pred)
    accuracy = (torch.tensor(correct) / n).item()
    return (total / n).item(), (total_ce / n).item(), accuracy, torch.cat(preds), correct


def reference_fit(cfg) -> dict[str, Any]:
    """Train ``cfg`` with a plain loop; the parts of ``fit``'s record it computes, plus the
    kept weights (``"weights"``), and the probes computed directly (``"probes"``)."""
    assert cfg.loss.name == "cross_entropy" and cfg.loss.options["label_smoothing"] == 0
    assert cfg.precision == "fp32" and cfg.compile is False
    init_seed, order_seed = cfg.init_seed_value, cfg.order_seed_value
    torch.manual_seed(init_seed)
    bundle = load_data(cfg.dataset, cfg.seed, "cpu")
    model = build_model(cfg.model, bundle.input_shape, bundle.num_classes)
    if order_seed != init_seed:
        torch.manual_seed(order_seed)  # dropout's stream: its own seed when it has one
    conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    channels_last = cfg.memory_format == "channels_last" or (
        cfg.memory_format == "auto" and conv)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    order = torch.Generator().manual_seed(order_seed)
    optimizer = _optimizer(cfg, model.parameters())
    schedule = cfg.schedule.name
    assert schedule in ("none", "cosine", "reduce_on_plateau")
    if schedule == "cosine":
        options = cfg.schedule.options
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=options["t_max"] or cfg.epochs, eta_min=options["eta_min"])
    plateau = {"best": None, "wait": 0}
    stopping = {"best": None, "epoch": 0, "wait": 0, "state": None}
    kept: tuple[int, float, dict] | None = None
    probes = DirectProbes(cfg, model, bundle)

    train = bundle.train
    n = len(train)
    batch = n if cfg.batch_size == "full" else min(int(cfg.batch_size), n)
    history: list[dict[str, Any]] = []
    batch_losses: list[float | None] = []
    status, diverged_epoch, stopped_early = "done", None, False
    for epoch in range(1, cfg.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        perm = torch.randperm(n, generator=order)
        losses, correct = [], 0
        for start in range(0, n, batch):
            index = perm[start:start + batch]
            x, y = train.x[index], train.y[index]
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            logits = model(bundle.normalize(x))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            probes.after_backward()
            optimizer.step()
            losses.append(loss.item())
            correct += int((logits.argmax(dim=1) == y).sum())
        batch_losses += [_finite(v) for v in losses]
        record = {"epoch": epoch, "train_loss": sum(losses) / len(losses),
                  "train_accuracy": correct / n, "val_loss": None, "val_accuracy": None,
                  "val_cross_entropy": None, "lr": lr}
        if bundle.val is not None:
            val_loss, val_ce, val_acc, _, _ = _evaluate(model, bundle.val, bundle,
                                                        cfg.eval_batch_size, layout)
            record.update(val_loss=val_loss, val_accuracy=val_acc, val_cross_entropy=val_ce)
        diverged = not all(math.isfinite(v) for v in (record["train_loss"], record["val_loss"])
                           if v is not None)
        if diverged:
            status, diverged_epoch = "diverged", epoch
            for key in ("train_loss", "val_loss", "val_cross_entropy"):
                record[key] = _finite(record[key])
        else:
            if schedule == "cosine":
                cosine.step()
            elif schedule == "reduce_on_plateau":
                _keras_plateau(cfg.schedule.options, plateau, record, optimizer)
            if cfg.early_stopping and _keras_early_stopping(
                    cfg.early_stopping, stopping, record, model):
                stopped_early = True
            acc = record["val_accuracy"]
            if cfg.keep == "best" and acc is not None and (kept is None or acc > kept[1]):
                kept = (epoch, acc, copy.deepcopy(model.state_dict()))
        last = diverged or stopped_early or epoch == cfg.epochs
        probes.on_epoch_end(epoch, last)
        history.append(record)
        if last:
            break

    weights_epoch = len(history)
    es = cfg.early_stopping
    if status == "done" and es and es.restore_best_weights and stopping["state"] is not None:
        model.load_state_dict(stopping["state"])
        weights_epoch = stopping["epoch"]
    weights, kept_epoch = None, None
    if status == "done" and cfg.keep != "none":
        kept_epoch, weights = (kept[0], kept[2]) if kept else (
            weights_epoch, copy.deepcopy(model.state_dict()))
    probes.finish()

    val_accs = [(h["val_accuracy"], h["epoch"]) for h in history
                if h["val_accuracy"] is not None]
    best_val, best_epoch = max(val_accs, key=lambda p: (p[0], -p[1])) if val_accs else (
        None, None)
    test_y = bundle.test.y
    final: dict[str, Any] = {
        "epochs_run": len(history), "stopped_early": stopped_early,
        "best_val_accuracy": best_val, "best_val_epoch": best_epoch,
        "chance_accuracy": int(torch.bincount(test_y).max()) / len(test_y),
    }
    if status == "done":
        loss, ce, _, pred, correct = _evaluate(model, bundle.test, bundle,
                                               cfg.eval_batch_size, layout)
        k = bundle.num_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (test_y.numpy(), pred.numpy()), 1)
        final.update(weights_epoch=weights_epoch, test_loss=loss, test_cross_entropy=ce,
                     test_accuracy=correct / len(test_y), confusion=confusion.tolist())
        if not math.isfinite(loss):
            status, diverged_epoch, weights, kept_epoch = "diverged", len(history), None, None
    if kept_epoch is not None:
        final["kept_epoch"] = kept_epoch
    return {"status": status, "diverged_epoch": diverged_epoch, "history": history,
            "batch_losses": batch_losses, "final": final, "weights": weights,
            "probes": probes.results}


def _keras_plateau(options, state, record, optimizer) -> None:
    """Keras ReduceLROnPlateau: the rate times ``factor`` once ``patience`` epochs in a row
    have not improved ``monitor`` by more than ``min_delta``."""
    assert options["cooldown"] == 0
    value = record[options["monitor"]]
    sign = 1.0 if options["monitor"] == "val_loss" else -1.0
    if state["best"] is None or sign * value < sign * state["best"] - options["min_delta"]:
        state["best"], state["wait"] = value, 0
        return
    state["wait"] += 1
    if state["wait"] >= options["patience"]:
        for group in optimizer.param_groups:
            group["lr"] = max(group["lr"] * options["factor"], options["min_lr"])
        state["wait"] = 0


def _keras_early_stopping(cfg, state, record, model) -> bool:
    """Keras EarlyStopping: True when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs in a row; keeps the best epoch's weights."""
    value = record[cfg.monitor]
    sign = -1.0 if cfg.monitor.endswith("accuracy") else 1.0
    if state["best"] is None or sign * value + cfg.min_delta < sign * state["best"]:
        state.update(best=value, epoch=record["epoch"], wait=0)
        if cfg.restore_best_weights:
            state["state"] = copy.deepcopy(model.state_dict())
        return False
    state["wait"] += 1
    return state["wait"] >= cfg.patience


# ------------------------------------------------------------------ probes, directly


class DirectProbes:
    """Every probe of ``cfg.probes``, measured the slow, direct way: weight and gradient
    norms in float64 one tensor at a time; activations from a plain eval-mode forward pass
    over the probe batch with hooks that keep each layer's input and output, reduced in
    float64 (numpy); the boundary from a plain forward over the mesh."""

    def __init__(self, cfg, model, bundle):
        self.cfg, self.model, self.bundle = cfg, model, bundle
        self.options = {p.name: p.options for p in cfg.probes}
        self.results: dict[str, Any] = {}
        layers = parameter_layers(model)
        self.param_layers = [m for _, m in layers]
        self.param_names = [name for name, _ in layers]
        acts = activation_layers(model)
        self.act_modules = [m for _, m in acts]
        self.act_names = [name for name, _ in acts]
        self.kinds = [m.name for m in self.act_modules]
        n = len(bundle.train)
        index = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
        self.probe_x = bundle.normalize(bundle.train.x[index[:min(cfg.probe_batch_size, n)]])
        self.weight_rows: list[tuple[int, list[float]]] = []
        self.grad_batches: list[tuple[list[float], float]] = []
        self.grad_rows: list[tuple[int, list[float], float, float]] = []
        self.activation_rows: list[tuple[int, list]] = []
        self.snapshots: list[dict[str, Any]] = []
        if "boundary" in self.options:
            self._boundary_mesh()
        self._measure(0)

    # ---- per batch and per epoch

    def after_backward(self) -> None:
        if "gradients" not in self.options:
            return
        grads = [p.grad for p in self.model.parameters()]
        square = sum(float((g.double() ** 2).sum()) for g in grads if g is not None)
        layer = [float(torch.linalg.vector_norm(m.weight.grad.double()))
                 if m.weight.grad is not None else 0.0 for m in self.param_layers]
        self.grad_batches.append((layer, math.sqrt(square)))

    def on_epoch_end(self, epoch: int, last: bool) -> None:
        if self.grad_batches:
            count = len(self.grad_batches)
            layer = [sum(b[0][k] for b in self.grad_batches) / count
                     for k in range(len(self.param_layers))]
            totals = [b[1] for b in self.grad_batches]
            largest = max(totals) if all(math.isfinite(t) for t in totals) else math.nan
            self.grad_rows.append((epoch, layer, sum(totals) / count, largest))
            self.grad_batches = []
        self._measure(epoch)

    def _due(self, name: str, epoch: int) -> bool:
        every = self.options[name]["every"]
        return epoch == 0 or epoch % every == 0 or epoch == self.cfg.epochs

    def _measure(self, epoch: int) -> None:
        if "weights" in self.options:
            self.weight_rows.append((epoch, [
                float(torch.linalg.vector_norm(m.weight.detach().double()))
                for m in self.param_layers]))
        wanted = [name for name in ("dead_units", "activations")
                  if name in self.options and self._due(name, epoch)]
        if wanted:
            self.activation_rows.append((epoch, wanted, self._activation_pass()))
        if "boundary" in self.options and epoch in self.options["boundary"]["epochs"]:
            self.snapshots.append({"epoch": epoch, **self._boundary_snapshot()})

    def _activation_pass(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each activation layer's (input, output) on the probe batch, as float64 numpy
        arrays, units on axis 1: one plain eval-mode forward pass."""
        seen: list[tuple[np.ndarray, np.ndarray]] = []
        handles = [m.register_forward_hook(
            lambda _m, a, o: seen.append((a[0].detach().double().numpy(),
                                          o.detach().double().numpy())))
            for m in self.act_modules]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(self.probe_x)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        return seen

    # ---- the boundary probe

    def _boundary_mesh(self) -> None:
        options, bundle = self.options["boundary"], self.bundle
        points = bundle.normalize(torch.cat([bundle.train.x, bundle.test.x])).double()
        lo = (points.min(dim=0).values - options["margin"]).tolist()
        hi = (points.max(dim=0).values + options["margin"]).tolist()
        grid = options["grid"]
        xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
        gx, gy = np.meshgrid(xs, ys)  # row = y, column = x
        self.mesh = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32)
        self.ranges = ([float(lo[0]), float(hi[0])], [float(lo[1]), float(hi[1])])

    def _boundary_snapshot(self) -> dict[str, np.ndarray]:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            probs = torch.softmax(self.model(self.mesh), dim=1).double().numpy()
        self.model.train(was_training)
        probs = np.nan_to_num(probs, nan=0.0)
        if probs.shape[1] == 2:
            return {"prob": probs[:, 1]}
        return {"prob": probs.max(axis=1), "argmax": probs.argmax(axis=1)}

    # ---- the probes' outputs

    def finish(self) -> None:
        results, options = self.results, self.options
        if "weights" in options:
            rows = [(e, [_finite(v) for v in norms]) for e, norms in self.weight_rows]
            results["weights"] = {
                "layers": self.param_names, "epochs": [e for e, _ in rows],
                "weight_norm": [norms for _, norms in rows],
                "non_finite_epochs": [e for e, norms in rows if None in norms]}
        if "gradients" in options:
            rows = self.grad_rows
            results["gradients"] = {
                "layers": self.param_names, "epochs": [e for e, *_ in rows],
                "grad_norm": [[_finite(v) for v in layer] for _, layer, _, _ in rows],
                "global_grad_norm": [_finite(mean) for *_, mean, _ in rows],
                "global_grad_norm_max": [_finite(top) for *_, top in rows],
                "non_finite_epochs": [e for e, layer, mean, top in rows
                                      if not all(map(math.isfinite, [*layer, mean, top]))]}
        if "dead_units" in options:
            results["dead_units"] = self._dead_units()
        if "activations" in options:
            results["activations"] = self._activations()
        if "boundary" in options:
            x_range, y_range = self.ranges
            results["boundary"] = {
                "grid": options["boundary"]["grid"], "x_range": x_range, "y_range": y_range,
                "final": self._boundary_snapshot(), "snapshots": self.snapshots}

    def _rows(self, name: str):
        return [(e, layers) for e, wanted, layers in self.activation_rows if name in wanted]

    def _dead_units(self) -> dict[str, Any]:
        """Per layer: the fraction of units "off" for every sample (and position), and of
        all values "off": output == 0 for ReLU, input <= 0 for other ReLU-likes."""
        rows = self._rows("dead_units")
        dead, zero = [], []
        for _, layers in rows:
            dead.append([]), zero.append([])
            for kind, (inp, out) in zip(self.kinds, layers, strict=True):
                if kind in SATURATING:
                    dead[-1].append(None), zero[-1].append(None)
                    continue
                off = (out == 0) if kind == "relu" else (inp <= 0)
                per_unit = np.moveaxis(off, 1, 0).reshape(off.shape[1], -1)
                dead[-1].append(float(per_unit.all(axis=1).mean()))
                zero[-1].append(float(off.mean()))
        epochs = [e for e, _ in rows]
        means = [np.mean([v for v in row if v is not None])
                 for e, row in zip(epochs, zero, strict=True)
                 if e < self.cfg.epochs and any(v is not None for v in row)]
        return {"layers": self.act_names, "kinds": self.kinds, "epochs": epochs,
                "dead_unit_fraction": dead, "zero_activation_fraction": zero,
                "zero_activation_fraction_mean": float(np.mean(means)) if means else None}

    def _activations(self) -> dict[str, Any]:
        """Per layer: a histogram of the outputs over ``bins`` equal bins of a fixed range
        (values outside it counted in the edge bins), mean, std (float64, over all values),
        the saturated fraction (sigmoid, tanh) and the clipped fraction."""
        options = self.options["activations"]
        bins, limit = options["bins"], options["limit"]
        ranges = [SATURATING.get(k) or ((0.0, limit) if k in ("relu", "softplus")
                                        else (-limit, limit)) for k in self.kinds]
        rows = self._rows("activations")
        hist, scalars = [], {k: [] for k in ("mean", "std", "saturated_fraction",
                                             "clipped_fraction")}
        for _, layers in rows:
            hist.append([])
            for key in scalars:
                scalars[key].append([])
            for kind, (lo, hi), (_, out) in zip(self.kinds, ranges, layers, strict=True):
                y = out.ravel()  # fractions are of every value, NaN (on neither side) too
                counted = np.clip(y[~np.isnan(y)], lo, hi)  # the edge bins take the outside
                hist[-1].append(_bin_count_bounds(counted, lo, hi, bins))
                with np.errstate(invalid="ignore", over="ignore"):
                    scalars["mean"][-1].append(_finite(float(y.mean())))
                    scalars["std"][-1].append(_finite(float(y.std())))
                if kind == "tanh":
                    saturated = float((np.abs(y) > 0.99).mean())
                elif kind == "sigmoid":
                    saturated = float(((y < 0.01) | (y > 0.99)).mean())
                else:
                    saturated = None
                scalars["saturated_fraction"][-1].append(saturated)
                clipped = 0.0 if kind in SATURATING else float(((y < lo) | (y >= hi)).mean())
                scalars["clipped_fraction"][-1].append(clipped)
        return {"layers": self.act_names, "kinds": self.kinds, "epochs": [e for e, _ in rows],
                "bin_edges": [np.linspace(lo, hi, bins + 1).tolist() for lo, hi in ranges],
                "hist": hist, **scalars}


def _bin_count_bounds(y: np.ndarray, lo: float, hi: float, bins: int) -> tuple[list, list, int]:
    """Per bin of ``bins`` equal bins on [lo, hi] (values at ``hi`` in the last): the
    fewest and the most values a histogram can hold whose bin edges are off by float32
    rounding. The library scales each value to its bin in float32 (``y * s + c``, with s =
    bins / (hi - lo) and |c| <= bins + 1), rounding by at most a few units of 2^-24 of
    (2 bins + 2); a value closer to an edge than ``EDGE`` = 2^-20 (2 bins + 2) bin widths
    (16 times that) may land on either side of it, and is counted by both bounds."""
    width = (hi - lo) / bins
    edge = 2.0**-20 * (2 * bins + 2) * width
    low = np.clip(np.floor((y - edge - lo) / width), 0, bins - 1).astype(np.int64)
    high = np.clip(np.floor((y + edge - lo) / width), 0, bins - 1).astype(np.int64)
    fewest = np.bincount(low[low == high], minlength=bins)
    most = np.zeros(bins + 1, dtype=np.int64)
    np.add.at(most, low, 1)
    np.add.at(most, high + 1, -1)  # each value counts in every bin from low to high
    return fewest.tolist(), np.cumsum(most)[:bins].tolist(), int(y.size)


# ------------------------------------------------------------------ comparisons


def without_timings(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record (``RunResult.to_dict()``) without its wall-clock times."""
    record = dict(record)
    record["history"] = [{k: v for k, v in h.items() if k != "seconds"}
                         for h in record["history"]]
    record["final"] = {k: v for k, v in record["final"].items() if k != "seconds"}
    return record


def assert_trains_as_reference(result, reference: dict[str, Any]) -> None:
    """``fit``'s training, bit for bit the plain loop's: the same operations on the same
    machine give the same floats (Python ``==`` on every float)."""
    record = without_timings(result.to_dict())
    assert record["status"] == reference["status"]
    assert record["diverged_epoch"] == reference["diverged_epoch"]
    assert record["batch_losses"] == reference["batch_losses"]
    assert record["history"] == reference["history"]
    final = record["final"]
    for key, value in reference["final"].items():
        assert final[key] == value, key
    assert ("kept_epoch" in final) == ("kept_epoch" in reference["final"])
    if reference["final"].get("confusion") is not None:
        from sklearn.metrics import precision_recall_fscore_support

        confusion = np.array(reference["final"]["confusion"])
        k = len(confusion)
        true = np.repeat(np.arange(k), confusion.sum(axis=1))
        pred = np.concatenate([np.repeat(np.arange(k), row) for row in confusion])
        scores = precision_recall_fscore_support(true, pred, labels=list(range(k)),
                                                 average="macro", zero_division=0)
        # macro averages of the same exact ratios, summed in float64 in another order
        for key, value in zip(("test_precision", "test_recall", "test_f1"), scores[:3],
                              strict=False):
            assert math.isclose(final[key], value, rel_tol=1e-12), key
    if reference["weights"] is None:
        assert result.weights is None
    else:
        assert result.weights.keys() == reference["weights"].keys()
        for name, tensor in reference["weights"].items():
            assert torch.equal(result.weights[name], tensor), name


#: Tolerances for the probes (see ``assert_probes_match``).
NORM_RTOL = 1e-4
VARIANCE_RTOL = 1e-4
FRACTION_ATOL = 1e-3


def _close(a, b, rel: float, abs_: float = 0.0) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _assert_table(ours, theirs, rel: float, abs_: float, what: str) -> None:
    assert len(ours) == len(theirs), what
    for e, (row_a, row_b) in enumerate(zip(ours, theirs, strict=True)):
        assert len(row_a) == len(row_b), (what, e)
        for k, (a, b) in enumerate(zip(row_a, row_b, strict=True)):
            assert _close(a, b, rel, abs_), (what, e, k, a, b)


def assert_probes_match(probes: dict[str, Any], reference: dict[str, Any]) -> None:
    """The library's probes against the direct ones. Layer names, epochs, counts and
    which values are missing must be equal; floats agree within these tolerances:

    - norms (weights, gradients, their means and maxima over batches): relative
      ``NORM_RTOL`` = 1e-4. The library sums float32 squares in blocks (torch's cascade
      sums: relative error ~ log2(n) x 6e-8 < 1e-6 for the n <= 20 k values of these
      layers), the reference in float64; 1e-4 leaves a factor 100, while a wrong layer,
      epoch, batch or count moves a norm by percents.
    - dead-unit and zero-activation fractions, and the saturated and clipped fractions:
      absolute ``FRACTION_ATOL`` = 1e-3. Each is a count of values on one side of a bound;
      a value can cross only if rounding moves it across (a few in 10^4 at most: the
      layers hold >= 3 k values), a real change moves whole units or epochs (>= 1/32).
    - mean: relative 1e-4 of the layer's root mean square (float32 sums vs float64).
      std: its square (the variance) within ``VARIANCE_RTOL`` = 1e-4 of the mean square:
      the library forms it as E[y^2] - E[y]^2 from float32 sums, whose rounding (about
      1e-6 of E[y^2] each) is the whole variance for a layer whose outputs barely vary
      across samples (a sigmoid layer after a tiny init), so only the variance's
      absolute error is bounded, by a few 1e-6 of E[y^2].
    - histogram counts: the same total per layer, and each bin between the fewest and the
      most values that can fall in it when values within float32 rounding of a bin edge
      go either way (``_bin_count_bounds``); a wrong range, layer or epoch moves far more.
    - boundary probabilities: stored as round(255 p), so within one step (1/255 + 1e-9)
      of the reference's p; ranges within 1e-6 (float32 vs float64 mesh ends).
    """
    assert set(probes) == set(reference), (set(probes), set(reference))
    if "weights" in reference:
        ours, theirs = probes["weights"], reference["weights"]
        for key in ("layers", "epochs", "non_finite_epochs"):
            assert ours[key] == theirs[key], ("weights", key)
        assert ours["non_finite"] == bool(theirs["non_finite_epochs"])
        _assert_table(ours["weight_norm"], theirs["weight_norm"], NORM_RTOL, 0.0, "weights")
    if "gradients" in reference:
        ours, theirs = probes["gradients"], reference["gradients"]
        for key in ("layers", "epochs", "non_finite_epochs"):
            assert ours[key] == theirs[key], ("gradients", key)
        _assert_table(ours["grad_norm"], theirs["grad_norm"], NORM_RTOL, 0.0, "grad_norm")
        for key in ("global_grad_norm", "global_grad_norm_max"):
            _assert_table([ours[key]], [theirs[key]], NORM_RTOL, 0.0, key)
    if "dead_units" in reference:
        ours, theirs = probes["dead_units"], reference["dead_units"]
        for key in ("layers", "kinds", "epochs"):
            assert ours[key] == theirs[key], ("dead_units", key)
        for key in ("dead_unit_fraction", "zero_activation_fraction"):
            _assert_table(ours[key], theirs[key], 0.0, FRACTION_ATOL, key)
        assert _close(ours["zero_activation_fraction_mean"],
                      theirs["zero_activation_fraction_mean"], 0.0, FRACTION_ATOL)
    if "activations" in reference:
        _assert_activations_match(probes["activations"], reference["activations"])
    if "boundary" in reference:
        _assert_boundary_matches(probes["boundary"], reference["boundary"])


def _assert_activations_match(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key in ("layers", "kinds", "epochs"):
        assert ours[key] == theirs[key], ("activations", key)
    # float32 linspace, rounded to 9 digits: within 1e-6 of the exact edges
    _assert_table(ours["bin_edges"], theirs["bin_edges"], 0.0, 1e-6, "bin_edges")
    for key in ("saturated_fraction", "clipped_fraction"):
        _assert_table(ours[key], theirs[key], 0.0, FRACTION_ATOL, key)
    for e, (hists_a, hists_b) in enumerate(zip(ours["hist"], theirs["hist"], strict=True)):
        for k, (a, b) in enumerate(zip(hists_a, hists_b, strict=True)):
            fewest, most, total = np.array(b[0]), np.array(b[1]), b[2]
            assert len(a) == len(fewest) and sum(a) == total, ("hist total", e, k)
            assert (fewest <= a).all() and (np.array(a) <= most).all(), ("hist", e, k)
    for e, (mean_a, mean_b, std_a, std_b) in enumerate(zip(
            ours["mean"], theirs["mean"], ours["std"], theirs["std"], strict=True)):
        for k in range(len(mean_b)):
            if mean_b[k] is None or std_b[k] is None:  # not finite: stored as missing
                assert (mean_a[k], std_a[k]) == (mean_b[k], std_b[k]), ("mean", e, k)
                continue
            square = mean_b[k] ** 2 + std_b[k] ** 2  # E[y^2]
            assert abs(mean_a[k] - mean_b[k]) <= 1e-4 * math.sqrt(square), ("mean", e, k)
            assert abs(std_a[k] ** 2 - std_b[k] ** 2) <= VARIANCE_RTOL * square, ("std", e, k)


def _decode(data: str, grid: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(grid * grid)


def _assert_boundary_matches(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    grid = theirs["grid"]
    assert ours["grid"] == grid
    for key in ("x_range", "y_range"):
        _assert_table([ours[key]], [theirs[key]], 0.0, 1e-6, key)
    assert [s["epoch"] for s in ours["snapshots"]] == [s["epoch"] for s in theirs["snapshots"]]
    for snap_a, snap_b in zip([ours["final"], *ours["snapshots"]],
                              [theirs["final"], *theirs["snapshots"]], strict=True):
        assert set(snap_a) - {"epoch"} == set(snap_b) - {"epoch"}
        prob = _decode(snap_a["prob"], grid) / 255.0
        assert np.abs(prob - snap_b["prob"]).max() <= 1 / 255 + 1e-9
        if "argmax" in snap_b:  # where two classes tie within rounding, either may win
            moved = _decode(snap_a["argmax"], grid) != snap_b["argmax"]
            assert moved.mean() <= 0.01

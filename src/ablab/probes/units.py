"""Probes on activation outputs: dead units and activation distributions.

Both measure once before training (epoch 0, when the probe is built) and after every
epoch, on the run's fixed probe batch (``ProbeContext.probe_batch``), with the model in
eval mode. They hook the :class:`~ablab.models.Activation` modules only for that
measuring pass, which both probes share (``ProbeContext.activation_pass``: one forward
per epoch for the probes due, 256 samples at a time), and read everything back with one
host sync each.

Where the training step's forward pass computes exactly that pass
(``ProbeContext.training_forward``: full batch over a training split the probe batch
holds whole, a model without dropout or batch norm, fp32, uncompiled), both probes take
epoch ``e``'s measurement from epoch ``e + 1``'s training forward pass instead: the same
weights and samples, so the same numbers bit for bit, without a forward pass of their
own (the last measured epoch, which no step follows, still gets one). ``dead_units``'
counts and maxima do not depend on the samples' order; ``activations`` (float sums)
reads the step's rows put back in the probe batch's order.

A "unit" is a channel of a conv output (N×C×H×W: dim 1) or a feature of a dense output
(N×F). Every output layout is epoch-major: ``values[e][l]`` is layer ``layers[l]`` at
epoch ``epochs[e]``; ``null`` means "not meaningful" (see each probe) or not finite.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import Field

from ablab.models import activation_layers
from ablab.probes.base import ProbeContext, Scratch, count_true, finite_or_none, flat_values
from ablab.registry import PROBES

#: Bounded activations: "dead" is not defined for them; their histogram range is fixed.
SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
#: Activations whose outputs are never negative (histogram range [0, limit]).
NON_NEGATIVE = {"relu", "softplus"}


def _layers(ctx: ProbeContext) -> tuple[list[str], list[str]]:
    layers = activation_layers(ctx.model)
    return [n for n, _ in layers], [m.name for _, m in layers]


def _due(epoch: int, every: int, last: int) -> bool:
    """Measure at every ``every``-th epoch and at the last planned one."""
    return epoch % every == 0 or epoch == last


class _PassClient:
    """A probe fed by the shared activation pass: measured once at epoch 0, then at every
    ``every``-th epoch and the last planned one. Subclasses give ``begin``, ``hook``,
    ``_collect(epoch)`` and ``order_free``, and set ``self.every`` before calling
    ``_join_pass``.

    A client of a run whose training step is the probe pass
    (``ProbeContext.training_forward``) takes epoch ``e``'s measurement from epoch
    ``e + 1``'s training forward pass, which sees the same weights and samples (collected
    at that epoch's end; see :class:`~ablab.probes.base.ActivationPass`); only a
    measurement no training step follows gets a pass."""

    every: int
    order_free: bool

    def _join_pass(self, ctx: ProbeContext) -> None:
        self.last = ctx.epochs
        self.shared = ctx.activation_pass()
        self.shared.measure(self)
        self._collect(0)
        self.shared.join(self)

    def due(self, epoch: int) -> bool:
        return _due(epoch, self.every, self.last)

    def on_epoch_end(self, epoch: int) -> None:
        self.shared.take(self)  # the previous due epoch's, fed by this epoch's step
        if not self.due(epoch):
            return
        if self.shared.needs_pass(self, epoch):
            self.shared.run(epoch)
            self._collect(epoch)
        else:
            self.shared.wait(self, epoch)

    def _finish_pass(self) -> None:
        self.shared.take(self)
        self.shared.close()


class DeadUnits(_PassClient):
    """See :func:`dead_units`."""

    order_free = True  # counts and maxima

    def __init__(self, ctx: ProbeContext, every: int = 1):
        self.every = every
        self.scratch = ctx.scratch
        self.layers, self.kinds = _layers(ctx)
        self.units: list[int | None] = [None] * len(self.layers)
        self.epochs: list[int] = []
        self.dead: list[list[float | None]] = []
        self.zero: list[list[float | None]] = []
        self._join_pass(ctx)

    def begin(self) -> None:
        n = len(self.layers)
        self._peak: list[torch.Tensor | None] = [None] * n  # per unit: max "on" signal
        self._zeros: list[torch.Tensor | None] = [None] * n
        self._totals = [0] * n

    def hook(self, i: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        kind = self.kinds[i]
        if kind in SATURATING:
            return
        # ReLU: its output is exactly 0. Other piecewise / smooth ReLU-likes (leaky,
        # ELU, GELU, SiLU, ...): the unit is in its "off" region when its input <= 0.
        signal = out if kind == "relu" else inp
        # A unit is live when its largest value over the batch (and positions) is > 0:
        # one max-reduction per layer instead of a mask and two any() passes.
        if signal.dim() > 1:
            peak = signal.amax(dim=[0, *range(2, signal.dim())])
        else:  # one value per sample: a single unit
            peak = signal.amax().reshape(1)
        previous = self._peak[i]
        self._peak[i] = peak if previous is None else torch.maximum(previous, peak)
        values = flat_values(signal)
        mask = self.scratch.get("mask", values.numel(), torch.bool, values.device)
        count = count_true(torch.le(values, 0, out=mask))
        zeros = self._zeros[i]
        self._zeros[i] = count if zeros is None else zeros + count
        self._totals[i] += values.numel()
        self.units[i] = int(peak.numel())

    def _collect(self, epoch: int) -> None:
        peak, zeros, totals = self._peak, self._zeros, self._totals
        measured = [i for i in range(len(self.layers)) if peak[i] is not None]
        dead: list[float | None] = [None] * len(self.layers)
        zero: list[float | None] = [None] * len(self.layers)
        if measured:
            stats = torch.stack(
                [
                    torch.stack([(peak[i] <= 0).double().mean(), zeros[i] / totals[i]])
                    for i in measured
                ]
            ).tolist()  # the one host sync
            for i, (d, z) in zip(measured, stats, strict=True):
                dead[i], zero[i] = d, z
        self.epochs.append(epoch)
        self.dead.append(dead)
        self.zero.append(zero)

    def mean_zero_fraction(self) -> float | None:
        """The zero-activation fraction averaged over the layers (each layer weighs the
        same) and then over the measured epochs before the last planned one -- epoch ``e``
        is the state the ``e + 1``-th epoch's training starts from, so with ``every = 1``
        these are the states of every training forward pass of a full-batch run. This is
        the scalar source report 001 calls "dead ReLU %" (mean over its 300 epochs of the
        mean over both layers, on the training data). None without ReLU-like layers."""
        per_epoch = []
        for epoch, row in zip(self.epochs, self.zero, strict=True):
            values = [v for v in row if v is not None and math.isfinite(v)]
            if epoch < self.last and values:
                per_epoch.append(sum(values) / len(values))
        return sum(per_epoch) / len(per_epoch) if per_epoch else None

    def finish(self) -> dict[str, Any]:
        self._finish_pass()
        return {
            "layers": self.layers,
            "kinds": self.kinds,
            "units": self.units,
            "epochs": self.epochs,
            "dead_unit_fraction": finite_or_none(self.dead),
            "zero_activation_fraction": finite_or_none(self.zero),
            "zero_activation_fraction_mean": self.mean_zero_fraction(),
        }


@PROBES.register("dead_units", "Dead units and zero-activation fraction per activation layer")
def dead_units(ctx: ProbeContext, *, every: Annotated[int, Field(ge=1)] = 1) -> DeadUnits:
    """Per activation layer, at epoch 0 and after each epoch, on the fixed probe batch:

    - ``dead_unit_fraction``: the fraction of units that are "off" for EVERY input of the
      probe batch (and, for conv outputs, at every spatial position) — dead units;
    - ``zero_activation_fraction``: the fraction of all values (samples × units ×
      positions) that are "off" — what some reports call "dead ReLU %".

    "Off" means output == 0 for ReLU and input <= 0 for the other ReLU-like activations
    (leaky ReLU, ELU, GELU, SiLU, mish, softplus). For sigmoid and tanh neither is
    meaningful and both are ``null``.

    ``every = N`` measures at every N-th epoch and the last planned one only: on runs whose
    epoch is a single small step (300 full-batch epochs of a toy MLP) the per-epoch pass
    costs as much as the epoch itself.

    ``zero_activation_fraction_mean``: one scalar, the zero-activation fraction averaged
    over layers and over the measured epochs before the last (source report 001's "dead
    ReLU %"; exact with ``every = 1`` and a probe batch holding the whole training split).

    Output::

        {"layers": [name, ...], "kinds": ["relu", ...], "units": [units per layer],
         "epochs": [0, 1, ...],
         "dead_unit_fraction": [[per layer] per epoch],
         "zero_activation_fraction": [[per layer] per epoch],
         "zero_activation_fraction_mean": float or null}
    """
    return DeadUnits(ctx, every)


class ActivationStats(_PassClient):
    """See :func:`activations`."""

    order_free = False  # float sums: their rounding depends on the order of the values

    def __init__(self, ctx: ProbeContext, bins: int, limit: float, every: int = 1):
        self.every = every
        self.scratch = ctx.scratch
        self.bins = bins
        self.layers, self.kinds = _layers(ctx)
        self.ranges = [_range(kind, limit) for kind in self.kinds]
        self.epochs: list[int] = []
        self.hist: list[list[list[int] | None]] = []
        self.scalars: dict[str, list[list[float | None]]] = {
            k: [] for k in ("mean", "std", "saturated_fraction", "clipped_fraction")
        }
        self._join_pass(ctx)

    def begin(self) -> None:
        self._acc: list[dict[str, Any] | None] = [None] * len(self.layers)

    def hook(self, i: int, _inp: torch.Tensor, out: torch.Tensor) -> None:
        lo, hi = self.ranges[i]
        y = flat_values(out if out.dtype == torch.float32 else out.float())
        kind = self.kinds[i]
        counts = histogram(y, lo, hi, self.bins, self.scratch)  # with under/overflow
        if kind in SATURATING:
            clipped = torch.zeros((), dtype=torch.float64, device=y.device)  # range = codomain
            mask = self.scratch.get("mask", y.numel(), torch.bool, y.device)
            if kind == "tanh":
                magnitude = self.scratch.get("abs", y.numel(), torch.float32, y.device)
                torch.gt(torch.abs(y, out=magnitude), 0.99, out=mask)
            else:
                torch.logical_or(torch.lt(y, 0.01), torch.gt(y, 0.99), out=mask)
            saturated = count_true(mask)
        else:
            clipped = (counts[0] + counts[-2]).double()
            saturated = torch.zeros((), dtype=torch.float64, device=y.device)
        # float32 sums per chunk (pairwise, accurate), accumulated in float64 across chunks;
        # dot() is the sum of squares without a temporary.
        part = {
            "hist": counts,
            "sum": y.sum().double(),
            "sumsq": torch.dot(y, y).double(),
            "saturated": saturated,
            "clipped": clipped,
            "count": y.numel(),
        }
        acc = self._acc[i]
        self._acc[i] = part if acc is None else {k: acc[k] + v for k, v in part.items()}

    def _collect(self, epoch: int) -> None:
        n, acc = len(self.layers), self._acc
        measured = [i for i in range(n) if acc[i] is not None]
        hist: list[list[int] | None] = [None] * n
        rows: list[list[float | None]] = [[None] * 4 for _ in range(n)]
        if measured:
            scalars, counts = [], []
            for i in measured:
                a, count = acc[i], acc[i]["count"]
                mean = a["sum"] / count
                var = (a["sumsq"] / count - mean * mean).clamp_min(0)
                satur = a["saturated"] / count
                if self.kinds[i] not in SATURATING:
                    satur = torch.full_like(satur, float("nan"))  # stored as null
                scalars.append(
                    torch.stack([mean, var.sqrt(), satur, a["clipped"] / count])
                )
                hist_counts = a["hist"][1:-2].clone()  # fold under/overflow into the edges
                hist_counts[0] += a["hist"][0]
                hist_counts[-1] += a["hist"][-2]
                counts.append(hist_counts)
            values, counted = torch.stack(scalars).tolist(), torch.stack(counts).tolist()
            for j, i in enumerate(measured):
                rows[i], hist[i] = values[j], counted[j]
        self.epochs.append(epoch)
        self.hist.append(hist)
        for k, key in enumerate(("mean", "std", "saturated_fraction", "clipped_fraction")):
            self.scalars[key].append([row[k] for row in rows])

    def finish(self) -> dict[str, Any]:
        self._finish_pass()
        return {
            "layers": self.layers,
            "kinds": self.kinds,
            "epochs": self.epochs,
            "bin_edges": [
                [round(e, 9) for e in torch.linspace(lo, hi, self.bins + 1).tolist()]
                for lo, hi in self.ranges
            ],
            "hist": self.hist,
            **{k: finite_or_none(v) for k, v in self.scalars.items()},
        }


def histogram(
    y: torch.Tensor, lo: float, hi: float, bins: int, scratch: Scratch | None = None
) -> torch.Tensor:
    """Counts (int64, on ``y``'s device, no host sync) of the 1-D float32 ``y`` in
    ``bins + 3`` slots: ``[below lo, bin 1, ..., bin bins, at or above hi, NaN]``, the
    bins equal on [lo, hi). Written with reused buffers, in place, then ``bincount``: on
    the CPU several times faster than ``torch.histc``, which also drops out-of-range
    values instead of counting them."""
    scratch = scratch or Scratch()
    n = y.numel()
    scaled = scratch.get("hist", n, torch.float32, y.device)
    torch.mul(y, bins / (hi - lo), out=scaled)
    # slot = floor((y - lo) * bins / (hi - lo)) + 1, clamped to [0, bins + 1]; NaN → bins + 2
    scaled.add_(1.0 - lo * bins / (hi - lo)).clamp_(0, bins + 1).nan_to_num_(nan=bins + 2)
    index = scratch.get("hist_index", n, torch.int32, y.device)
    index.copy_(scaled)  # truncation = floor for values >= 0
    return torch.bincount(index, minlength=bins + 3).long()


def _range(kind: str, limit: float) -> tuple[float, float]:
    if kind in SATURATING:
        return SATURATING[kind]
    return (0.0, limit) if kind in NON_NEGATIVE else (-limit, limit)


@PROBES.register("activations", "Histogram, mean, std and saturation per activation layer")
def activations(
    ctx: ProbeContext,
    *,
    bins: Annotated[int, Field(ge=2, le=1000)] = 50,
    limit: Annotated[float, Field(gt=0)] = 5.0,
    every: Annotated[int, Field(ge=1)] = 1,
) -> ActivationStats:
    """Per activation layer, at epoch 0 and after each epoch, on the fixed probe batch: a
    histogram of the activation's outputs over ``bins`` equal bins on a FIXED range (the
    same for every epoch and every run, so histograms compare directly): sigmoid [0, 1],
    tanh [-1, 1], ReLU and softplus [0, limit], everything else [-limit, limit]. Values
    outside the range are counted in the edge bins (``clipped_fraction`` says how many);
    non-finite values are left out of the histogram.

    Also the mean and std of all output values and ``saturated_fraction``: the fraction
    with |y| > 0.99 for tanh, y < 0.01 or y > 0.99 for sigmoid, ``null`` for others.

    Output (epoch-major; ``hist`` holds integer counts)::

        {"layers": [...], "kinds": [...], "epochs": [0, 1, ...],
         "bin_edges": [[bins + 1 edges] per layer],
         "hist": [[[bins counts] per layer] per epoch],
         "mean": [[per layer] per epoch], "std": ..., "saturated_fraction": ...,
         "clipped_fraction": ...}
    """
    return ActivationStats(ctx, bins, limit, every)

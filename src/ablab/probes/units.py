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
from ablab.probes.base import (
    ProbeContext,
    Scratch,
    count_at_most,
    count_outside,
    finite_or_none,
    flat_values,
)

#: Bounded activations: "dead" is not defined for them; their histogram range is fixed.
SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
#: Bounded activations: their outputs outside this range count as saturated.
SATURATED_WITHIN = {"sigmoid": (0.01, 0.99), "tanh": (-0.99, 0.99)}
#: The activations probe's scalars per layer, in the order it computes them.
SCALARS = ("mean", "std", "saturated_fraction", "clipped_fraction")
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
    ``_collect(epoch)``, ``order_free`` and ``reads_input``, and set ``self.every`` before calling
    ``_join_pass``.

    A client of a run whose training step is the probe pass
    (``ProbeContext.training_forward``) takes epoch ``e``'s measurement from epoch
    ``e + 1``'s training forward pass, which sees the same weights and samples (collected
    at that epoch's end; see :class:`~ablab.probes.base.ActivationPass`); only a
    measurement no training step follows gets a pass."""

    every: int
    order_free: bool
    reads_input: bool

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
    reads_input = True  # "off" is input <= 0 for ReLU-likes other than ReLU

    def __init__(self, ctx: ProbeContext, every: int = 1):
        self.every = every
        self.scratch = ctx.scratch
        self.layers, self.kinds = _layers(ctx)
        self.units: list[int | None] = [None] * len(self.layers)
        self.epochs: list[int] = []
        self._measured: list[tuple[list, list, list]] = []  # per epoch: peak, zeros, totals
        self.dead: list[list[float | None]] = []  # per epoch, per layer (at finish)
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
        count = count_at_most(values, 0, self.scratch)
        zeros = self._zeros[i]
        self._zeros[i] = count if zeros is None else zeros + count
        self._totals[i] += values.numel()
        self.units[i] = int(peak.numel())

    def _collect(self, epoch: int) -> None:
        # Kept as measured (begin() starts new lists); turned into fractions by
        # _summarise, all epochs at once: a few ops per run instead of ~10 per epoch.
        self.epochs.append(epoch)
        self._measured.append((self._peak, self._zeros, self._totals))

    def _summarise(self) -> None:
        """``dead`` and ``zero`` (per epoch, per layer) from the measured epochs: per
        layer, the same element-wise arithmetic as one epoch at a time, on all of them
        stacked (a row's mean of 0/1 values is their exact count over the units, as the
        mean of one row alone), read back at the end."""
        n, measured = len(self.layers), self._measured
        self.dead = [[None] * n for _ in measured]
        self.zero = [[None] * n for _ in measured]
        for i in range(n):
            at = [e for e, (peak, _, _) in enumerate(measured) if peak[i] is not None]
            if not at:
                continue
            peaks = torch.stack([measured[e][0][i] for e in at])
            zeros = torch.stack([measured[e][1][i] for e in at])
            totals = torch.tensor(
                [measured[e][2][i] for e in at], dtype=torch.float64, device=zeros.device
            )
            dead = (peaks <= 0).double().mean(dim=1)
            for e, d, z in zip(at, dead.tolist(), (zeros / totals).tolist(), strict=True):
                self.dead[e][i], self.zero[e][i] = d, z

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
        self._summarise()
        return {
            "layers": self.layers,
            "kinds": self.kinds,
            "units": self.units,
            "epochs": self.epochs,
            "dead_unit_fraction": finite_or_none(self.dead),
            "zero_activation_fraction": finite_or_none(self.zero),
            "zero_activation_fraction_mean": self.mean_zero_fraction(),
        }


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
    reads_input = False  # outputs only: the training-forward tap need not reorder inputs

    def __init__(self, ctx: ProbeContext, bins: int, limit: float, every: int = 1):
        self.every = every
        self.scratch = ctx.scratch
        self.bins = bins
        self.layers, self.kinds = _layers(ctx)
        self.ranges = [_range(kind, limit) for kind in self.kinds]
        self.epochs: list[int] = []
        self._measured: list[list[dict[str, Any] | None]] = []  # per epoch: per layer sums
        # Per epoch, per layer (at finish):
        self.hist: list[list[list[int] | None]] = []
        self.scalars: dict[str, list[list[float | None]]] = {k: [] for k in SCALARS}
        self._join_pass(ctx)

    def begin(self) -> None:
        self._acc: list[dict[str, Any] | None] = [None] * len(self.layers)

    def hook(self, i: int, _inp: torch.Tensor | None, out: torch.Tensor) -> None:
        lo, hi = self.ranges[i]
        y = flat_values(out if out.dtype == torch.float32 else out.float())
        kind = self.kinds[i]
        counts = histogram(y, lo, hi, self.bins, self.scratch)  # with under/overflow
        if kind in SATURATING:
            clipped = torch.zeros((), dtype=torch.float64, device=y.device)  # range = codomain
            # tanh: |y| > 0.99; sigmoid: y < 0.01 or y > 0.99
            saturated = count_outside(y, *SATURATED_WITHIN[kind], self.scratch)
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
        # Kept as measured (begin() starts a new list); turned into statistics by
        # _summarise, all epochs at once: a few ops per run instead of ~30 per epoch.
        self.epochs.append(epoch)
        self._measured.append(self._acc)

    def _summarise(self) -> None:
        """``hist`` and ``scalars`` (per epoch, per layer) from the measured epochs: per
        layer, the same element-wise float64 arithmetic as one epoch at a time, on all of
        them stacked, read back at the end."""
        n, measured = len(self.layers), self._measured
        self.hist = [[None] * n for _ in measured]
        rows: list[list[list[float | None]]] = [[[None] * 4 for _ in range(n)] for _ in measured]
        for i in range(n):
            at = [e for e, acc in enumerate(measured) if acc[i] is not None]
            if not at:
                continue
            parts = [measured[e][i] for e in at]
            total, hist = (torch.stack([a[k] for a in parts]) for k in ("sum", "hist"))
            count = torch.tensor(
                [a["count"] for a in parts], dtype=torch.float64, device=total.device
            )
            mean = total / count
            var = (torch.stack([a["sumsq"] for a in parts]) / count - mean * mean).clamp_min(0)
            satur = torch.stack([a["saturated"] for a in parts]) / count
            if self.kinds[i] not in SATURATING:
                satur = torch.full_like(satur, float("nan"))  # stored as null
            clipped = torch.stack([a["clipped"] for a in parts]) / count
            counts = hist[:, 1:-2].clone()  # fold under/overflow into the edges
            counts[:, 0] += hist[:, 0]
            counts[:, -1] += hist[:, -2]
            values = torch.stack([mean, var.sqrt(), satur, clipped], dim=1).tolist()
            for e, row, counted in zip(at, values, counts.tolist(), strict=True):
                rows[e][i], self.hist[e][i] = row, counted
        self.scalars = {
            key: [[row[k] for row in epoch] for epoch in rows] for k, key in enumerate(SCALARS)
        }

    def finish(self) -> dict[str, Any]:
        self._finish_pass()
        self._summarise()
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

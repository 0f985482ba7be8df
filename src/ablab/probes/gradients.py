"""Probes on parameters: gradient flow (per batch, accumulated on the device) and weight
norms (per epoch).

Layers are those of :func:`ablab.models.parameter_layers` (conv, linear and batch-norm
layers with a weight), in forward order; a layer's norm is the L2 norm of its ``weight``
(or of that weight's gradient). Outputs are epoch-major: ``values[e][l]`` is layer
``layers[l]`` at epoch ``epochs[e]``. Non-finite values are stored as ``null`` and
flagged, never as NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ablab.models import parameter_layers
from ablab.probes.base import ProbeContext, finite_or_none

_BATCH_NORM = nn.modules.batchnorm._BatchNorm
#: The gradients probe summarises its epochs once this many steps are waiting (bounds
#: what it holds: two small tensors a step) and at the end of training.
_FLUSH_STEPS = 4096


def tensor_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of each tensor, as one 1-D tensor on their device (no host sync)."""
    if not tensors:
        return torch.zeros(0)
    if hasattr(torch, "_foreach_norm"):
        return torch.stack(torch._foreach_norm(tensors, 2.0)).float()
    return torch.stack([torch.linalg.vector_norm(t, 2.0) for t in tensors]).float()


class GradientFlow:
    """See :func:`gradients`."""

    def __init__(self, ctx: ProbeContext):
        layers = parameter_layers(ctx.model)
        self.layers = [n for n, _ in layers]
        self.kinds = ["batch_norm" if isinstance(m, _BATCH_NORM) else "weight" for _, m in layers]
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        position = {id(p): k for k, p in enumerate(self.params)}
        # Index of each layer's weight among self.params (-1: frozen, never has a gradient).
        self.weight_index = [position.get(id(m.weight), -1) for _, m in layers]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        self._pick = torch.tensor([max(k, 0) for k in self.weight_index], device=self.device)
        self.epochs: list[int] = []
        self.layer_norms: list[list[float | None]] = []
        self.global_norm: list[float | None] = []
        self.global_norm_max: list[float | None] = []
        self.non_finite_epochs: list[int] = []
        # Steps not yet summarised: each batch's (parameter norms, global norm), and the
        # epochs they make up (epoch, batches); summarised in _flush, many epochs at once.
        self._steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending: list[tuple[int, int]] = []
        self._batches = 0

    def after_backward(self) -> None:
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            norms = tensor_norms(grads)
        else:  # some parameters took no part in this batch: their gradient norm is 0
            present = [k for k, g in enumerate(grads) if g is not None]
            norms = torch.zeros(len(grads), device=self.device)
            if present:
                norms[present] = tensor_norms([grads[k] for k in present])
        self.record_norms(norms, torch.linalg.vector_norm(norms, 2.0))

    def record_norms(self, norms: torch.Tensor, total: torch.Tensor) -> None:
        """One step's gradient norms, one per parameter tensor (in ``model.parameters()``
        order, float32) and their global norm, computed by the caller: runs trained as one
        batched program compute every run's norms at once (``ablab.train.batched``)."""
        self._steps.append((norms, total))
        self._batches += 1

    def on_epoch_end(self, epoch: int) -> None:
        if self._batches == 0:
            return
        self._pending.append((epoch, self._batches))
        self._batches = 0
        if len(self._steps) >= _FLUSH_STEPS:
            self._flush()

    def _flush(self) -> None:
        """Summarise the pending epochs: per epoch, the mean over its batches of each
        layer's weight-gradient norm and of the global norm (float32 sums from zero, batch
        after batch, then divided by the batch count), and the largest global norm (from
        zero). The same element-wise operations, in the same order, as one epoch at a
        time, done for every pending epoch with the same batch count at once, and read
        back in one host sync per batch count (not per epoch)."""
        if not self._pending:
            return
        norms = torch.stack([n for n, _ in self._steps])
        totals = torch.stack([t for _, t in self._steps])
        rows = torch.cat([norms[:, self._pick], totals.unsqueeze(1)], dim=1)  # per step
        first, start = {}, 0  # epoch -> its first step
        for epoch, batches in self._pending:
            first[epoch], start = start, start + batches
        summaries: dict[int, list[float]] = {}
        for batches in sorted({b for _, b in self._pending}):
            epochs = [e for e, b in self._pending if b == batches]
            starts = torch.tensor([first[e] for e in epochs], device=rows.device)
            sums = torch.zeros(len(epochs), rows.shape[1], device=self.device)
            largest = torch.zeros(len(epochs), device=self.device)
            for j in range(batches):
                sums += rows.index_select(0, starts + j)
                largest = torch.maximum(largest, totals.index_select(0, starts + j))
            values = torch.cat([sums / batches, largest.unsqueeze(1)], dim=1).tolist()
            summaries.update(zip(epochs, values, strict=True))
        for epoch, _ in self._pending:
            self._record(epoch, summaries[epoch])
        self._steps, self._pending = [], []

    def _record(self, epoch: int, values: list[float]) -> None:
        *layer, mean_total, max_total = values
        layer = [v if k >= 0 else None for v, k in zip(layer, self.weight_index, strict=True)]
        self.epochs.append(epoch)
        self.layer_norms.append(finite_or_none(layer))
        self.global_norm.append(finite_or_none(mean_total))
        self.global_norm_max.append(finite_or_none(max_total))
        if not all(math.isfinite(v) for v in values):
            self.non_finite_epochs.append(epoch)

    def finish(self) -> dict[str, Any]:
        self._flush()
        return {
            "layers": self.layers,
            "kinds": self.kinds,
            "epochs": self.epochs,
            "grad_norm": self.layer_norms,
            "global_grad_norm": self.global_norm,
            "global_grad_norm_max": self.global_norm_max,
            "non_finite": bool(self.non_finite_epochs),
            "non_finite_epochs": self.non_finite_epochs,
            "summary": self._summary(),
        }

    def _summary(self) -> dict[str, Any]:
        empty = {
            "epoch": None,
            "ratio_to_first": [None] * len(self.layers),
            "vanishing_layer": None,
            "exploding_layer": None,
            "first_to_last_ratio": None,
        }
        # The last epoch whose every layer norm is finite and known.
        last = next(
            (e for e in range(len(self.epochs) - 1, -1, -1) if None not in self.layer_norms[e]),
            None,
        )
        if last is None or not self.layers:
            return empty
        norms = self.layer_norms[last]
        first = norms[0]
        ratios = [n / first if first > 0 else None for n in norms]
        # Vanishing / exploding are judged among conv and linear weights: batch-norm scale
        # gradients live on another scale and would dominate either end.
        candidates = [
            k for k, kind in enumerate(self.kinds) if kind == "weight" and ratios[k] is not None
        ]
        weights = [k for k, kind in enumerate(self.kinds) if kind == "weight"]
        first_w, last_w = (weights[0], weights[-1]) if weights else (0, len(norms) - 1)
        return {
            "epoch": self.epochs[last],
            "ratio_to_first": ratios,
            "vanishing_layer": (
                self.layers[min(candidates, key=lambda k: ratios[k])] if candidates else None
            ),
            "exploding_layer": (
                self.layers[max(candidates, key=lambda k: ratios[k])] if candidates else None
            ),
            "first_to_last_ratio": (norms[first_w] / norms[last_w] if norms[last_w] > 0 else None),
        }


def gradients(ctx: ProbeContext) -> GradientFlow:
    """After every training batch's backward pass: the L2 norm of each parameter layer's
    weight gradient and the global gradient norm over all parameters (what
    ``clip_grad_norm_`` computes), accumulated on the device; averaged over the epoch's
    batches and read back once per epoch. A layer whose weight got no gradient in a batch
    counts 0 for that batch; a frozen layer is ``null``.

    Output::

        {"layers": [...], "kinds": ["weight" | "batch_norm", ...], "epochs": [1, 2, ...],
         "grad_norm": [[mean weight-gradient norm per layer] per epoch],
         "global_grad_norm": [mean over batches, per epoch],
         "global_grad_norm_max": [max over batches, per epoch],
         "non_finite": bool, "non_finite_epochs": [epochs with a NaN/inf norm],
         "summary": {"epoch": last epoch with all norms finite,
                     "ratio_to_first": [norm / first layer's norm, per layer],
                     "vanishing_layer": conv/linear layer with the smallest ratio,
                     "exploding_layer": conv/linear layer with the largest ratio,
                     "first_to_last_ratio": first / last conv-linear layer's norm}}
    """
    return GradientFlow(ctx)


class WeightNorms:
    """See :func:`weights`."""

    def __init__(self, ctx: ProbeContext):
        layers = parameter_layers(ctx.model)
        self.layers = [n for n, _ in layers]
        self.weights = [m.weight for _, m in layers]
        self.epochs: list[int] = []
        self._measured: list[torch.Tensor] = []  # per epoch, read back at finish
        self.norms: list[list[float | None]] = []
        self.non_finite_epochs: list[int] = []
        self._measure(0)

    def _measure(self, epoch: int) -> None:
        with torch.no_grad():
            self._measured.append(tensor_norms([w.detach() for w in self.weights]))
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch: int) -> None:
        self._measure(epoch)

    def _summarise(self) -> None:
        """``norms`` and ``non_finite_epochs`` from the measured norms, read back in one
        host sync (not one per epoch)."""
        rows = torch.stack(self._measured).tolist()
        self.norms = [finite_or_none(values) for values in rows]
        self.non_finite_epochs = [
            epoch
            for epoch, values in zip(self.epochs, rows, strict=True)
            if not all(math.isfinite(v) for v in values)
        ]

    def finish(self) -> dict[str, Any]:
        self._summarise()
        return {
            "layers": self.layers,
            "epochs": self.epochs,
            "weight_norm": self.norms,
            "non_finite": bool(self.non_finite_epochs),
            "non_finite_epochs": self.non_finite_epochs,
        }


def weights(ctx: ProbeContext) -> WeightNorms:
    """The L2 norm of each parameter layer's weight before training (epoch 0) and after
    every epoch.

    Output::

        {"layers": [...], "epochs": [0, 1, ...],
         "weight_norm": [[per layer] per epoch],
         "non_finite": bool, "non_finite_epochs": [...]}
    """
    return WeightNorms(ctx)

"""What a probe is, and the set of probes one run carries.

A probe is a registry entry: a function taking a ``ProbeContext`` (plus its options as
keyword-only parameters) and returning an object with any of these methods, which the
training loop calls:

- ``after_backward()``: after each training batch's backward pass, before the optimizer
  step (gradients are those of this batch, unscaled);
- ``on_epoch_end(epoch)``: after each epoch's validation, model in eval mode;
- ``finish() -> dict``: at the end of training (after best weights are restored); returns
  JSON-able data stored under the probe's name in ``RunResult.probes``.

Probes read the model through forward/backward hooks on the layers the model registry
exposes (``activation_layers``, ``parameter_layers``), so a new model gets them for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ablab.data import DataBundle
from ablab.models import activation_layers
from ablab.registry import PROBES


@dataclass
class ProbeContext:
    model: torch.nn.Module
    bundle: DataBundle
    probe_batch_size: int
    seed: int
    epochs: int
    optimizer: torch.optim.Optimizer
    _batch: torch.Tensor | None = field(default=None, init=False, repr=False)
    _pass: ActivationPass | None = field(default=None, init=False, repr=False)

    def probe_batch(self) -> torch.Tensor:
        """A fixed, normalized batch from the training split (same for every epoch; built
        once and shared by every probe of the run)."""
        if self._batch is None:
            n = len(self.bundle.train)
            size = min(self.probe_batch_size, n)
            generator = torch.Generator().manual_seed(self.seed)
            index = torch.randperm(n, generator=generator)[:size].to(self.bundle.train.x.device)
            self._batch = self.bundle.normalize(self.bundle.train.x[index])
        return self._batch

    def activation_pass(self) -> ActivationPass:
        """The run's shared forward pass over the probe batch with hooks on the activation
        layers (one pass per epoch however many probes read activations)."""
        if self._pass is None:
            self._pass = ActivationPass(self)
        return self._pass


class ProbeSet:
    """The probes of one run. With no probes every call is a no-op."""

    def __init__(self, probes: dict[str, Any]):
        self.probes = probes
        self._after_backward = [p for p in probes.values() if hasattr(p, "after_backward")]
        self.wants_gradients = bool(self._after_backward)

    def after_backward(self) -> None:
        for probe in self._after_backward:
            probe.after_backward()

    def on_epoch_end(self, epoch: int) -> None:
        for probe in self.probes.values():
            if hasattr(probe, "on_epoch_end"):
                probe.on_epoch_end(epoch)

    def finish(self) -> dict[str, Any]:
        return {
            name: probe.finish() for name, probe in self.probes.items() if hasattr(probe, "finish")
        }


def attach_probes(probe_configs: list, ctx: ProbeContext) -> ProbeSet:
    """Build the configured probes (``ProbeConfig`` items: ``.name`` and ``.options``)."""
    return ProbeSet({p.name: PROBES.get(p.name).fn(ctx, **p.options) for p in probe_configs})


# ---------------------------------------------------------------- helpers for probes


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put every module in eval mode (and turn off autograd) for the block; restore each
    module's own previous mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


Hook = Callable[[int, torch.Tensor, torch.Tensor], None]


def forward_with_hooks(
    model: torch.nn.Module,
    modules: Sequence[torch.nn.Module],
    x: torch.Tensor,
    hook: Hook,
    chunk: int | None = None,
) -> None:
    """Run ``model`` on ``x`` in eval mode, ``chunk`` samples at a time, with a forward
    hook on each of ``modules`` calling ``hook(i, input, output)`` for module ``i`` (once
    per chunk, so hooks accumulate). Hooks exist only during this call, so training
    forward passes never pay for them; chunking bounds the memory a hook's statistics
    take on large conv outputs (eval mode makes the result independent of chunking)."""
    if chunk is None:
        # Tabular activations are small: one pass (a 3x cheaper probe on toy MLPs, where
        # the fixed cost per forward call dominates). Conv outputs: 256 images at a time.
        chunk = x.shape[0] if x.dim() <= 2 else 256
    handles = []
    for i, module in enumerate(modules):

        def _hook(_m, inputs, output, i=i):
            hook(i, inputs[0].detach(), output.detach())

        handles.append(module.register_forward_hook(_hook))
    try:
        with eval_mode(model):
            for start in range(0, x.shape[0], chunk):
                model(x[start : start + chunk])
    finally:
        for h in handles:
            h.remove()


class ActivationPass:
    """One hooked forward pass over the probe batch per epoch, shared by every probe that
    reads activation layers (:func:`ablab.models.activation_layers`, in that order).

    A client has ``begin()`` (reset its accumulators) and ``hook(i, input, output)`` for
    activation layer ``i``. ``run(epoch)`` does the pass for all clients the first time it
    is called for an epoch and nothing after, so each client calls it from its own
    ``on_epoch_end`` and then reads its results. ``measure(client)`` does a pass for one
    client alone (a probe's epoch-0 measurement when it is built)."""

    def __init__(self, ctx: ProbeContext):
        self.ctx = ctx
        self.modules = [m for _, m in activation_layers(ctx.model)]
        self.clients: list[Any] = []
        self._done: int | None = None

    def join(self, client: Any) -> None:
        self.clients.append(client)

    def measure(self, client: Any) -> None:
        client.begin()
        forward_with_hooks(self.ctx.model, self.modules, self.ctx.probe_batch(), client.hook)

    def run(self, epoch: int) -> None:
        if self._done == epoch:
            return
        self._done = epoch
        for client in self.clients:
            client.begin()

        def hook(i: int, inp: torch.Tensor, out: torch.Tensor) -> None:
            for client in self.clients:
                client.hook(i, inp, out)

        forward_with_hooks(self.ctx.model, self.modules, self.ctx.probe_batch(), hook)


def finite_or_none(values: Any) -> Any:
    """Nested lists of floats with NaN/inf replaced by None (JSON never sees NaN)."""
    if isinstance(values, (list, tuple)):
        return [finite_or_none(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values

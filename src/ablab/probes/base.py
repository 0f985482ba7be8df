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

import numpy as np
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
    #: The training step's forward pass is the probe pass: every step is one forward of
    #: ``model`` itself, in a mode that computes what eval mode does, on the whole training
    #: split, which the probe batch holds too (in another order). Set by the training loop
    #: (``ablab.train.callbacks.training_forward_is_probe_pass``); False: separate passes.
    training_forward: bool = False
    #: With ``training_forward``: the next training step's sample order (indices into the
    #: training split), so that order-dependent statistics (float sums) can read that
    #: step's activations in the probe batch's order; None: only order-free ones can.
    training_order: Callable[[], torch.Tensor] | None = None
    #: Whether another training step follows the epoch being closed (set by the training
    #: loop before each ``ProbeSet.on_epoch_end``): only then can a measurement wait for
    #: the next training forward pass.
    training_continues: bool = field(default=False, init=False, repr=False)
    _batch: torch.Tensor | None = field(default=None, init=False, repr=False)
    _index: torch.Tensor | None = field(default=None, init=False, repr=False)
    _pass: ActivationPass | None = field(default=None, init=False, repr=False)
    scratch: Scratch = field(default_factory=lambda: Scratch(), init=False, repr=False)

    def probe_batch(self) -> torch.Tensor:
        """A fixed, normalized batch from the training split (same for every epoch; built
        once and shared by every probe of the run)."""
        if self._batch is None:
            n = len(self.bundle.train)
            size = min(self.probe_batch_size, n)
            generator = torch.Generator().manual_seed(self.seed)
            index = torch.randperm(n, generator=generator)[:size].to(self.bundle.train.x.device)
            self._index = index
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

    def __init__(self, probes: dict[str, Any], ctx: ProbeContext | None = None):
        self.probes = probes
        self.ctx = ctx
        self._after_backward = [p for p in probes.values() if hasattr(p, "after_backward")]
        self.wants_gradients = bool(self._after_backward)

    @property
    def gradient_probes(self) -> list[Any]:
        """The probes that read gradients after each backward pass."""
        return list(self._after_backward)

    def after_backward(self) -> None:
        for probe in self._after_backward:
            probe.after_backward()

    def on_epoch_end(self, epoch: int, training_continues: bool = False) -> None:
        """``training_continues``: another training step follows this epoch (lets probes
        take the next state's measurement from that step's forward pass)."""
        if self.ctx is not None:
            self.ctx.training_continues = training_continues
        for probe in self.probes.values():
            if hasattr(probe, "on_epoch_end"):
                probe.on_epoch_end(epoch)

    def finish(self) -> dict[str, Any]:
        return {
            name: probe.finish() for name, probe in self.probes.items() if hasattr(probe, "finish")
        }


def attach_probes(probe_configs: list, ctx: ProbeContext) -> ProbeSet:
    """Build the configured probes (``ProbeConfig`` items: ``.name`` and ``.options``)."""
    return ProbeSet({p.name: PROBES.get(p.name).fn(ctx, **p.options) for p in probe_configs}, ctx)


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

#: Modules whose forward differs between train and eval mode (or is random in train mode).
_MODE_DEPENDENT = (
    torch.nn.modules.dropout._DropoutNd,
    torch.nn.modules.batchnorm._NormBase,
    torch.nn.RReLU,
)


def mode_independent(model: torch.nn.Module) -> bool:
    """Whether ``model`` computes the same in train and eval mode: built only from
    torch.nn's and ablab's modules, none of them dropout, batch/instance norm or RReLU.
    A module from elsewhere (a plugin's) may read ``self.training``: not independent."""
    return all(
        type(m).__module__.startswith(("torch.nn.", "ablab."))
        and not isinstance(m, _MODE_DEPENDENT)
        for m in model.modules()
    )


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
        # Tabular activations are small: one pass (the fixed cost per forward call
        # dominates on toy MLPs). Conv outputs: 256 images at a time.
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
    """The hooked forward passes over the probe batch, shared by every probe that reads
    activation layers (:func:`ablab.models.activation_layers`, in that order).

    A client has ``begin()`` (reset its accumulators), ``hook(i, input, output)`` for
    activation layer ``i``, ``due(epoch)``, ``_collect(epoch)``, ``order_free`` (its
    statistics do not depend on the order of the batch's samples: counts, maxima) and
    ``reads_input`` (its ``hook`` reads the layer's input; False: it may get None there).

    ``run(epoch)`` does one pass for every client due at ``epoch`` that needs one, the
    first time it is called for an epoch and nothing after, so each client calls it from
    its own ``on_epoch_end`` and then reads its results. ``measure(client)`` does a pass
    for one client alone (a probe's epoch-0 measurement when it is built).

    With ``ProbeContext.training_forward`` a client need not have a pass of its own:
    ``wait(client, epoch)`` has the next training step's forward pass, which sees epoch
    ``epoch``'s weights and the same samples, feed it instead (``take`` then collects it
    under ``epoch``); an order-dependent client is fed that pass's rows put back in the
    probe batch's order (``ProbeContext.training_order``), so its float sums add the same
    values in the same order as its own pass would. A run's last measurement, after which
    no step follows, still gets its own pass."""

    def __init__(self, ctx: ProbeContext):
        self.ctx = ctx
        self.modules = [m for _, m in activation_layers(ctx.model)]
        self.clients: list[Any] = []
        self._done: int | None = None
        # id(client) -> (client, epoch, the layers it was fed since it began waiting)
        self._waiting: dict[int, tuple[Any, int, set[int]]] = {}
        self._tap_handles: list[Any] = []
        self._rows: torch.Tensor | None = None  # the step's rows in probe-batch order

    def join(self, client: Any) -> None:
        self.clients.append(client)

    def taps(self, client: Any) -> bool:
        """Whether ``client``'s measurements come from the training forward pass."""
        ctx = self.ctx
        return ctx.training_forward and (client.order_free or ctx.training_order is not None)

    def needs_pass(self, client: Any, epoch: int) -> bool:
        """Due at ``epoch`` and not fed by the next training step."""
        return client.due(epoch) and not (self.taps(client) and self.ctx.training_continues)

    def measure(self, client: Any) -> None:
        client.begin()
        forward_with_hooks(self.ctx.model, self.modules, self.ctx.probe_batch(), client.hook)

    def run(self, epoch: int) -> None:
        if self._done == epoch:
            return
        self._done = epoch
        clients = [c for c in self.clients if self.needs_pass(c, epoch)]
        for client in clients:
            client.begin()

        def hook(i: int, inp: torch.Tensor, out: torch.Tensor) -> None:
            for client in clients:
                client.hook(i, inp, out)

        forward_with_hooks(self.ctx.model, self.modules, self.ctx.probe_batch(), hook)

    # ---- measurements taken from the training step's forward pass

    def wait(self, client: Any, epoch: int) -> None:
        """Feed ``client`` from the next training forward pass, as epoch ``epoch``."""
        if not self._tap_handles:
            for i, module in enumerate(self.modules):
                handle = module.register_forward_hook(lambda _m, a, o, i=i: self._tap(i, a, o))
                self._tap_handles.append(handle)
        client.begin()
        self._waiting[id(client)] = (client, epoch, set())
        if not client.order_free:  # every client waits for the same, next step
            order = self.ctx.training_order()  # row j of the step is sample order[j]
            position = torch.empty_like(order)
            position[order] = torch.arange(order.numel(), device=order.device)
            self.ctx.probe_batch()
            self._rows = position[self.ctx._index]

    def _tap(self, i: int, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # Only a training step's forward (train mode, autograd on), once per layer: the
        # validation, test and probe passes run in eval mode without autograd.
        if not self._waiting or not self.modules[i].training or not torch.is_grad_enabled():
            return
        with torch.no_grad():
            inp, out = inputs[0].detach(), output.detach()
            ordered: dict[str, torch.Tensor] = {}  # each tensor put in order once, if read
            for client, _, fed in self._waiting.values():
                if i in fed:
                    continue
                fed.add(i)
                if client.order_free:
                    client.hook(i, inp, out)
                    continue
                if "out" not in ordered:
                    ordered["out"] = self._in_batch_order(out)
                if client.reads_input and "inp" not in ordered:
                    ordered["inp"] = self._in_batch_order(inp)
                client.hook(i, ordered.get("inp"), ordered["out"])

    def _in_batch_order(self, rows: torch.Tensor) -> torch.Tensor:
        """The step's ``rows`` put in the probe batch's order: a copy of the same values
        (``index_select``: the same gather as ``rows[index]``, without advanced indexing's
        overhead on the CPU)."""
        return torch.index_select(rows, 0, self._rows)

    def take(self, client: Any) -> None:
        """Collect ``client``'s waiting measurement: fed by a training step since
        ``wait``, or else (no step followed: a callback after the probes ended training)
        measured now with a pass of its own."""
        waiting = self._waiting.pop(id(client), None)
        if waiting is None:
            return
        _, epoch, fed = waiting
        if len(fed) < len(self.modules):
            self.measure(client)
        client._collect(epoch)

    def close(self) -> None:
        """Remove the training-pass hooks (at the end of training)."""
        for handle in self._tap_handles:
            handle.remove()
        self._tap_handles.clear()


class Scratch:
    """Work buffers reused from one hook call to the next. On the CPU a fresh tensor of
    tens of MB costs more in page faults than the arithmetic done in it, so per-value
    statistics write into these instead. One set per run: hooks run one after another,
    never at once."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}
        self._host_mask: np.ndarray | None = None

    def get(
        self, slot: str, numel: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """A 1-D tensor of ``numel`` elements (contents undefined); a ``slot`` names a
        buffer, so two live at once must have different slots."""
        key = (slot, dtype, device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel]

    def host_mask(self, numel: int) -> np.ndarray:
        """A 1-D numpy bool array of ``numel`` elements (contents undefined), for the
        counters' CPU path: slicing it costs a fraction of a tensor's slice-and-view."""
        buffer = self._host_mask
        if buffer is None or buffer.size < numel:
            buffer = self._host_mask = np.empty(numel, dtype=np.bool_)
        return buffer[:numel]


def flat_values(t: torch.Tensor) -> torch.Tensor:
    """All values of ``t`` as a 1-D view in memory order, whatever the layout (a
    channels-last conv output too): for statistics that ignore where a value sits."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)  # a view: this order is contiguous
    return t.reshape(-1)


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """The number of True values in a 1-D bool tensor, as a float64 scalar on its device
    (exact: counted as int64, without a float copy of the mask)."""
    return torch.count_nonzero(mask).double()


#: dtypes whose CPU tensors the counters below read through numpy (a view, no copy).
_HOST_DTYPES = (torch.float32, torch.float64)


def _host_view(values: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a CPU tensor of a dtype numpy shares; None elsewhere (CUDA, bf16)."""
    if values.is_cpu and values.dtype in _HOST_DTYPES:
        return values.numpy()
    return None


def _exact_count(count: int, device: torch.device) -> torch.Tensor:
    return torch.scalar_tensor(count, dtype=torch.float64, device=device)


def count_at_most(values: torch.Tensor, bound: float, scratch: Scratch) -> torch.Tensor:
    """The number of ``values`` (1-D) that are <= ``bound`` (NaN is not), as
    :func:`count_true` gives it. On the CPU numpy compares and counts: the same exact count,
    without torch's ``le`` into a bool tensor and ``count_nonzero``. The comparison is in
    ``values``' dtype either way (``bound`` rounded to it, as torch and numpy >= 2 both do)."""
    host = _host_view(values)
    if host is not None:
        mask = scratch.host_mask(host.size)
        return _exact_count(np.count_nonzero(np.less_equal(host, bound, out=mask)), values.device)
    mask = scratch.get("mask", values.numel(), torch.bool, values.device)
    return count_true(torch.le(values, bound, out=mask))


def count_outside(values: torch.Tensor, lo: float, hi: float, scratch: Scratch) -> torch.Tensor:
    """The number of ``values`` (1-D) that are < ``lo`` or > ``hi`` (NaN is neither), as
    :func:`count_true` gives it; on the CPU through numpy, as :func:`count_at_most`."""
    host = _host_view(values)
    if host is not None:
        mask = scratch.host_mask(host.size)
        below = np.count_nonzero(np.less(host, lo, out=mask))
        above = np.count_nonzero(np.greater(host, hi, out=mask))
        return _exact_count(below + above, values.device)  # lo <= hi: no value is both
    mask = scratch.get("mask", values.numel(), torch.bool, values.device)
    above = scratch.get("above", values.numel(), torch.bool, values.device)
    below = torch.lt(values, lo, out=mask)
    return count_true(torch.logical_or(below, torch.gt(values, hi, out=above), out=mask))


def finite_or_none(values: Any) -> Any:
    """Nested lists of floats with NaN/inf replaced by None (JSON never sees NaN)."""
    if isinstance(values, (list, tuple)):
        return [finite_or_none(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values

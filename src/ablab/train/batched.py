"""Runs trained together: runs that share an architecture, data, batch size and epochs,
trained as ONE batched program (``torch.func.stack_module_state`` + ``functional_call`` +
``vmap``), whatever else differs among them: seeds (split, init, order), learning rate,
momentum, weight decay and the optimizer's other numeric settings, the weight init, the
loss, the schedule, early stopping and probes.

Each member keeps everything ``fit`` would give it: its run is started by ``fit``'s own
``start_run`` (seed, data split, model, memory layout, a ``BatchLoader`` with its own
shuffling and augmentation, its ``RunResult``), and its epochs are closed and its run
finished by ``fit``'s ``close_epoch`` and ``finish_run``, with its own callbacks (its
schedule, early stopping, probes, progress) and its own divergence. The parameters of all
members live in stacked tensors (leading dimension = member) that one
:class:`StackedOptimizer` steps, with each member's hyper-parameters as tensors along that
dimension: every supported optimizer is elementwise, so member ``k`` sees the updates it
would see alone. Each member's schedule steps a one-parameter torch optimizer of its own
(``member.run.optimizer``) whose rate the stacked step reads every epoch, so every
schedule, ``reduce_on_plateau`` included, behaves as in ``fit``. Each member's
``nn.Module`` stays alive with its parameters as *views* into the stacked tensors, so
epoch-end probes, early stopping (state dicts) and the final evaluation use the ordinary
per-run code; the gradients probe reads each member's slice of the stacked gradient.

What must be shared (:func:`program_key`): everything in a run's identity except the
seeds, the optimizer's settings (not its family: SGD, Adam, ... are separate programs),
``model.init``, the dropout rates (each member drops at its own rate:
:class:`_MemberDropout`), the loss, the schedule, early stopping and probes. A different
architecture (a rate of 0 has no dropout layer), dataset, batch size or epoch count is a
separate program; separate programs run side by side (one per worker process, on the same
device).

Results equal separate ``fit`` runs up to float rounding (batched vs. single matmuls); a
model with dropout draws its masks from a different random stream than ``fit`` (same
distribution, not the same masks). Without dropout a member's numbers do not depend on the
other members of its program (batched kernels compute each slice alike); with dropout its
masks are drawn with the whole program's.

Why: small models spend most of a step in per-op overhead (Python, dispatch, kernel
launches, optimizer loop); S runs in one step pay it once, and on a GPU one batched
(grouped) matmul or convolution keeps the device busy where a small one cannot. Where it
pays is the device's business (``worth_batching``): on a GPU; not on a CPU, where the
executors train one run per core instead.

Memory: a program's size is bounded by a measured estimate of one member's bytes
(:func:`member_bytes`) against the device's free memory (:func:`memory_budget`); a program
larger than that is split (:func:`split_by_memory`), and a program that still runs out of
memory is split in halves and retried down to single runs (a single run that does not fit
fails alone, as it would in ``fit``).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablab.config import RunConfig
from ablab.identity import identity
from ablab.models import build_model
from ablab.models.flops import model_shape
from ablab.train.accel import autocast
from ablab.train.callbacks import CallbackList, EpochCallback, run_callbacks
from ablab.train.loop import fit
from ablab.train.losses import build_loss
from ablab.train.result import RunResult
from ablab.train.schedules import build_schedule
from ablab.train.state import (
    RunState,
    close_epoch,
    finish_run,
    open_record,
    resolve_device,
    start_run,
)

#: ``fit_batched``'s ``on_epoch``: the member's index in the program, and its epoch record.
MemberEpochCallback = Callable[[int, dict[str, Any]], None]
SeedEpochCallback = MemberEpochCallback  # the name from when only seeds were batched

#: Top-level fields of a run that may differ among the members of one program.
MEMBER_FIELDS = (
    "seed", "init_seed", "order_seed", "loss", "schedule", "early_stopping", "probes",
    "probe_batch_size",
)
#: Fields inside a table that may differ among members (the optimizer's family may not).
MEMBER_SUBFIELDS = {"model": ("init",), "dataset": ("split_seed",)}
#: Losses known to work under vmap.
BATCHABLE_LOSSES = {"cross_entropy", "mse_softmax", "bce_onehot"}
#: Share of the device's free memory a program may plan to use (the rest: the CUDA
#: caching allocator's fragmentation, cuDNN workspaces, the other programs' growth).
MEMORY_SHARE = 0.7


def program_key(cfg: RunConfig | dict[str, Any]) -> str:
    """What runs must share to train as one program: their identity without the fields
    that may differ per member (``MEMBER_FIELDS``, ``MEMBER_SUBFIELDS``, the optimizer's
    settings but not its name), as canonical JSON. Dropout rates may differ too where the
    architectures are otherwise the same (the model's layers with every dropout rate
    masked: :func:`_structure`); a rate of 0 has no dropout layer, so it is another
    program."""
    data = identity(cfg, with_seed=False)
    for name in MEMBER_FIELDS:
        data.pop(name, None)
    for table, keys in MEMBER_SUBFIELDS.items():
        if isinstance(data.get(table), dict):
            data[table] = {k: v for k, v in data[table].items() if k not in keys}
    if isinstance(data.get("optimizer"), dict):
        data["optimizer"] = {"name": data["optimizer"]["name"]}
    structure = _structure_of(cfg)
    if structure is not None and isinstance(data.get("model"), dict):
        data["model"] = {k: v for k, v in data["model"].items() if "dropout" not in k}
        data["model_layers"] = structure
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _structure_of(cfg: RunConfig | dict[str, Any]) -> str | None:
    """The model's layers (its ``repr``) with every dropout rate masked, or None where the
    model cannot be built for its data here."""
    try:
        if not isinstance(cfg, RunConfig):
            cfg = RunConfig.model_validate(cfg)
        model = cfg.model.model_copy(update={"init": "default"})
        return _structure(model.model_dump_json(), model_shape(cfg))
    except Exception:  # noqa: BLE001 - then the dropout rates stay in the key
        return None


@functools.lru_cache(maxsize=512)
def _structure(model_json: str, shape: tuple[int, ...]) -> str:
    from ablab.config import ModelConfig

    with torch.device("meta"):
        model = build_model(ModelConfig.model_validate_json(model_json), shape, 10)
    return _DROPOUT_RATE.sub(r"\1(p=*,", repr(model))


_DROPOUT_RATE = re.compile(r"(Dropout\w*)\(p=[^,)]+,")


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def can_batch(configs: list[RunConfig]) -> bool:
    """True when ``configs`` may train as one batched program: distinct runs with one
    :func:`program_key`; no weights kept (``keep`` comes from ``fit`` alone); an optimizer
    :class:`StackedOptimizer` implements; losses that work under vmap; a model without
    batch norm (running statistics per member under vmap) that builds for the data.

    A single eligible config is batchable too (a program of one): where batching is
    ``worth_batching`` (a GPU), the executors train every eligible run through
    ``fit_batched``, because a member's numbers there are bit-identical whatever the
    program's size, so results do not depend on how a study was split into programs,
    resumed or retried.

    Every probe, per-member early stopping, schedules (``reduce_on_plateau`` too) and
    divergence are supported."""
    from ablab.identity import run_id

    if not configs:
        return False
    if any(c.keep != "none" for c in configs):
        return False
    if len({run_id(c) for c in configs}) != len(configs):
        return False
    key = program_key(configs[0])
    if any(program_key(c) != key for c in configs[1:]):
        return False
    cfg = configs[0]
    if cfg.optimizer.name not in STACKED_OPTIMIZERS:
        return False
    if any(c.loss.name not in BATCHABLE_LOSSES for c in configs):
        return False
    try:
        # The layer structure only: on the meta device, without the configured init
        # (initialising meta tensors goes through slow Python reference kernels: 1.7 s).
        with torch.device("meta"):
            model = build_model(
                cfg.model.model_copy(update={"init": "default"}), model_shape(cfg), 10
            )
    except Exception:  # noqa: BLE001 - unknown shape or a model that cannot build: no batching
        return False
    return not _has_batch_norm(model)


def worth_batching(configs: list[RunConfig]) -> bool:
    """Whether the executors should train these (batchable) runs together: on a CUDA
    device, yes. On a CPU, no: measured on the 2-core development machine, 3 seeds
    together on one thread took longer than the 3 runs one after another (moons MLP full
    batch 0.84x, batch 64 0.98x; digits MLP batch 64 0.96x, batch 256 0.91x; Fashion MLP
    batch 64 0.76x): a CPU core is busy with arithmetic even on these small steps, and one
    single-thread run per core already uses every core. Measured again for #17 on the
    study moons-circles-activations (5 seeds of one variant, 300 full-batch epochs, probes
    on, one thread, shared machine): 0.74x, 0.97x, 0.75x; and after 300 steps the batched
    seeds' test accuracies differ from ``fit``'s (seed 0: 0.9267 vs 0.9067), the batched
    matmuls' rounding grown by training, so batching on a CPU would also change results."""
    return bool(configs) and resolve_device(configs[0].device).type == "cuda"


# ---------------------------------------------------------------- the stacked optimizer


def _per_member(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


class StackedOptimizer:
    """One elementwise optimizer over stacked parameters (leading dimension = member),
    each member with its own hyper-parameters (``options[k]``, the registry's keyword
    arguments) and learning rate (:attr:`lr`, set before each epoch). The arithmetic is
    PyTorch's (``torch.optim``'s single-tensor algorithms, without amsgrad, dampening,
    centering), in the same order, so a member follows what ``fit``'s optimizer does up to
    float rounding; a member with momentum 0 (or weight decay 0) gets exactly the plain
    update."""

    def __init__(self, family: str, options: list[dict[str, Any]], params: list[torch.Tensor]):
        if family not in STACKED_OPTIMIZERS:
            raise ValueError(f"stacked optimizer: {family!r} is not one of "
                             f"{', '.join(sorted(STACKED_OPTIMIZERS))}")
        device = params[0].device
        self.family, self.params = family, params
        self.hp = {
            name: _per_member([float(o.get(name, default)) for o in options], device)
            for name, default in STACKED_OPTIMIZERS[family].items()
        }
        self.lr = self.hp["lr"].clone()
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _view(self, name: str, p: torch.Tensor) -> torch.Tensor:
        values = self.lr if name == "lr" else self.hp[name]
        return values.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            hp = lambda name, p=p: self._view(name, p)  # noqa: E731
            getattr(self, f"_{self.family}")(p, p.grad, state, hp)

    def _sgd(self, p, grad, state, hp) -> None:
        d_p = grad + hp("weight_decay") * p
        if "momentum_buffer" not in state:
            buf = state["momentum_buffer"] = d_p.clone()
        else:
            buf = state["momentum_buffer"]
            buf.mul_(hp("momentum")).add_(d_p)
        nesterov = hp("nesterov") > 0
        update = torch.where(nesterov, d_p + hp("momentum") * buf, buf)
        # momentum 0: torch uses d_p itself; buf equals d_p then (0 * buf + d_p)
        p.sub_(hp("lr") * update)

    def _adam_moments(self, p, grad, state, hp) -> tuple[torch.Tensor, torch.Tensor]:
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - hp("beta1"))
        exp_avg_sq.mul_(hp("beta2")).add_((1 - hp("beta2")) * grad * grad)
        return exp_avg, exp_avg_sq

    def _adam_update(self, p, exp_avg, exp_avg_sq, hp) -> None:
        bias1 = 1 - hp("beta1") ** self.steps
        bias2_sqrt = (1 - hp("beta2") ** self.steps).sqrt()
        denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(hp("eps"))
        p.sub_((hp("lr") / bias1) * exp_avg / denom)

    def _adam(self, p, grad, state, hp) -> None:
        grad = grad + hp("weight_decay") * p
        exp_avg, exp_avg_sq = self._adam_moments(p, grad, state, hp)
        self._adam_update(p, exp_avg, exp_avg_sq, hp)

    def _adamw(self, p, grad, state, hp) -> None:
        p.mul_(1 - hp("lr") * hp("weight_decay"))
        exp_avg, exp_avg_sq = self._adam_moments(p, grad, state, hp)
        self._adam_update(p, exp_avg, exp_avg_sq, hp)

    def _nadam(self, p, grad, state, hp) -> None:
        grad = grad + hp("weight_decay") * p
        if "mu_product" not in state:
            state["mu_product"] = torch.ones_like(hp("beta1"))
        exp_avg, exp_avg_sq = self._adam_moments(p, grad, state, hp)
        step, decay = self.steps, NADAM_MOMENTUM_DECAY
        mu = hp("beta1") * (1.0 - 0.5 * 0.96 ** (step * decay))
        mu_next = hp("beta1") * (1.0 - 0.5 * 0.96 ** ((step + 1) * decay))
        mu_product = state["mu_product"].mul_(mu)
        bias2 = 1 - hp("beta2") ** step
        denom = (exp_avg_sq / bias2).sqrt().add_(hp("eps"))
        p.sub_(hp("lr") * (1.0 - mu) / (1.0 - mu_product) * grad / denom)
        p.sub_(hp("lr") * mu_next / (1.0 - mu_product * mu_next) * exp_avg / denom)

    def _rmsprop(self, p, grad, state, hp) -> None:
        grad = grad + hp("weight_decay") * p
        if not state:
            state["square_avg"] = torch.zeros_like(p)
            state["momentum_buffer"] = torch.zeros_like(p)
        square_avg = state["square_avg"]
        square_avg.mul_(hp("alpha")).add_((1 - hp("alpha")) * grad * grad)
        avg = square_avg.sqrt().add_(hp("eps"))
        buf = state["momentum_buffer"]
        buf.mul_(hp("momentum")).add_(grad / avg)  # momentum 0: buf is grad / avg
        p.sub_(hp("lr") * buf)


#: NAdam's ``momentum_decay`` (PyTorch's default; not an option of ablab's entry).
NADAM_MOMENTUM_DECAY = 4e-3
#: The optimizers :class:`StackedOptimizer` implements: each numeric option with the
#: registry's default (``nesterov`` as 0 / 1).
STACKED_OPTIMIZERS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
    "nadam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "momentum": 0.0, "eps": 1e-8, "weight_decay": 0.0},
}


def _rate_holder(lr: float, device: torch.device) -> torch.optim.Optimizer:
    """A member's own one-parameter optimizer: its schedule steps this one's rate (as in
    ``fit``), which the stacked step reads."""
    return torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=lr)


# ---------------------------------------------------------------- the stacked model


class _Member:
    """One run of the program: its run and callbacks, and whether it still trains."""

    def __init__(self, run: RunState, callbacks: CallbackList):
        self.run, self.callbacks = run, callbacks
        self.active = True
        self.frozen: dict[str, torch.Tensor] | None = None  # weights when it stopped

    @property
    def lr(self) -> float:
        return self.run.optimizer.param_groups[0]["lr"]

    def freeze(self) -> None:
        """The member stops (early stopping or divergence): keep its weights as they are
        now; the program trains on, and its slice's later updates are discarded."""
        self.active = False
        self.frozen = {n: p.detach().clone() for n, p in self.run.model.named_parameters()}

    def unfreeze(self) -> None:
        """Put the weights it stopped with back (before its final evaluation)."""
        if self.frozen is not None:
            with torch.no_grad():
                for name, p in self.run.model.named_parameters():
                    p.copy_(self.frozen[name])


class _StackedSplit:
    """One split (``"train"`` or ``"val"``) of every member, each distinct data held once
    (members with one effective split seed share it), so a batch of all members is one
    indexing op and one normalization: ``rows(idx)`` with ``idx`` S×B gives S×B×... inputs,
    normalized as each member's ``bundle.normalize`` does (the same elementwise ops)."""

    def __init__(self, runs: list[RunState], which: str):
        keys = [  # the effective split seed: members that share it share their data
            r.cfg.seed if r.cfg.dataset.split_seed is None else r.cfg.dataset.split_seed
            for r in runs
        ]
        distinct = list(dict.fromkeys(keys))
        member_data = [distinct.index(k) for k in keys]
        splits = [getattr(runs[keys.index(k)].bundle, which) for k in distinct]
        device = splits[0].x.device
        self.x = torch.stack([s.x for s in splits])  # U×N×... as stored (uint8 images)
        self.y = torch.stack([s.y for s in splits])
        self.member_data = torch.tensor(member_data, device=device)[:, None]  # S×1
        bundles = [r.bundle for r in runs]
        self.scale = bundles[0].scale
        self.mean = torch.stack([b.mean for b in bundles])  # S×1×C(×1×1)
        self.std = torch.stack([b.std for b in bundles])
        self.n = splits[0].x.shape[0]

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[self.member_data, idx]
        return (x.float() * self.scale - self.mean) / self.std, self.y[self.member_data, idx]


class _MemberDropout(nn.Module):
    """Dropout (``nn.Dropout``) or channel dropout (``nn.Dropout2d``) whose rate is a
    buffer, so under ``functional_call`` + ``vmap`` each member drops at its own rate:
    zeros with probability ``p``, the rest scaled by ``1 / (1 - p)``, as PyTorch's."""

    def __init__(self, channels: bool):
        super().__init__()
        self.channels = channels
        self.register_buffer("p", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        shape_of = x[..., :1, :1] if self.channels and x.dim() >= 3 else x
        keep = (torch.rand_like(shape_of) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)


def _member_dropouts(base: nn.Module, models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Replace ``base``'s dropout layers by :class:`_MemberDropout`; their rates, one per
    member (S), by buffer name."""
    rates = {}
    members = [dict(m.named_modules()) for m in models]
    for name, module in list(base.named_modules()):
        if type(module) not in (nn.Dropout, nn.Dropout2d):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = base.get_submodule(parent_name) if parent_name else base
        setattr(parent, child, _MemberDropout(channels=type(module) is nn.Dropout2d))
        rates[f"{name}.p"] = torch.tensor([float(m[name].p) for m in members])
    return rates


class _Stacked:
    """The members' parameters in ONE flat S×P tensor (leading dimension = member; each
    layer's parameters a view into it, so the optimizer steps every layer of every member
    with a handful of kernels), and a vmapped functional forward over them (compiled with
    ``torch.compile`` on a CUDA device when the runs ask for ``compile``:
    ``"reduce-overhead"`` captures the forward's launches as CUDA graphs; untested without
    a GPU)."""

    def __init__(self, models: list[nn.Module], precision: str, compile_mode: bool | str):
        params, buffers = stack_module_state(models)
        if buffers:
            raise ValueError("batched runs: models with buffers are not supported")
        S = len(models)
        self.shapes = {name: tuple(t.shape[1:]) for name, t in params.items()}
        self.slices: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, t in params.items():
            self.slices[name] = (offset, offset + t[0].numel())
            offset += t[0].numel()
        self.flat = torch.cat([t.detach().reshape(S, -1) for t in params.values()], dim=1)
        self.flat.requires_grad_()
        self.base = copy.deepcopy(models[0]).to("meta")
        self.rates = {k: v.to(self.flat.device)
                      for k, v in _member_dropouts(self.base, models).items()}
        # Each member's module now reads and writes its slice of the flat parameters.
        for s, model in enumerate(models):
            for name, p in model.named_parameters():
                p.data = self._slice(self.flat.data[s], name)
        self.named = [list(m.named_parameters()) for m in models]
        self.device = self.flat.device
        self.precision = precision

        def one(p, xb):
            return functional_call(self.base, p, (xb,))

        self._forward = vmap(one, randomness="different")
        if compile_mode is not False and self.device.type == "cuda":
            mode = None if compile_mode in (True, "default") else str(compile_mode)
            self._forward = torch.compile(self._forward, mode=mode)

    def _slice(self, row: torch.Tensor, name: str) -> torch.Tensor:
        """Parameter ``name`` inside ``row`` (one member's P values, or S×P)."""
        a, b = self.slices[name]
        return row[..., a:b].view(*row.shape[:-1], *self.shapes[name])

    def forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        self.base.train(training)
        params = {name: self._slice(self.flat, name) for name in self.slices}
        params.update(self.rates)
        with autocast(self.device, self.precision):
            logits = self._forward(params, x)
        return logits.float()

    def share_grads(self, s: int) -> None:
        """Point member ``s``'s parameters' ``.grad`` at its slice of the flat gradient."""
        g = self.flat.grad
        for name, p in self.named[s]:
            p.grad = None if g is None else self._slice(g[s], name)


def _norm_takers(member: _Member) -> list[Any] | None:
    """The member's gradient readers when each of them takes precomputed per-parameter
    gradient norms (``record_norms``: the gradients probe), so the program computes every
    member's norms at once; None when some callback needs the gradients themselves."""
    from ablab.train.callbacks import Probes

    takers = []
    for callback in member.callbacks.callbacks:
        if not callback.wants_gradients:
            continue
        if not isinstance(callback, Probes):
            return None
        for probe in callback.probes.gradient_probes:
            if not hasattr(probe, "record_norms"):
                return None
            takers.append(probe)
    return takers


class _GradientReaders:
    """After each backward pass: the members' gradient readers. Where every reader of a
    member takes precomputed norms, every such member's per-parameter gradient norms come
    from one norm per parameter tensor over all members (float32, as the probe computes
    them alone, up to the reduction's rounding); other members get their slice of the
    gradient and their callbacks' ``on_backward_end``, as in ``fit``."""

    def __init__(self, stacked: _Stacked, members: list[_Member]):
        self.stacked, self.members = stacked, members
        self.norms: list[tuple[int, list[Any]]] = []
        self.others: list[int] = []
        for k, m in enumerate(members):
            if not m.callbacks.wants_gradients:
                continue
            takers = _norm_takers(m)
            if takers:
                self.norms.append((k, takers))
            else:
                self.others.append(k)

    def __call__(self) -> None:
        if self.norms:
            grad = self.stacked.flat.grad
            norms = torch.stack([  # parameter tensors × members
                torch.linalg.vector_norm(grad[:, a:b], 2.0, dim=1)
                for a, b in self.stacked.slices.values()
            ]).float()
            totals = torch.linalg.vector_norm(norms, 2.0, dim=0)
            for k, takers in self.norms:
                if self.members[k].active:
                    for probe in takers:
                        probe.record_norms(norms[:, k], totals[k])
        for k in self.others:
            m = self.members[k]
            if m.active:
                self.stacked.share_grads(k)
                m.callbacks.on_backward_end(m.run)


class _Losses:
    """Each member's loss, vmapped over the members that share a loss function."""

    def __init__(self, configs: list[RunConfig]):
        groups: dict[str, list[int]] = {}
        for k, c in enumerate(configs):
            groups.setdefault(c.loss.model_dump_json(), []).append(k)
        self.own = [build_loss(c.loss.name, c.loss.options) for c in configs]
        self.groups = [(vmap(self.own[ks[0]]), ks) for ks in groups.values()]
        self.S = len(configs)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member losses (S) of S×B×C logits against S×B targets."""
        if len(self.groups) == 1:
            return self.groups[0][0](logits, y)
        out = logits.new_zeros(self.S)
        for fn, ks in self.groups:
            idx = torch.tensor(ks, device=logits.device)
            out = out.index_put((idx,), fn(logits[idx], y[idx]))
        return out


@torch.inference_mode()
def _evaluate_stacked(
    stacked: _Stacked, val: _StackedSplit, losses: _Losses, batch_size: int
) -> torch.Tensor:
    """S×3 tensor (loss, cross-entropy, accuracy) of each member on its own validation
    split."""
    n, S = val.n, stacked.flat.shape[0]
    device = stacked.device
    # float32 sums and a long count, as ``evaluate`` (same rounding)
    loss_sum = torch.zeros(S, device=device)
    ce_sum = torch.zeros(S, device=device)
    correct = torch.zeros(S, dtype=torch.long, device=device)
    per_member_ce = vmap(lambda lg, t: nn.functional.cross_entropy(lg, t, reduction="sum"))
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size), device=device).expand(S, -1)
        x, y = val.rows(idx)
        logits = stacked.forward(x, training=False)
        loss_sum += losses(logits, y) * y.shape[1]
        ce_sum += per_member_ce(logits, y)
        correct += (logits.argmax(dim=-1) == y).sum(dim=1)
    return torch.stack([loss_sum / n, ce_sum / n, correct / n], dim=1)


def _progress(on_epoch: MemberEpochCallback | None, index: int) -> EpochCallback | None:
    """Member ``index``'s share of ``on_epoch``."""
    return None if on_epoch is None else (lambda record: on_epoch(index, record))


def _one_by_one(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None
) -> list[RunResult]:
    """``fit`` for each config, with its index on its epoch records."""
    return [fit(c, on_epoch=_progress(on_epoch, i)) for i, c in enumerate(configs)]


def _member_batches(members: list[_Member], train: _StackedSplit | None):
    """The members' training batches, stacked (S×B×...): gathered from the stacked split
    with each member's own epoch permutation (drawn from its loader's generator exactly as
    its ``BatchLoader`` draws it), or, where a loader augments, from the members' loaders
    themselves."""
    if train is None:
        for batches in zip(*(m.run.loader for m in members), strict=True):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        return
    loaders = [m.run.loader for m in members]
    order = torch.stack([
        torch.randperm(train.n, generator=loader.generator, device=train.x.device)
        for loader in loaders
    ])
    size = loaders[0].batch_size
    for start in range(0, train.n, size):
        yield train.rows(order[:, start : start + size])


def _train_epoch_stacked(
    stacked: _Stacked, members: list[_Member], optimizer: StackedOptimizer, losses: _Losses,
    train: _StackedSplit | None,
) -> tuple[list[list[float]], list[float]]:
    """One pass over every member's training data at once: each member's batch losses and
    training accuracy (read back to the host once)."""
    S, n_batches = len(members), len(members[0].run.loader)
    read_gradients = _GradientReaders(stacked, members)
    batch_losses = torch.zeros(n_batches, S, device=stacked.device)
    correct = torch.zeros(S, dtype=torch.long, device=stacked.device)
    seen = 0
    for i, (x, y) in enumerate(_member_batches(members, train)):
        logits = stacked.forward(x, training=True)
        per_member = losses(logits, y)
        optimizer.zero_grad(set_to_none=True)
        per_member.sum().backward()
        read_gradients()
        optimizer.step()
        batch_losses[i] = per_member.detach()
        correct += (logits.detach().argmax(dim=-1) == y).sum(dim=1)
        seen += y.shape[1]
    return batch_losses.t().tolist(), (correct.double() / seen).tolist()


def _close_epochs(
    members: list[_Member], epoch: int, lrs: list[float], train: tuple, val: list | None,
    seconds: float,
) -> None:
    """Each still-active member's epoch record, closed as ``fit`` closes it (its schedule
    steps there); a member that stops (early stopping, divergence) is frozen."""
    losses, accs = train
    for k, m in enumerate(members):
        if not m.active:
            continue
        record = open_record(m.run, epoch, lrs[k], losses[k], accs[k])
        if val is not None:
            record.val_loss, record.val_cross_entropy, record.val_accuracy = val[k]
        record.seconds = seconds
        m.run.model.eval()  # as after fit's validation: probes see the model in eval mode
        close_epoch(m.run, record, m.callbacks)
        if m.run.stop_training:
            m.freeze()


# ---------------------------------------------------------------- memory


#: Optimizer state tensors per parameter tensor.
_STATE_SLOTS = {"sgd": 1, "adam": 2, "adamw": 2, "nadam": 2, "rmsprop": 2}


def _bundle_bytes(run: RunState) -> int:
    splits = [run.bundle.train, run.bundle.val, run.bundle.test]
    seen, total = set(), 0
    for split in splits:
        if split is None or id(split) in seen:
            continue
        seen.add(id(split))
        total += split.x.nbytes + split.y.nbytes
    return total


@torch.no_grad()
def _activation_bytes(run: RunState, batch: int) -> int:
    """Bytes of every layer's output for one forward pass of ``batch`` training examples,
    measured with forward hooks on the run's model (a real forward on the run's device)."""
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    x = run.bundle.normalize(run.bundle.train.x[:batch])
    if x.dim() == 4 and run.memory_format != torch.contiguous_format:
        x = x.contiguous(memory_format=run.memory_format)
    handles = [m.register_forward_hook(count) for m in run.model.modules() if m is not run.model]
    try:
        run.model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return total * max(1, math.ceil(batch / max(1, x.shape[0])))


def member_bytes(run: RunState) -> int:
    """Device bytes one member of a program needs, measured on a started run: its data
    twice (the split tensors as they sit on the device, and the program's stacked copy),
    its parameters four times over plus the
    optimizer's state (weights, gradient, frozen copy, the schedule's and the probes'
    copies) and its layers' outputs for a training batch, kept for the backward pass and
    matched by their gradients (×3), and for an evaluation batch (×2)."""
    cfg = run.cfg
    train_batch = len(run.bundle.train) if cfg.batch_size == "full" else int(cfg.batch_size)
    n_params = sum(p.numel() * p.element_size() for p in run.model.parameters())
    slots = 3 + _STATE_SLOTS.get(cfg.optimizer.name, 2)
    train_act = _activation_bytes(run, train_batch) * 3
    eval_act = _activation_bytes(run, min(cfg.eval_batch_size, len(run.bundle.test))) * 2
    return 2 * _bundle_bytes(run) + n_params * slots + max(train_act, eval_act)


def memory_budget(device: torch.device) -> int | None:
    """Bytes a program may plan to use on ``device``: ``MEMORY_SHARE`` of a CUDA device's
    free memory now, divided among the workers that share the device
    (``ABLAB_GPU_SHARERS``, set by the local executor); None (no bound) on a CPU."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    try:
        sharers = max(1, int(os.environ.get("ABLAB_GPU_SHARERS", "1")))
    except ValueError:
        sharers = 1
    return int(free * MEMORY_SHARE / sharers)


def split_by_memory(n: int, per_member: int, budget: int | None) -> list[int]:
    """Sizes of the programs ``n`` members are trained in, as even as possible, each at
    most ``budget // per_member`` members (at least one).

    >>> split_by_memory(10, 100, None)
    [10]
    >>> split_by_memory(10, 100, 450)
    [4, 3, 3]
    """
    if budget is None or n == 0:
        return [n] if n else []
    most = max(1, budget // max(1, per_member))
    parts = math.ceil(n / most)
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _out_of_memory_result(cfg: RunConfig, exc: BaseException) -> RunResult:
    from ablab.config import run_id

    message = str(exc).splitlines()[0] if str(exc) else ""
    return RunResult(
        run_id=run_id(cfg), config=cfg.resolved(), status="failed",
        error=f"out of memory even alone ({type(exc).__name__}: {message})"[:500],
    )


# ---------------------------------------------------------------- training


def fit_batched(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None = None
) -> list[RunResult]:
    """Train the runs ``configs`` (one :func:`program_key`) together; one ``RunResult``
    per config, in order. Falls back to ``fit`` one by one when ``can_batch`` is false.
    Results equal ``fit``'s up to float rounding, and are bit-identical for a member
    whatever the other members of the program. On a CUDA device the runs are split into
    programs that fit its free memory (:func:`member_bytes`, :func:`memory_budget`); a
    program that runs out of memory anyway is split in halves and retried, and a run that
    does not fit alone is returned failed (the others go on).
    ``on_epoch(index, record)`` (optional) gets each member's epoch records.

    >>> from ablab.config import parse_run
    >>> cfgs = [parse_run({"epochs": 2, "seed": s, "dataset": "moons",
    ...                    "model": {"name": "mlp", "hidden": [8]},
    ...                    "optimizer": {"name": "sgd", "lr": lr}})
    ...         for s, lr in ((0, 0.1), (1, 0.01))]
    >>> [r.status for r in fit_batched(cfgs)]
    ['done', 'done']
    """
    if not can_batch(configs):
        return _one_by_one(configs, on_epoch)
    device = resolve_device(configs[0].device)
    budget = memory_budget(device)
    sizes = [len(configs)]
    if budget is not None and len(configs) > 1:
        sizes = split_by_memory(len(configs), member_bytes(start_run(configs[0], device)), budget)
    results: list[RunResult] = []
    for size in sizes:
        start = len(results)
        results += _fit_halving(configs[start : start + size], on_epoch, start)
    return results


def _fit_halving(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None, offset: int
) -> list[RunResult]:
    """``_fit_program``, split in halves and retried where it runs out of memory."""
    try:
        return _fit_program(configs, on_epoch, offset)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
        if not _is_out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(configs) == 1:
            return [_out_of_memory_result(configs[0], exc)]
    half = len(configs) // 2
    return _fit_halving(configs[:half], on_epoch, offset) + _fit_halving(
        configs[half:], on_epoch, offset + half
    )


def _fit_program(
    configs: list[RunConfig], on_epoch: MemberEpochCallback | None, offset: int = 0
) -> list[RunResult]:
    """One batched program: the members trained together, start to finish."""
    started = time.perf_counter()
    cfg0 = configs[0]
    device = resolve_device(cfg0.device)
    runs = [start_run(c, device) for c in configs]
    if len({tuple(sorted(r.bundle.sizes().items())) for r in runs}) != 1:
        # splits of different sizes
        return _one_by_one(configs, None if on_epoch is None else (
            lambda i, rec: on_epoch(offset + i, rec)))
    S = len(runs)
    stacked = _Stacked([r.model for r in runs], cfg0.precision, cfg0.compile)
    losses = _Losses(configs)
    optimizer = StackedOptimizer(
        cfg0.optimizer.name, [c.optimizer.options for c in configs], [stacked.flat]
    )
    augmenting = any(r.loader.augment is not None for r in runs)
    train_split = None if augmenting else _StackedSplit(runs, "train")
    val_split = None if runs[0].bundle.val is None else _StackedSplit(runs, "val")
    members = []
    for k, run in enumerate(runs):
        cfg = run.cfg
        run.optimizer = _rate_holder(float(cfg.optimizer.options.get(
            "lr", STACKED_OPTIMIZERS[cfg.optimizer.name]["lr"])), device)
        schedule = build_schedule(cfg.schedule.name, cfg.schedule.options, run.optimizer,
                                  cfg.epochs)
        members.append(_Member(run, run_callbacks(cfg, _progress(on_epoch, offset + k),
                                                  schedule)))
    for m in members:
        m.callbacks.on_train_begin(m.run)

    for epoch in range(1, cfg0.epochs + 1):
        for m in members:
            if m.active:
                m.callbacks.on_epoch_begin(m.run, epoch)
        epoch_start = time.perf_counter()
        lrs = [m.lr for m in members]
        optimizer.lr = _per_member(lrs, device)
        train = _train_epoch_stacked(stacked, members, optimizer, losses, train_split)
        for m in members:  # the rate holders "step" (no gradient: nothing changes), so
            m.run.optimizer.step()  # their schedules step after them, as in ``fit``
        val = None
        if val_split is not None:
            val = _evaluate_stacked(stacked, val_split, losses, cfg0.eval_batch_size).tolist()
        _close_epochs(members, epoch, lrs, train, val, (time.perf_counter() - epoch_start) / S)
        if not any(m.active for m in members):
            break

    return _finish_members(members, time.perf_counter() - started)


def _finish_members(members: list[_Member], seconds: float) -> list[RunResult]:
    """Each member's final metrics, on the weights it stopped with; ``seconds`` (the
    program's) is shared out equally."""
    results = []
    for m in members:
        m.unfreeze()
        m.run.model.eval()
        loss_fn = build_loss(m.run.cfg.loss.name, m.run.cfg.loss.options)
        final = finish_run(m.run, m.callbacks, loss_fn)
        final.seconds, final.batched_seeds = seconds / len(members), len(members)
        m.run.result.final = final.to_dict()
        results.append(m.run.result)
    return results


#: The name from when only the seeds of one variant were trained together.
fit_seeds = fit_batched

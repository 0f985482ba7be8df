"""The stacked functional model of a batched program: the members' parameters in one
flat tensor (leading dimension = member) with a vmapped ``functional_call`` forward
(:class:`_Stacked`), dropout at each member's own rate (:class:`_MemberDropout`), each
split of every member's data held once (:class:`_StackedSplit`), each member's loss
(:class:`_Losses`) and the members' validation metrics (:func:`_evaluate_stacked`).

Each member's ``nn.Module`` stays alive with its parameters as *views* into the flat
tensor, so the per-run code (probes, early stopping's state dicts, the final evaluation)
works on it unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablab.config import RunConfig
from ablab.train.accel import autocast
from ablab.train.losses import build_loss
from ablab.train.state import RunState


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

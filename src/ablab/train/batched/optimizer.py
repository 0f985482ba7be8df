"""The optimizer of a batched program: one elementwise step over parameters stacked along
a leading member dimension, each member with its own hyper-parameters as tensors along
that dimension, so member ``k`` sees the updates it would see alone. Each member's
schedule steps a one-parameter torch optimizer of its own (:func:`_rate_holder`) whose
rate the stacked step reads every epoch, so every schedule behaves as in ``fit``.
"""

from __future__ import annotations

from typing import Any

import torch


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


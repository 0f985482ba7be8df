"""A batched program from start to finish: the members' runs started by ``fit``'s own
``start_run``, trained together one epoch at a time (one forward, backward and stacked
optimizer step for all members per batch, each member's batches drawn as its own
``BatchLoader`` draws them), and each member's epochs closed and its run finished by
``fit``'s ``close_epoch`` and ``finish_run`` with its own callbacks (schedule, early
stopping, probes, progress) and its own divergence. A member that stops is frozen: the
program trains on and its slice's later updates are discarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ablab.config import RunConfig
from ablab.train.batched.optimizer import (
    STACKED_OPTIMIZERS,
    StackedOptimizer,
    _per_member,
    _rate_holder,
)
from ablab.train.batched.stacked import _evaluate_stacked, _Losses, _Stacked, _StackedSplit
from ablab.train.callbacks import CallbackList, EpochCallback, Probes, run_callbacks
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


def _norm_takers(member: _Member) -> list[Any] | None:
    """The member's gradient readers when each of them takes precomputed per-parameter
    gradient norms (``record_norms``: the gradients probe), so the program computes every
    member's norms at once; None when some callback needs the gradients themselves."""
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


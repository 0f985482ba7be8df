"""Seeds trained together: the runs of one variant that differ only in their seed, trained
as ONE batched model (``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``).

Each seed keeps everything ``fit`` would give it: its run is started by ``fit``'s own
``start_run`` (seed, data split, model, memory layout, a ``BatchLoader`` with its own
shuffling and augmentation, its ``RunResult``), and its epochs are closed and its run
finished by ``fit``'s ``close_epoch`` and ``finish_run``, with its own callbacks (early
stopping, probes, progress) and its own divergence. Only the schedule is the group's. The
parameters of all seeds live in stacked tensors (leading dimension = seed) that one
optimizer steps; every supported optimizer is elementwise, so seed ``s`` sees exactly the
updates it would see alone. Each seed's ``nn.Module`` stays alive with its parameters as
*views* into the stacked tensors, so epoch-end probes, early stopping (state dicts) and the
final evaluation use the ordinary per-seed code. The gradients probe reads per-seed
gradients the same way (each seed's ``.grad`` is set to its slice of the stacked gradient).

Results equal separate ``fit`` runs up to float rounding (batched vs. single matmuls); a
model with dropout draws its masks from a different random stream than ``fit`` (same
distribution, not the same masks).

Why: small models (the moons / digits MLPs) spend most of a step in per-op overhead
(Python, dispatch, kernel launches, optimizer loop); S seeds in one step pay it once. Large
conv nets are compute-bound already, so ``can_batch`` sends them to ``fit`` one by one.
Where it pays is the device's business (``worth_batching``): on a GPU, where a small step
is all launch overhead; not on a CPU, where the executors train one run per core instead.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablab.config import RunConfig
from ablab.models import build_model
from ablab.models.flops import forward_flops, model_shape
from ablab.train.callbacks import CallbackList, EpochCallback, run_callbacks
from ablab.train.loop import fit
from ablab.train.losses import LossFn, build_loss
from ablab.train.optimizers import build_optimizer
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

#: ``fit_seeds``'s ``on_epoch``: the seed's index in the group, and its epoch record.
SeedEpochCallback = Callable[[int, dict[str, Any]], None]

#: Largest forward cost per example (FLOPs) for which seeds are batched. Above it a step is
#: compute-bound and batching S seeds costs S times one seed (measured: see the benchmark).
MAX_BATCHED_FLOPS = 2e6
#: Optimizers whose update is elementwise (so one optimizer over stacked parameters is S
#: independent optimizers).
ELEMENTWISE_OPTIMIZERS = {"sgd", "adam", "adamw", "nadam", "rmsprop"}
#: Losses known to work under vmap.
BATCHABLE_LOSSES = {"cross_entropy", "mse_softmax", "bce_onehot"}


def _without_seed(cfg: RunConfig) -> dict[str, Any]:
    data = cfg.resolved()
    data.pop("seed", None)
    data.pop("name", None)
    return data


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def can_batch(configs: list[RunConfig]) -> bool:
    """True when ``configs`` may train as one batched model: they differ only in ``seed``
    (distinct seeds); the schedule does not depend on per-seed metrics
    (``reduce_on_plateau`` does); the optimizer is elementwise; the model has no batch norm
    (running statistics per seed under vmap) and is small (forward FLOPs per example at most
    ``MAX_BATCHED_FLOPS``: bigger models are compute-bound and gain nothing).

    A single eligible config is batchable too (a group of one): where batching is
    ``worth_batching`` (a GPU), the executors train every eligible run through
    ``fit_seeds``, because a seed's numbers there are bit-identical
    whatever the group size (batched kernels compute each seed's slice alike), so results
    do not depend on how a study was split into groups, resumed or retried.

    Every probe is supported (the gradients probe reads each seed's slice of the stacked
    gradients); per-seed early stopping and divergence are supported."""
    if not configs:
        return False
    if any(c.keep != "none" for c in configs):  # kept weights come from ``fit`` alone
        return False
    ref = _without_seed(configs[0])
    if len({c.seed for c in configs}) != len(configs):
        return False
    if any(_without_seed(c) != ref for c in configs[1:]):
        return False
    cfg = configs[0]
    if cfg.schedule.name == "reduce_on_plateau":
        return False
    if cfg.optimizer.name not in ELEMENTWISE_OPTIMIZERS:
        return False
    if cfg.loss.name not in BATCHABLE_LOSSES:
        return False
    if cfg.precision != "fp32" or cfg.compile is not False:  # fit's path does these
        return False
    try:
        shape = model_shape(cfg)
        # The layer structure only: on the meta device, without the configured init
        # (initialising meta tensors goes through slow Python reference kernels: 1.7 s).
        with torch.device("meta"):
            model = build_model(cfg.model.model_copy(update={"init": "default"}), shape, 10)
    except Exception:  # noqa: BLE001 - unknown shape or a model that cannot build: no batching
        return False
    if _has_batch_norm(model):
        return False
    return forward_flops(cfg) <= MAX_BATCHED_FLOPS


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


class _Seed:
    """One seed of the group: its run and callbacks, and whether it still trains."""

    def __init__(self, run: RunState, callbacks: CallbackList):
        self.run, self.callbacks = run, callbacks
        self.active = True
        self.frozen: dict[str, torch.Tensor] | None = None  # weights when it stopped

    def freeze(self) -> None:
        """The seed stops (early stopping or divergence): keep its weights as they are
        now; the group trains on, and its slice's later updates are discarded."""
        self.active = False
        self.frozen = {n: p.detach().clone() for n, p in self.run.model.named_parameters()}

    def unfreeze(self) -> None:
        """Put the weights it stopped with back (before its final evaluation)."""
        if self.frozen is not None:
            with torch.no_grad():
                for name, p in self.run.model.named_parameters():
                    p.copy_(self.frozen[name])


def _stack_val(runs: list[RunState], start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples ``start:end`` of each seed's validation split, as ``evaluate`` prepares
    them (memory layout, normalization), stacked (leading dimension = seed)."""
    xs = []
    for run in runs:
        x = run.bundle.val.x[start:end]
        if x.dim() == 4 and run.memory_format != torch.contiguous_format:
            x = x.contiguous(memory_format=run.memory_format)
        xs.append(run.bundle.normalize(x))
    return torch.stack(xs), torch.stack([run.bundle.val.y[start:end] for run in runs])


class _Stacked:
    """The seeds' parameters stacked, and a vmapped functional forward over them."""

    def __init__(self, models: list[nn.Module]):
        params, buffers = stack_module_state(models)
        if buffers:
            raise ValueError("batched seeds: models with buffers are not supported")
        self.params = params  # name -> S×... leaf tensors
        self.base = copy.deepcopy(models[0]).to("meta")
        # Each seed's module now reads and writes its slice of the stacked parameters.
        for s, model in enumerate(models):
            for name, p in model.named_parameters():
                p.data = self.params[name].data[s]
        self.named = [list(m.named_parameters()) for m in models]

    def forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        self.base.train(training)

        def one(p, xb):
            return functional_call(self.base, p, (xb,))

        return vmap(one, randomness="different")(self.params, x)

    def share_grads(self, s: int) -> None:
        """Point seed ``s``'s parameters' ``.grad`` at its slice of the stacked gradient."""
        for name, p in self.named[s]:
            g = self.params[name].grad
            p.grad = None if g is None else g[s]


@torch.inference_mode()
def _evaluate_stacked(
    stacked: _Stacked, runs: list[RunState], loss_fn: LossFn, batch_size: int
) -> torch.Tensor:
    """S×3 tensor (loss, cross-entropy, accuracy) of each seed on its own validation
    split."""
    n = len(runs[0].bundle.val)
    S = len(runs)
    device = runs[0].bundle.val.y.device
    # float32 sums and a long count, as ``evaluate`` (same rounding)
    loss_sum = torch.zeros(S, device=device)
    ce_sum = torch.zeros(S, device=device)
    correct = torch.zeros(S, dtype=torch.long, device=device)
    per_seed_loss = vmap(loss_fn)
    per_seed_ce = vmap(lambda lg, t: nn.functional.cross_entropy(lg, t, reduction="sum"))
    for start in range(0, n, batch_size):
        x, y = _stack_val(runs, start, start + batch_size)
        logits = stacked.forward(x, training=False).float()
        loss_sum += per_seed_loss(logits, y) * y.shape[1]
        ce_sum += per_seed_ce(logits, y)
        correct += (logits.argmax(dim=-1) == y).sum(dim=1)
    return torch.stack([loss_sum / n, ce_sum / n, correct / n], dim=1)


def _progress(on_epoch: SeedEpochCallback | None, index: int) -> EpochCallback | None:
    """Seed ``index``'s share of ``on_epoch``."""
    return None if on_epoch is None else (lambda record: on_epoch(index, record))


def _one_by_one(configs: list[RunConfig], on_epoch: SeedEpochCallback | None) -> list[RunResult]:
    """``fit`` for each config, with its index on its epoch records."""
    return [fit(c, on_epoch=_progress(on_epoch, i)) for i, c in enumerate(configs)]


def _train_epoch_stacked(
    stacked: _Stacked, seeds: list[_Seed], optimizer: torch.optim.Optimizer, loss_fn: LossFn
) -> tuple[list[list[float]], list[float]]:
    """One pass over every seed's loader at once: each seed's batch losses and training
    accuracy (read back to the host once)."""
    device = next(iter(stacked.params.values())).device
    S, n_batches = len(seeds), len(seeds[0].run.loader)
    per_seed_loss = vmap(loss_fn)
    wanting = [(k, s) for k, s in enumerate(seeds) if s.callbacks.wants_gradients]
    batch_losses = torch.zeros(n_batches, S, device=device)
    correct = torch.zeros(S, dtype=torch.long, device=device)
    seen = 0
    for i, batches in enumerate(zip(*(s.run.loader for s in seeds), strict=True)):
        x = torch.stack([b[0] for b in batches])
        y = torch.stack([b[1] for b in batches])
        logits = stacked.forward(x, training=True)
        losses = per_seed_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for k, s in wanting:
            if s.active:
                stacked.share_grads(k)
                s.callbacks.on_backward_end(s.run)
        optimizer.step()
        batch_losses[i] = losses.detach()
        correct += (logits.detach().argmax(dim=-1) == y).sum(dim=1)
        seen += y.shape[1]
    return batch_losses.t().tolist(), (correct.double() / seen).tolist()


def _close_epochs(
    seeds: list[_Seed], epoch: int, lr: float, train: tuple, val: list | None, seconds: float
) -> None:
    """Each still-active seed's epoch record, closed as ``fit`` closes it; a seed that
    stops (early stopping, divergence) is frozen."""
    losses, accs = train
    for k, s in enumerate(seeds):
        if not s.active:
            continue
        record = open_record(s.run, epoch, lr, losses[k], accs[k])
        if val is not None:
            record.val_loss, record.val_cross_entropy, record.val_accuracy = val[k]
        record.seconds = seconds
        s.run.model.eval()  # as after fit's validation: probes see the model in eval mode
        close_epoch(s.run, record, s.callbacks)
        if s.run.stop_training:
            s.freeze()


def fit_seeds(
    configs: list[RunConfig], on_epoch: SeedEpochCallback | None = None
) -> list[RunResult]:
    """Train the runs ``configs`` (which differ only in seed) together; one ``RunResult``
    per config, in order. Falls back to ``fit`` one by one when ``can_batch`` is false.
    Results equal ``fit``'s up to float rounding, and are bit-identical for a seed whatever
    the other seeds of the group.
    ``on_epoch(index, record)`` (optional) gets each seed's epoch records.

    >>> from ablab.config import parse_run
    >>> cfgs = [parse_run({"epochs": 2, "seed": s, "dataset": "moons",
    ...                    "model": {"name": "mlp", "hidden": [8]}}) for s in (0, 1)]
    >>> [r.status for r in fit_seeds(cfgs)]
    ['done', 'done']
    """
    if not can_batch(configs):
        return _one_by_one(configs, on_epoch)
    started = time.perf_counter()
    cfg0 = configs[0]
    device = resolve_device(cfg0.device)
    runs = [start_run(c, device) for c in configs]
    if len({tuple(sorted(r.bundle.sizes().items())) for r in runs}) != 1:
        return _one_by_one(configs, on_epoch)  # per-seed splits of different sizes
    S = len(runs)
    stacked = _Stacked([r.model for r in runs])
    loss_fn = build_loss(cfg0.loss.name, cfg0.loss.options)
    optimizer = build_optimizer(
        cfg0.optimizer.name, cfg0.optimizer.options, list(stacked.params.values())
    )
    # One schedule for the group: only metric-free schedules are batched (``can_batch``).
    schedule = build_schedule(cfg0.schedule.name, cfg0.schedule.options, optimizer, cfg0.epochs)
    seeds = [_Seed(r, run_callbacks(r.cfg, _progress(on_epoch, k))) for k, r in enumerate(runs)]
    for s in seeds:
        s.run.optimizer = optimizer
        s.callbacks.on_train_begin(s.run)

    for epoch in range(1, cfg0.epochs + 1):
        for s in seeds:
            if s.active:
                s.callbacks.on_epoch_begin(s.run, epoch)
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train = _train_epoch_stacked(stacked, seeds, optimizer, loss_fn)
        val = None
        if runs[0].bundle.val is not None:
            val = _evaluate_stacked(stacked, runs, loss_fn, cfg0.eval_batch_size).tolist()
        _close_epochs(seeds, epoch, lr, train, val, (time.perf_counter() - epoch_start) / S)
        if not any(s.active for s in seeds):
            break
        schedule.step({})

    return _finish_seeds(seeds, loss_fn, time.perf_counter() - started)


def _finish_seeds(seeds: list[_Seed], loss_fn: LossFn, seconds: float) -> list[RunResult]:
    """Each seed's final metrics, on the weights it stopped with; ``seconds`` (the
    group's) is shared out equally."""
    results = []
    for s in seeds:
        s.unfreeze()
        s.run.model.eval()
        final = finish_run(s.run, s.callbacks, loss_fn)
        final.seconds, final.batched_seeds = seconds / len(seeds), len(seeds)
        s.run.result.final = final.to_dict()
        results.append(s.run.result)
    return results

"""Seeds trained together: the runs of one variant that differ only in their seed, trained
as ONE batched model (``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``).

Each seed keeps everything ``fit`` would give it: its model is built exactly as ``fit``
builds it (``torch.manual_seed(seed)``, ``load_data``, ``build_model``), its own data split,
its own shuffling and augmentation (one ``BatchLoader`` per seed with ``fit``'s generator
seeding), its own probes, early stopping and divergence, and its own ``RunResult``. The
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
import math
import time
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablab.config import RunConfig, run_id
from ablab.data import BatchLoader, DataBundle, Split, load_data
from ablab.models import build_model
from ablab.probes import ProbeContext, attach_probes
from ablab.train.callbacks import EarlyStopping
from ablab.train.loop import _final_metrics, _finite, fit, resolve_device
from ablab.train.losses import build_loss
from ablab.train.optimizers import build_optimizer
from ablab.train.result import RunResult
from ablab.train.schedules import build_schedule

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
        from ablab.execute.estimate import forward_flops, model_shape

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
    single-thread run per core already uses every core."""
    return bool(configs) and resolve_device(configs[0].device).type == "cuda"


class _Seed:
    """What one seed of the group owns."""

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)  # as fit: the seed fixes the split and the init
        self.bundle: DataBundle = load_data(cfg.dataset, cfg.seed, device)
        self.model = build_model(cfg.model, self.bundle.input_shape, self.bundle.num_classes)
        self.model.to(device)
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.loader = BatchLoader(
            self.bundle.train,
            self.bundle,
            None if cfg.batch_size == "full" else int(cfg.batch_size),
            shuffle=True,
            augment=cfg.dataset.augment if cfg.dataset.augment.enabled else None,
            generator=generator,
        )
        self.stopper = EarlyStopping(cfg.early_stopping) if cfg.early_stopping else None
        self.result = RunResult(
            run_id=run_id(cfg),
            config=cfg.resolved(),
            status="done",
            sizes=self.bundle.sizes(),
            device=str(device),
            input_shape=[int(d) for d in self.bundle.input_shape],
            num_classes=int(self.bundle.num_classes),
        )
        self.active = True
        self.frozen: dict[str, torch.Tensor] | None = None  # weights when it stopped
        self.probes = None


def _stack_splits(splits: list[Split], bundles: list[DataBundle], start: int, end: int):
    x = torch.stack([b.normalize(s.x[start:end]) for s, b in zip(splits, bundles, strict=True)])
    y = torch.stack([s.y[start:end] for s in splits])
    return x, y


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
    stacked: _Stacked,
    splits: list[Split],
    bundles: list[DataBundle],
    loss_fn,
    batch_size: int,
) -> torch.Tensor:
    """S×3 tensor (loss, cross-entropy, accuracy) of each seed on its own split."""
    n = len(splits[0])
    S = len(splits)
    device = splits[0].y.device
    # float32 sums and a long count, as ``evaluate`` (same rounding)
    loss_sum = torch.zeros(S, device=device)
    ce_sum = torch.zeros(S, device=device)
    correct = torch.zeros(S, dtype=torch.long, device=device)
    per_seed_loss = vmap(loss_fn)
    per_seed_ce = vmap(lambda lg, t: nn.functional.cross_entropy(lg, t, reduction="sum"))
    for start in range(0, n, batch_size):
        x, y = _stack_splits(splits, bundles, start, start + batch_size)
        logits = stacked.forward(x, training=False).float()
        loss_sum += per_seed_loss(logits, y) * y.shape[1]
        ce_sum += per_seed_ce(logits, y)
        correct += (logits.argmax(dim=-1) == y).sum(dim=1)
    return torch.stack([loss_sum / n, ce_sum / n, correct / n], dim=1)


def fit_seeds(configs: list[RunConfig], on_epoch=None) -> list[RunResult]:
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
        return [
            fit(c, on_epoch=None if on_epoch is None else (lambda r, i=i: on_epoch(i, r)))
            for i, c in enumerate(configs)
        ]
    started = time.perf_counter()
    cfg0 = configs[0]
    device = resolve_device(cfg0.device)
    seeds = [_Seed(c, device) for c in configs]
    sizes = {tuple(sorted(s.bundle.sizes().items())) for s in seeds}
    if len(sizes) != 1:  # per-seed splits of different sizes cannot stack
        return [fit(c) for c in configs]
    S = len(seeds)
    stacked = _Stacked([s.model for s in seeds])
    loss_fn = build_loss(cfg0.loss.name, cfg0.loss.options)
    optimizer = build_optimizer(
        cfg0.optimizer.name, cfg0.optimizer.options, list(stacked.params.values())
    )
    schedule = build_schedule(cfg0.schedule.name, cfg0.schedule.options, optimizer, cfg0.epochs)
    for s in seeds:
        s.probes = attach_probes(
            s.cfg.probes,
            ProbeContext(s.model, s.bundle, s.cfg.probe_batch_size, s.cfg.seed, s.cfg.epochs,
                         optimizer),
        )
    wants_gradients = any(s.probes.wants_gradients for s in seeds)
    per_seed_loss = vmap(loss_fn)
    n_batches = len(seeds[0].loader)
    has_val = seeds[0].bundle.val is not None

    for epoch in range(1, cfg0.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        batch_losses = torch.zeros(n_batches, S, device=device)
        correct = torch.zeros(S, dtype=torch.long, device=device)
        seen = 0
        for i, batches in enumerate(zip(*(s.loader for s in seeds), strict=True)):
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            logits = stacked.forward(x, training=True)
            losses = per_seed_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if wants_gradients:
                for k, s in enumerate(seeds):
                    if s.active and s.probes.wants_gradients:
                        stacked.share_grads(k)
                        s.probes.after_backward()
            optimizer.step()
            batch_losses[i] = losses.detach()
            correct += (logits.detach().argmax(dim=-1) == y).sum(dim=1)
            seen += y.shape[1]
        losses_t = batch_losses.t().tolist()  # the epoch's host sync
        accs = (correct.double() / seen).tolist()
        val = None
        if has_val:
            val = _evaluate_stacked(
                stacked, [s.bundle.val for s in seeds], [s.bundle for s in seeds], loss_fn,
                cfg0.eval_batch_size,
            ).tolist()
        seconds = (time.perf_counter() - epoch_start) / S
        for k, s in enumerate(seeds):
            if not s.active:
                continue
            losses = losses_t[k]
            s.result.batch_losses.extend(v if math.isfinite(v) else None for v in losses)
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses),
                "train_accuracy": accs[k],
                "val_loss": None,
                "val_accuracy": None,
                "val_cross_entropy": None,
                "lr": lr,
            }
            if val is not None:
                record.update(val_loss=val[k][0], val_cross_entropy=val[k][1],
                              val_accuracy=val[k][2])
            s.model.eval()
            probe_start = time.perf_counter()
            s.probes.on_epoch_end(epoch)
            record["seconds"] = seconds + time.perf_counter() - probe_start
            if not _finite(record["train_loss"], record["val_loss"]):
                s.result.status, s.result.diverged_epoch = "diverged", epoch
                for key in ("train_loss", "val_loss", "val_cross_entropy"):
                    if record[key] is not None and not math.isfinite(record[key]):
                        record[key] = None
                s.result.history.append(record)
                if on_epoch:
                    on_epoch(k, record)
                _freeze(s)
                continue
            s.result.history.append(record)
            if on_epoch:
                on_epoch(k, record)
            if s.stopper and s.stopper.update(epoch, record, s.model):
                _freeze(s)
        if not any(s.active for s in seeds):
            break
        schedule.step({})  # only metric-free schedules are batched

    total = time.perf_counter() - started
    results = []
    for s in seeds:
        if s.frozen is not None:
            with torch.no_grad():
                for name, p in s.model.named_parameters():
                    p.copy_(s.frozen[name])
        s.model.eval()
        s.result.final = _final_metrics(s.result, s.model, s.bundle, loss_fn, s.cfg, s.stopper)
        s.result.probes = s.probes.finish()
        s.result.final["seconds"] = total / S  # this seed's share of the group's time
        s.result.final["batched_seeds"] = S
        results.append(s.result)
    return results


def _freeze(s: _Seed) -> None:
    """The seed stops (early stopping or divergence): keep its weights as they are now;
    the group trains on, and its slice's later updates are discarded."""
    s.active = False
    s.frozen = {n: p.detach().clone() for n, p in s.model.named_parameters()}

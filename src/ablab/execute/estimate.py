"""How long a study will take on this machine, before running it.

The cost of a run is counted, not guessed: forward FLOPs per example (the matrix
multiplies of every linear and conv layer of the real architecture, see
:mod:`ablab.models.flops`: no torch for the built-in studies' models), × 3 for a training
step, × examples × epochs, plus evaluation and a fixed cost per optimizer step. The two
rates below were measured on the 2-core development machine (see
benchmarks/throughput.py); on other machines the estimate scales with its core count
only, so treat it as an order of magnitude. A study with ``[tune]`` trains its tuning
trials first (:func:`tuning_runs`): every estimate of a study counts them.

:func:`calibrate` times a few training steps here instead (torch; ``ablab run --dry-run
--calibrate``).
"""

from __future__ import annotations

import math
from typing import Any

from ablab.config import RunConfig
from ablab.models.flops import forward_flops, model_shape  # noqa: F401  (counted with the models)
from ablab.registry import DATASETS

# From `make bench` on the 2-core development machine (idle): simple_cnn trains at 60.5
# GFLOP/s and mnist_cnn3 at 88.9 GFLOP/s on 2 threads at batch 64 (30-44 per core; 25 per
# core leaves room for evaluation and probes); a digits-MLP step costs about 1 ms on 2
# threads, so 1.5 ms on one.
FLOPS_PER_CORE = 25e9
SECONDS_PER_STEP = 1.5e-3
STARTUP_SECONDS = 1.0


def _countable(cfg: RunConfig) -> bool:
    """Whether the run's cost can be counted: the built-in loop, which trains the model of
    its config (another trainer's cost is unknown: its startup cost is all that counts)."""
    return cfg.model is not None and cfg.dataset is not None and cfg.epochs is not None


def _split_sizes(cfg: RunConfig) -> tuple[int, int]:
    """(training examples, evaluated examples per epoch + at the end)."""
    entry = DATASETS.get(cfg.dataset.name)
    size = entry.meta.get("size", 1000)
    total = int(cfg.dataset.options[size]) if isinstance(size, str) else int(size)
    ds = cfg.dataset
    if entry.meta.get("official_test"):
        test = 10000
        pool = total
    else:
        test = int(round(total * ds.test_fraction))
        pool = total - test
    if ds.validate_on == "test":
        train, val = pool, test
    else:
        val = int(round(pool * ds.val_fraction))
        train = pool - val
    if ds.subset:
        train = min(train, ds.subset)
    return train, val * cfg.epochs + test


def step_examples(cfg: RunConfig) -> int:
    """Examples in one training step (the batch, or the whole training split)."""
    train, _ = _split_sizes(cfg)
    return max(1, train if cfg.batch_size == "full" else min(int(cfg.batch_size), train))


def estimate_run_seconds(cfg: RunConfig, threads: int = 1, flops: float | None = None) -> float:
    if not _countable(cfg):
        return STARTUP_SECONDS
    flops = forward_flops(cfg) if flops is None else flops
    train, evaluated = _split_sizes(cfg)
    batch = train if cfg.batch_size == "full" else int(cfg.batch_size)
    steps = cfg.epochs * math.ceil(train / batch)
    compute = (3 * flops * train * cfg.epochs + flops * evaluated) / (FLOPS_PER_CORE * threads)
    return STARTUP_SECONDS + compute + steps * SECONDS_PER_STEP


def tuning_runs(study: Any) -> list[RunConfig]:
    """The runs a study's ``[tune]`` trains before its evaluation (none without one): for
    each variant, ``trials`` × its tuning seeds, each costed as the variant's run as the
    study file sets it (a tuned parameter that changes a run's size, such as ``epochs``,
    at the file's value). With a pruner some trials stop early: then an upper bound."""
    tune = study.config.tune
    if tune is None:
        return []
    out: list[RunConfig] = []
    for runs in study.variants().values():
        out += [runs[0].config] * (tune.trials * len(tune.seeds))
    return out


def tuning_text(study: Any) -> str:
    """``36 tuning trials`` (``… of 2 seeds each`` with several tuning seeds); "" without
    ``[tune]``."""
    tune = study.config.tune
    if tune is None:
        return ""
    trials = tune.trials * len(study.variants())
    text = f"{trials} tuning trial{'s' if trials != 1 else ''}"
    return text + (f" of {len(tune.seeds)} seeds each" if len(tune.seeds) > 1 else "")


def estimate_study_seconds(runs: list[RunConfig], cores: int) -> float:
    """Runs spread over ``cores`` single-thread workers."""
    cache: dict[str, float] = {}
    total = 0.0
    for cfg in runs:
        if not _countable(cfg):
            total += STARTUP_SECONDS
            continue
        key = cfg.model.model_dump_json() + cfg.dataset.name
        if key not in cache:
            cache[key] = forward_flops(cfg)
        total += estimate_run_seconds(cfg, 1, cache[key])
    return total / max(1, cores)


# ---------------------------------------------------------------- calibration

#: Training steps timed per distinct model / dataset / batch size (after one warm-up step).
CALIBRATION_STEPS = 5


def _calibration_key(cfg: RunConfig) -> str:
    """One calibration per model (with its own options), dataset and batch size: the
    activation and the optimizer barely change a step's time."""
    if not _countable(cfg):
        return f"trainer {cfg.trainer.name}"
    return f"{cfg.model.name}{sorted(cfg.model.options.items())}{cfg.dataset.name}" + str(
        cfg.batch_size
    )


def time_training_step(cfg: RunConfig, steps: int = CALIBRATION_STEPS) -> float | None:
    """Seconds per training step of ``cfg`` on this machine, on one thread: its model,
    loss and optimizer on random inputs of the dataset's registered shape at the run's
    batch size (the data is not loaded). None where the dataset does not register its
    shape (a plugin) or the model cannot be built without real data."""
    import time

    import torch

    from ablab.models import build_model
    from ablab.train.losses import build_loss
    from ablab.train.optimizers import build_optimizer

    if not _countable(cfg):
        return None
    meta = DATASETS.get(cfg.dataset.name).meta
    if meta.get("shape") is None:
        return None
    shape = tuple(int(d) for d in meta["shape"])
    classes = int(meta.get("classes", 10))
    batch = step_examples(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch, *shape), generator=gen)
        y = torch.randint(0, classes, (batch,), generator=gen)
        model = build_model(cfg.model, shape, classes)
        loss_fn = build_loss(cfg.loss.name, cfg.loss.options)
        optimizer = build_optimizer(cfg.optimizer.name, cfg.optimizer.options,
                                    model.parameters())

        def step() -> None:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up: allocations, lazy initialisation
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps
    except Exception:  # noqa: BLE001 - no calibration: the FLOP count estimates instead
        return None
    finally:
        torch.set_num_threads(threads)


def calibrated_run_seconds(cfg: RunConfig, step_seconds: float) -> float:
    """A run's time from a measured training step: every epoch's steps, plus evaluation
    (a forward pass, a third of a training step per example)."""
    train, evaluated = _split_sizes(cfg)
    batch = step_examples(cfg)
    steps = cfg.epochs * math.ceil(train / batch)
    return STARTUP_SECONDS + step_seconds * (steps + evaluated / (3 * batch))


def calibrate(runs: list[RunConfig]) -> dict[str, float | None]:
    """Seconds per training step for each distinct model / dataset / batch size among
    ``runs`` (a few steps each), keyed for :func:`estimate_calibrated`."""
    out: dict[str, float | None] = {}
    for cfg in runs:
        key = _calibration_key(cfg)
        if key not in out:
            out[key] = time_training_step(cfg)
    return out


def estimate_calibrated(
    runs: list[RunConfig], cores: int, steps: dict[str, float | None]
) -> float:
    """Wall seconds for ``runs`` over ``cores`` single-thread workers, from measured
    steps where :func:`calibrate` measured one, from the FLOP count elsewhere."""
    total = 0.0
    for cfg in runs:
        measured = steps.get(_calibration_key(cfg))
        total += (calibrated_run_seconds(cfg, measured) if measured is not None
                  else estimate_run_seconds(cfg, 1))
    return total / max(1, cores)


def run_estimates(runs: list[RunConfig]) -> list[float]:
    """Each run's FLOP-count estimate on one thread (the model traced once per distinct
    model / dataset): the prior the progress display scales by measured times."""
    cache: dict[str, float] = {}
    out = []
    for cfg in runs:
        if not _countable(cfg):
            out.append(STARTUP_SECONDS)
            continue
        key = cfg.model.model_dump_json() + cfg.dataset.name
        if key not in cache:
            try:
                cache[key] = forward_flops(cfg)
            except Exception:  # noqa: BLE001 - no shape to trace: startup cost only
                cache[key] = 0.0
        out.append(estimate_run_seconds(cfg, 1, cache[key]))
    return out

"""How long a study will take on this machine, before running it.

The cost of a run is counted, not guessed: forward FLOPs per example (the matrix
multiplies of every linear and conv layer of the real architecture, traced on the meta
device), × 3 for a training step, × examples × epochs, plus evaluation and a fixed cost
per optimizer step. The two rates below were measured on
the 2-core development machine (see benchmarks/throughput.py); on other machines the
estimate scales with its core count only, so treat it as an order of magnitude.
"""

from __future__ import annotations

import math

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
    flops = forward_flops(cfg) if flops is None else flops
    train, evaluated = _split_sizes(cfg)
    batch = train if cfg.batch_size == "full" else int(cfg.batch_size)
    steps = cfg.epochs * math.ceil(train / batch)
    compute = (3 * flops * train * cfg.epochs + flops * evaluated) / (FLOPS_PER_CORE * threads)
    return STARTUP_SECONDS + compute + steps * SECONDS_PER_STEP


def estimate_study_seconds(runs: list[RunConfig], cores: int) -> float:
    """Runs spread over ``cores`` single-thread workers."""
    cache: dict[str, float] = {}
    total = 0.0
    for cfg in runs:
        key = cfg.model.model_dump_json() + cfg.dataset.name
        if key not in cache:
            cache[key] = forward_flops(cfg)
        total += estimate_run_seconds(cfg, 1, cache[key])
    return total / max(1, cores)

"""How much arithmetic a model does: forward FLOPs per example, as
``torch.utils.flop_counter`` counts them (2 × the multiply-adds of every linear and
convolution layer; biases, activations and pooling left out).

Used to plan work (which runs batch their seeds, how many threads a run gets, how long a
study takes), so it must not cost a torch import where nothing trains. Three sources, the
first that knows the model:

1. the architecture's own arithmetic (registry meta ``flops``; ``mlp`` declares it: its
   layer sizes are its options);
2. :data:`TABLE_FILE`, the counts of every model and input shape the built-in studies
   use, shipped with the package (``python -m ablab.models.flops`` rewrites it;
   ``tests/test_light_cli.py`` counts them again with torch and fails when one is stale);
3. counting on the real architecture with torch (any other model or shape).

A count depends on the architecture, its own options and the input shape: the generic
options (activation, dropout, batch norm, init) add no linear or conv layer and change no
layer's size (the test checks it on every table entry), so they are not in a table key.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from ablab.config import ModelConfig, RunConfig
from ablab.registry import DATASETS, MODELS

#: The counts of the built-in studies' models, by :func:`table_key`.
TABLE_FILE = Path(__file__).with_name("flops.json")

#: Classes of the output layer counted (the count is a planning figure: 10 outputs).
COUNTED_CLASSES = 10

#: Above this many parameters the FLOP count runs on the meta device (no memory taken).
_REAL_FORWARD_MAX_PARAMETERS = 50_000_000


def model_shape(cfg: RunConfig) -> tuple[int, ...]:
    """The input shape (without batch) of this run's dataset, from the registry."""
    return tuple(DATASETS.get(cfg.dataset.name).meta.get("shape", (2,)))


def forward_flops(cfg: RunConfig) -> float:
    """Forward FLOPs for one example of this run's model and data shape."""
    return _forward_flops(cfg.model.model_dump_json(), model_shape(cfg))


def table_key(name: str, options: dict[str, Any], shape: tuple[int, ...]) -> str:
    """A table row's key: the architecture, its own (resolved) options, the input shape."""
    return json.dumps([name, options, list(shape)], sort_keys=True)


@functools.cache
def flop_table() -> dict[str, float]:
    """The shipped counts (:data:`TABLE_FILE`), by :func:`table_key`; {} when absent."""
    try:
        rows = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {table_key(r["model"], r["options"], tuple(r["shape"])): float(r["flops"])
            for r in rows}


@functools.lru_cache(maxsize=256)
def _forward_flops(model_json: str, shape: tuple[int, ...]) -> float:
    model_cfg = ModelConfig.model_validate_json(model_json)
    entry = MODELS.get(model_cfg.name)
    options = entry.validate_options(model_cfg.options)
    arithmetic = entry.meta.get("flops")
    if arithmetic is not None:
        return float(arithmetic(options, shape, COUNTED_CLASSES))
    known = flop_table().get(table_key(model_cfg.name, options, shape))
    if known is not None:
        return known
    return count_flops(model_cfg, shape)


def count_flops(model_cfg: ModelConfig, shape: tuple[int, ...]) -> float:
    """Counted with forward hooks on the built model (torch), as
    ``torch.utils.flop_counter`` counts. Not FlopCounterMode itself: entering it imports
    torch._dynamo, about a second in every process that plans or groups runs (tested
    equal)."""
    import torch
    from torch import nn

    from ablab.models.core import build_model

    model_cfg = model_cfg.model_copy(update={"init": "default"})
    total = 0.0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2.0 * module.in_features * output.numel()
        else:  # a convolution: each output value is a dot product over its receptive field
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2.0 * per_output * output.numel()

    with torch.device("meta"):  # the structure first: no memory, no arithmetic
        model = build_model(model_cfg, shape, COUNTED_CLASSES).eval()
    device = "meta"
    if sum(p.numel() for p in model.parameters()) <= _REAL_FORWARD_MAX_PARAMETERS:
        # A real forward on uninitialised memory: meta-device matmuls run Python
        # decompositions that import torch._dynamo (a second); values do not matter here.
        model, device = model.to_empty(device="cpu"), "cpu"
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            m.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, *shape, device=device))
    return total


# ---------------------------------------------------------------- the shipped table


def builtin_table_rows() -> list[dict[str, Any]]:
    """Every model and input shape the built-in studies train (the base config of each
    run, tuning trials included as they train the same models), counted with torch; the
    architectures with their own arithmetic are left out."""
    from ablab.study import builtin_studies, load_study

    rows: dict[str, dict[str, Any]] = {}
    for name in builtin_studies():
        for run in load_study(name).runs:
            cfg = run.config
            if cfg.model is None or cfg.dataset is None:
                continue
            entry = MODELS.get(cfg.model.name)
            if entry.meta.get("flops") is not None:
                continue
            options = entry.validate_options(cfg.model.options)
            shape = model_shape(cfg)
            key = table_key(cfg.model.name, options, shape)
            if key not in rows:
                rows[key] = {"model": cfg.model.name, "options": options, "shape": list(shape),
                             "flops": count_flops(cfg.model, shape)}
    return [rows[k] for k in sorted(rows)]


def write_table(path: Path = TABLE_FILE) -> None:
    path.write_text(json.dumps(builtin_table_rows(), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m ablab.models.flops: rewrite the shipped table
    write_table()
    print(f"wrote {TABLE_FILE}")

"""What a model does with the generic options (activation, dropout, batch_norm), known
before any model is built: the plan check that a varied generic option reaches the
model (:func:`check_varied_options`, registered on every study plan) and the defaults
``ablab list models`` shows (:func:`architecture_defaults`).

A registry entry may declare both (``honours=`` the options its builder reads, a tuple or
a function of its resolved options; ``defaults=`` its own default of each): the built-in
architectures do, so a dry run and ``ablab list`` need no torch
(``tests/test_light_cli.py`` builds every built-in to check the declarations). For an
entry that declares nothing, the model is built once on the meta device (no memory, no
compute) and the spec records what the builder asked for.
"""

from __future__ import annotations

from typing import Any

from ablab.errors import ConfigError
from ablab.models.spec import GENERIC_OPTIONS, ModelSpec
from ablab.registry import DATASETS, MODELS, Entry
from ablab.study import add_plan_check


def declared_honours(entry: Entry, options: dict[str, Any]) -> set[str] | None:
    """The generic options ``entry`` declares its builder reads at these (resolved)
    options; None when it declares nothing."""
    declared = entry.meta.get("honours")
    if declared is None:
        return None
    return set(declared(options) if callable(declared) else declared)


def _built_reads(entry: Entry, spec: ModelSpec, options: dict[str, Any]) -> ModelSpec:
    """``spec`` after building ``entry`` on the meta device with it (the spec records
    what the builder asked for)."""
    import torch

    with torch.device("meta"):
        entry.fn(spec, **options)
    return spec


def options_read(cfg: Any, input_shape: tuple[int, ...], num_classes: int) -> set[str]:
    """The generic options the builder of ``cfg`` (a ModelConfig) reads: declared, or
    found by building it once on the meta device."""
    entry = MODELS.get(cfg.name)
    options = entry.validate_options(cfg.options)
    declared = declared_honours(entry, options)
    if declared is not None:
        return declared
    spec = ModelSpec.from_config(cfg, input_shape, num_classes)
    return set(_built_reads(entry, spec, options).reads)


def architecture_defaults(entry: Entry) -> dict[str, Any]:
    """What a model does with the generic options a study leaves unset, e.g.
    ``{"dropout": 0.5, "batch_norm": True}`` for simple_cnn: declared (``defaults=``), or
    found by building it once, with its default options, on the meta device for a
    3×32×32 input (larger where the model needs it). Options it never reads are absent;
    {} when the builder cannot be built that way."""
    if "defaults" in entry.meta:
        return dict(entry.meta["defaults"])
    side = max(32, int(entry.meta.get("min_hw") or 0))
    spec = ModelSpec(input_shape=(3, side, side), num_classes=10)
    try:
        _built_reads(entry, spec, entry.validate_options({}))
    except Exception:  # noqa: BLE001 - a builder that needs real data: nothing to say
        return {}
    return dict(spec.defaults)


def _generic_option(path: str) -> str | None:
    """``model.dropout`` → ``dropout``; ``model.activation.negative_slope`` → ``activation``."""
    parts = path.split(".")
    if parts[0] != "model" or len(parts) < 2 or parts[1] not in GENERIC_OPTIONS:
        return None
    return parts[1]


def check_varied_options(study: Any) -> None:
    """Refuse a factor varying a generic model option (activation, dropout, batch_norm)
    that some variant's model builder never reads: its levels would train identical
    networks and the report would still give a verdict. A model that cannot be built
    cheaply here (unknown input shape, a builder that needs real data) is left to the
    second line of defence, the analysis' check for bit-identical levels."""
    cache: dict[tuple[str, str, tuple[int, ...]], set[str] | None] = {}
    first_seed = study.runs[0].seed if study.runs else None
    for i, factor in enumerate(study.factors):
        for path in factor:
            option = _generic_option(path)
            if option is None:
                continue
            for run in study.runs:
                if run.seed != first_seed:
                    continue
                cfg = run.config
                meta = DATASETS.get(cfg.dataset.name).meta
                shape = meta.get("shape")
                if shape is None:
                    continue
                shape = tuple(int(d) for d in shape)
                key = (cfg.model.name, repr(sorted(cfg.model.options.items())), shape)
                if key not in cache:
                    try:
                        cache[key] = options_read(cfg.model, shape, int(meta.get("classes", 10)))
                    except Exception:  # noqa: BLE001 - not buildable here: analysis checks
                        cache[key] = None
                read = cache[key]
                if read is not None and option not in read:
                    how = GENERIC_OPTIONS[option]
                    raise ConfigError(
                        f'{study.source}: vary[{i}]."{path}": model {cfg.model.name!r} never '
                        f"reads {option} (its builder does not call {how}), so every level "
                        f"would train the same network; call {how} in the builder (or "
                        f"register it with honours=(...)), or stop varying {path}"
                    )


add_plan_check(check_varied_options)  # a varied generic option must reach the model

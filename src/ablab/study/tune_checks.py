"""``[tune]`` checked against the expanded study, before anything is tuned."""

from __future__ import annotations

import copy

import pydantic

from ablab import identity
from ablab.config import RunConfig, format_validation_error, set_path
from ablab.errors import ConfigError
from ablab.study.plan import Study
from ablab.study.tune_config import parse_distribution


def check_tune(study: Study, source: str) -> None:
    """``[tune]`` against the expanded study: each distribution readable, each parameter a
    real field of every variant (its values applied and the run validated), not a varied
    key, tuning seeds disjoint from the evaluation seeds, validation data held out."""
    tune = study.config.tune
    assert tune is not None
    overlap = sorted(set(tune.seeds) & set(study.config.seeds))
    if overlap:
        raise ConfigError(
            f"{source}: tune.seeds: {', '.join(map(str, overlap))} also in the evaluation "
            "seeds; tuning seeds must be disjoint from the study's seeds"
        )
    varied = {k for factor in study.factors for k in factor}
    first = {vid: runs[0] for vid, runs in study.variants().items()}
    for path, text in tune.params.items():
        where = f'{source}: tune.params."{path}"'
        try:
            dist = parse_distribution(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc} (got {text!r})") from None
        if path in varied:
            raise ConfigError(f"{where}: is a varied factor; tune it or vary it, not both")
        if path == "seed" or identity.outside_identity(path):
            raise ConfigError(f"{where}: does not change what a run computes; nothing to tune")
        if tune.sampler == "grid" and dist.kind in ("uniform", "loguniform"):
            raise ConfigError(
                f'{where}: sampler = "grid" needs choice(...) or int(LOW, HIGH), got {text}'
            )
        for run in first.values():
            for value in dist.probes():
                data = run.config.resolved()
                try:
                    set_path(data, path, copy.deepcopy(value))
                    RunConfig.model_validate(data)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {str(exc).partition(': ')[2]}") from None
                except pydantic.ValidationError as exc:
                    detail = format_validation_error(exc, "", path_map=lambda p: p)
                    label = f" (variant {run.variant_label})" if run.variant_label else ""
                    raise ConfigError(
                        f"{where}: {detail.removeprefix(': ')}{label}"
                    ) from None
    if tune.sampler == "grid":
        size = 1
        for dist in tune.distributions().values():
            size *= len(dist.args) if dist.kind == "choice" else dist.args[1] - dist.args[0] + 1
        if tune.trials > size:
            raise ConfigError(
                f"{source}: tune.trials: {tune.trials} is more than the grid's {size} points"
            )
    for run in first.values():
        if run.config.dataset.validate_on == "test":
            raise ConfigError(
                f'{source}: tune: dataset.validate_on = "test" would tune on test data; '
                "hold out a validation split (validate_on = \"holdout\")"
            )
        if run.config.dataset.val_fraction <= 0:
            raise ConfigError(
                f"{source}: tune: dataset.val_fraction is 0, so there is no validation data "
                "to tune on; set dataset.val_fraction > 0"
            )

"""``[tune]`` checked against the expanded study, before anything is tuned."""

from __future__ import annotations

import copy

import pydantic

from ablab import identity
from ablab.config import RunConfig, format_validation_error, set_path
from ablab.errors import ConfigError
from ablab.study.plan import PlannedRun, Study
from ablab.study.tune_config import Distribution, TuneConfig, parse_distribution


def check_tune(study: Study, source: str) -> None:
    """``[tune]`` against the expanded study: each distribution readable, each parameter a
    real field of every variant (its values applied and the run validated), not a varied
    key, tuning seeds disjoint from the evaluation seeds, validation data held out."""
    tune = study.config.tune
    assert tune is not None
    _refuse_shared_seeds(tune, study.config.seeds, source)
    varied = {k for factor in study.factors for k in factor}
    first = [runs[0] for runs in study.variants().values()]
    for path, text in tune.params.items():
        where = f'{source}: tune.params."{path}"'
        dist = _tunable_distribution(tune, path, text, varied, where)
        _probe_every_variant(first, path, dist, where)
    if tune.sampler == "grid":
        _check_grid_size(tune, source)
    _check_validation_data(first, source)


def _refuse_shared_seeds(tune: TuneConfig, seeds: list[int], source: str) -> None:
    """Tuning seeds must not be evaluation seeds (the verdicts would see tuned-on draws)."""
    overlap = sorted(set(tune.seeds) & set(seeds))
    if overlap:
        raise ConfigError(
            f"{source}: tune.seeds: {', '.join(map(str, overlap))} also in the evaluation "
            "seeds; tuning seeds must be disjoint from the study's seeds"
        )


def _tunable_distribution(
    tune: TuneConfig, path: str, text: str, varied: set[str], where: str
) -> Distribution:
    """One ``tune.params`` entry read, refused when its field is varied, changes nothing a
    run computes, or is continuous under the grid sampler."""
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
    return dist


def _probe_every_variant(
    first: list[PlannedRun], path: str, dist: Distribution, where: str
) -> None:
    """Each variant's first run with the distribution's probe values set at ``path`` must
    still be a valid run: the parameter is a real field of every variant."""
    for run in first:
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
                raise ConfigError(f"{where}: {detail.removeprefix(': ')}{label}") from None


def _check_grid_size(tune: TuneConfig, source: str) -> None:
    """The grid sampler cannot run more trials than its grid has points."""
    size = 1
    for dist in tune.distributions().values():
        size *= len(dist.args) if dist.kind == "choice" else dist.args[1] - dist.args[0] + 1
    if tune.trials > size:
        raise ConfigError(
            f"{source}: tune.trials: {tune.trials} is more than the grid's {size} points"
        )


def _check_validation_data(first: list[PlannedRun], source: str) -> None:
    """Every variant holds out validation data to tune on (never the test set)."""
    for run in first:
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

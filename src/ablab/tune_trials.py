"""The Optuna side of tuning (:mod:`ablab.tune`): ablab's distributions as Optuna's, each
variant's Optuna study in ``DIR/tuning.sqlite``, a trial's value from its runs' records
(telling Optuna, pruning included), and the tuning summary written to ``tuning.json``."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablab.config import RunConfig, set_path
from ablab.errors import UserError
from ablab.study import Distribution, PlannedRun, TuneConfig

TUNING_DB = "tuning.sqlite"
TUNING_JSON = "tuning.json"
COUNTED_FAILURES = ("diverged", "failed")


def optuna_module():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distribution(dist: Distribution):
    """ablab's distribution as Optuna's."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    makers = {
        "loguniform": lambda a: FloatDistribution(a[0], a[1], log=True),
        "uniform": lambda a: FloatDistribution(a[0], a[1]),
        "int": lambda a: IntDistribution(a[0], a[1]),
        "choice": lambda a: CategoricalDistribution(list(a)),
    }
    return makers[dist.kind](dist.args)


def grid_of(dists: dict[str, Distribution]) -> dict[str, list[Any]]:
    return {
        path: list(d.args) if d.kind == "choice" else list(range(d.args[0], d.args[1] + 1))
        for path, d in dists.items()
    }


#: TPE's random start: its first trials ignore the values told so far.
TPE_STARTUP = 10

SAMPLERS: dict[str, Callable[[int, dict[str, Distribution]], Any]] = {
    "tpe": lambda seed, dists: optuna_module().samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=TPE_STARTUP),
    "random": lambda seed, dists: optuna_module().samplers.RandomSampler(seed=seed),
    "grid": lambda seed, dists: optuna_module().samplers.GridSampler(grid_of(dists), seed=seed),
}
PRUNERS: dict[str, Callable[[], Any]] = {
    "none": lambda: optuna_module().pruners.NopPruner(),
    "median": lambda: optuna_module().pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    "successive_halving": lambda: optuna_module().pruners.SuccessiveHalvingPruner(),
}


def counted_trials(trials: list[Any]) -> list[Any]:
    """The trials that count toward the budget: COMPLETE, PRUNED, and FAIL told by ablab
    (diverged or crashed); not those abandoned by a killed process."""
    from optuna.trial import TrialState

    return [
        t for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.user_attrs.get("outcome") in COUNTED_FAILURES)
    ]


def trial_storage(root: Path):
    optuna = optuna_module()
    return optuna.storages.RDBStorage(
        f"sqlite:///{root / TUNING_DB}", engine_kwargs={"connect_args": {"timeout": 60}}
    )


def sampler_seed(tune: TuneConfig, vid: str) -> int:
    return (int(vid[:8], 16) ^ tune.seeds[0]) % (2**31)


def open_optuna_study(storage, tune: TuneConfig, vid: str, dists: dict[str, Distribution],
                direction: str = "maximize"):
    optuna = optuna_module()
    with warnings.catch_warnings():  # constant_liar is "experimental" in Optuna
        warnings.simplefilter("ignore")
        sampler = SAMPLERS[tune.sampler](sampler_seed(tune, vid), dists)
    return optuna.create_study(
        storage=storage, study_name=vid, direction=direction,
        sampler=sampler, pruner=PRUNERS[tune.pruner](), load_if_exists=True,
    )


def abandon_running(ostudy) -> int:
    """Trials left RUNNING by a killed process: FAIL (not counted), parameters enqueued
    again. Returns how many."""
    from optuna.trial import TrialState

    stale = ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        ostudy._storage.set_trial_user_attr(t._trial_id, "outcome", "abandoned")
        ostudy.tell(t.number, state=TrialState.FAIL)
        ostudy.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
    return len(stale)


def trial_config(run: PlannedRun, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """A variant's run config at ``params`` with a tuning seed, resolved."""
    data = run.config.resolved()
    for path, value in params.items():
        set_path(data, path, value)
    data["seed"] = seed
    return RunConfig.model_validate(data).resolved()


def metric_curve(record: dict[str, Any], metric: str, maximize: bool = True) -> list[float | None]:
    """The tuned metric per epoch; ``best_val_X``: the best ``val_X`` so far (in the
    metric's direction)."""
    best_of = metric.startswith("best_val_")
    key = metric.removeprefix("best_") if best_of else metric
    values = [h.get(key) for h in record.get("history") or []]
    if best_of:
        best, out = None, []
        for v in values:
            better = v is not None and (best is None or (v > best if maximize else v < best))
            best = v if better else best
            out.append(best)
        return out
    return values


def final_value(record: dict[str, Any], metric: str, maximize: bool = True) -> float | None:
    if metric.startswith("best_val_") and metric in (record.get("final") or {}):
        value = (record.get("final") or {}).get(metric)
    elif metric.startswith("best_val_"):
        value = next((v for v in reversed(metric_curve(record, metric, maximize)) if v is not None),
                     None)
    else:
        value = next((v for v in reversed(metric_curve(record, metric)) if v is not None), None)
    return float(value) if value is not None and math.isfinite(value) else None


def mean_of(values: list[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return sum(good) / len(good) if good else None


@dataclasses.dataclass
class PendingTrial:
    variant: str  # variant id
    trial: Any  # optuna Trial from ask()
    seeds: list[int]
    records: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return len(self.records) + len(self.errors) == len(self.seeds)


def tell_trial(ostudy, p: PendingTrial, tune: TuneConfig) -> dict[str, Any]:
    """Tell Optuna how a trial ended; returns {outcome, value} for progress."""
    from optuna.trial import TrialState

    metric = tune.metric
    trial = p.trial
    maximize = ostudy.direction.name == "MAXIMIZE"
    seed_values = [final_value(p.records[s], metric, maximize) if s in p.records else None
                   for s in p.seeds]
    value = mean_of(seed_values)
    trial.set_user_attr("value", value)
    trial.set_user_attr("seed_values", seed_values)
    if p.errors:
        trial.set_user_attr("outcome", "failed")
        trial.set_user_attr("error", next(iter(p.errors.values()))[:300])
        ostudy.tell(trial, state=TrialState.FAIL)
        return {"outcome": "failed", "value": value}
    if any(r.get("status") == "diverged" for r in p.records.values()) or value is None:
        trial.set_user_attr("outcome", "diverged")
        ostudy.tell(trial, state=TrialState.FAIL)
        return {"outcome": "diverged", "value": value}
    if tune.pruner != "none":
        curves = [metric_curve(p.records[s], metric, maximize) for s in p.seeds]
        for step in range(min(len(c) for c in curves)):
            point = mean_of([c[step] for c in curves])
            if point is None:
                continue
            trial.report(point, step)
            if trial.should_prune():
                trial.set_user_attr("outcome", "pruned")
                trial.set_user_attr("pruned_at_epoch", step + 1)
                ostudy.tell(trial, state=TrialState.PRUNED)
                return {"outcome": "pruned", "value": value}
    trial.set_user_attr("outcome", "done")
    ostudy.tell(trial, value)
    return {"outcome": "done", "value": value}


def format_params(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def trial_rows(ostudy) -> list[dict[str, Any]]:
    rows = []
    for t in counted_trials(ostudy.get_trials(deepcopy=False)):
        rows.append({
            "number": t.number,
            "params": dict(t.params),
            "value": t.user_attrs.get("value"),
            "outcome": t.user_attrs.get("outcome", t.state.name.lower()),
            "state": t.state.name,
        })
    return rows


def best_trial(ostudy, tune: TuneConfig, label: str):
    from optuna.trial import TrialState

    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(
            f"tune: variant {label}: none of its {tune.trials} trials finished without "
            "diverging or being pruned; move or widen the search range"
        )
    return ostudy.best_trial


def tuning_summary(study, studies, tune, dists, labels) -> dict[str, Any]:
    from optuna.trial import TrialState

    out_variants = []
    for vid, ostudy in studies.items():
        best = best_trial(ostudy, tune, labels[vid])
        trials = ostudy.get_trials(deepcopy=False)
        states: dict[str, int] = {}
        for t in trials:
            key = t.user_attrs.get("outcome") or t.state.name.lower()
            states[key] = states.get(key, 0) + 1
        out_variants.append({
            "variant_id": vid,
            "label": labels[vid],
            "best_params": dict(best.params),
            "best_value": best.value,
            "best_trial": best.number,
            "trials": len(counted_trials(trials)),
            "outcomes": states,
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "trial_rows": trial_rows(ostudy),
        })
    return {
        "study": study.name,
        "metric": tune.metric,
        "direction": study.config.tune_direction(),
        "trials": tune.trials,
        "sampler": tune.sampler,
        "pruner": tune.pruner,
        "seeds": list(tune.seeds),
        "params": {path: str(d) for path, d in dists.items()},
        "distributions": {path: {"kind": d.kind, "args": list(d.args)}
                          for path, d in dists.items()},
        "variants": out_variants,
    }

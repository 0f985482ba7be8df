"""Tuning before the verdict: a study's ``[tune]`` table gives every variant the same
hyper-parameter search budget on validation data, then the study is evaluated with each
variant at its own best setting (the DeepOBS / AlgoPerf protocol)::

    [tune]
    params  = { "optimizer.lr" = "loguniform(1e-4, 1.0)" }
    trials  = 16              # per variant: every variant gets exactly this many
    metric  = "val_accuracy"  # validation data only
    seeds   = [1000]          # tuning seeds, disjoint from the evaluation seeds
    sampler = "tpe"           # or "random", "grid"; pruner = "none" | "median" | ...

Each variant has its own Optuna study in ``DIR/tuning.sqlite`` (RDB storage; the study
name is the variant id). Trials are asked in batches (``workers`` per variant per round;
all at once where the sampler would not use the values told in between: random, grid and
TPE's first ``TPE_STARTUP`` random trials), every variant's batch in one executor call,
trained through ablab's executors (one task per tuning seed; a trial's value is the mean
over its seeds) and told as soon as their last seed finishes, so a kill loses at most the
trials that were running.

Resume: trials a killed process left RUNNING are marked FAIL with the user attribute
``outcome = "abandoned"``, are not counted toward ``trials``, and their parameters are
enqueued again, so the next round re-runs exactly those settings (the sampler's sequence
is kept; a grid loses no point). Every other finished trial counts: COMPLETE, PRUNED, and
FAIL with ``outcome`` "diverged" (its value, when it has one, in the user attribute
``value``) or "failed" (the run crashed; ``error`` says why). Each variant ends with
exactly ``trials`` counted trials.

Pruning: the pruner judges each trial's per-epoch validation curve when the trial is told
(``trial.report`` per epoch, then ``should_prune``); a trial it would have stopped is told
PRUNED and is not a best-setting candidate. Executors cannot stop one running task yet, so
pruning here decides which trials count as candidates, the same way for every variant,
but saves no training time.

The evaluation is a normal :func:`ablab.runner.run_study` of the study with each
variant's best parameters applied; ``DIR/tuning.json`` records the settings, every
trial and the budget, for the report's "Tuning" section.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablab.config import RunConfig, run_id, set_path
from ablab.errors import UserError
from ablab.execute import Event, Task, kept_workers, make_executor, plan_workers
from ablab.execution_options import ExecutionOptions
from ablab.runner import (
    StudyInterrupted,
    StudyOutcome,
    Terminated,
    run_study,
    sigterm_as_interrupt,
)
from ablab.store import StudyStore, atomic_write_json
from ablab.study import Distribution, PlannedRun, Study, TuneConfig, variant_id

__all__ = [
    "TUNING_DB",
    "TUNING_JSON",
    "counted_trials",
    "run_tuned",
    "tune_study",
    "tuned_plan",
]

TUNING_DB = "tuning.sqlite"
TUNING_JSON = "tuning.json"
COUNTED_FAILURES = ("diverged", "failed")


def _optuna():
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


def _grid(dists: dict[str, Distribution]) -> dict[str, list[Any]]:
    return {
        path: list(d.args) if d.kind == "choice" else list(range(d.args[0], d.args[1] + 1))
        for path, d in dists.items()
    }


#: TPE's random start: its first trials ignore the values told so far.
TPE_STARTUP = 10

SAMPLERS: dict[str, Callable[[int, dict[str, Distribution]], Any]] = {
    "tpe": lambda seed, dists: _optuna().samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=TPE_STARTUP),
    "random": lambda seed, dists: _optuna().samplers.RandomSampler(seed=seed),
    "grid": lambda seed, dists: _optuna().samplers.GridSampler(_grid(dists), seed=seed),
}
PRUNERS: dict[str, Callable[[], Any]] = {
    "none": lambda: _optuna().pruners.NopPruner(),
    "median": lambda: _optuna().pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    "successive_halving": lambda: _optuna().pruners.SuccessiveHalvingPruner(),
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


def _storage(root: Path):
    optuna = _optuna()
    return optuna.storages.RDBStorage(
        f"sqlite:///{root / TUNING_DB}", engine_kwargs={"connect_args": {"timeout": 60}}
    )


def _sampler_seed(tune: TuneConfig, vid: str) -> int:
    return (int(vid[:8], 16) ^ tune.seeds[0]) % (2**31)


def _open_study(storage, tune: TuneConfig, vid: str, dists: dict[str, Distribution],
                direction: str = "maximize"):
    optuna = _optuna()
    with warnings.catch_warnings():  # constant_liar is "experimental" in Optuna
        warnings.simplefilter("ignore")
        sampler = SAMPLERS[tune.sampler](_sampler_seed(tune, vid), dists)
    return optuna.create_study(
        storage=storage, study_name=vid, direction=direction,
        sampler=sampler, pruner=PRUNERS[tune.pruner](), load_if_exists=True,
    )


def _abandon_running(ostudy) -> int:
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


def _curve(record: dict[str, Any], metric: str, maximize: bool = True) -> list[float | None]:
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


def _final(record: dict[str, Any], metric: str, maximize: bool = True) -> float | None:
    if metric.startswith("best_val_") and metric in (record.get("final") or {}):
        value = (record.get("final") or {}).get(metric)
    elif metric.startswith("best_val_"):
        value = next((v for v in reversed(_curve(record, metric, maximize)) if v is not None),
                     None)
    else:
        value = next((v for v in reversed(_curve(record, metric)) if v is not None), None)
    return float(value) if value is not None and math.isfinite(value) else None


def _mean(values: list[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return sum(good) / len(good) if good else None


@dataclasses.dataclass
class _Pending:
    variant: str  # variant id
    trial: Any  # optuna Trial from ask()
    seeds: list[int]
    records: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return len(self.records) + len(self.errors) == len(self.seeds)


def _tell(ostudy, p: _Pending, tune: TuneConfig) -> dict[str, Any]:
    """Tell Optuna how a trial ended; returns {outcome, value} for progress."""
    from optuna.trial import TrialState

    metric = tune.metric
    trial = p.trial
    maximize = ostudy.direction.name == "MAXIMIZE"
    seed_values = [_final(p.records[s], metric, maximize) if s in p.records else None
                   for s in p.seeds]
    value = _mean(seed_values)
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
        curves = [_curve(p.records[s], metric, maximize) for s in p.seeds]
        for step in range(min(len(c) for c in curves)):
            point = _mean([c[step] for c in curves])
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


def _format_params(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def _trial_rows(ostudy) -> list[dict[str, Any]]:
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


@dataclasses.dataclass
class _Tuning:
    """One ``tune_study`` call's state: every variant's Optuna study and how to run and
    tell its trials."""

    tune: TuneConfig
    variants: dict[str, list[PlannedRun]]  # variant id → its planned runs
    labels: dict[str, str]  # variant id → label
    studies: dict[str, Any]  # variant id → Optuna study
    fixed: dict[str, Any]  # parameter path → Optuna distribution
    say: Callable[[str], Any]
    execution: ExecutionOptions


def tune_study(
    study: Study,
    out: str | Path,
    *,
    execution: ExecutionOptions | None = None,
    on_line: Callable[[str], Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Tune every variant of ``study`` (which has ``[tune]``) into ``out``; resumable.
    How trials execute is ``execution`` or its fields as keywords (workers, threads,
    executor, address). ``on_line`` gets progress lines (one per finished trial and per
    tuned variant). Returns the tuning summary, also written to ``DIR/tuning.json``."""
    execution = ExecutionOptions.of(execution, **options)
    tune = study.config.tune
    if tune is None:
        raise UserError(f"{study.source}: has no [tune] table")
    say = on_line or (lambda line: None)
    root = Path(out)
    info_path = root / TUNING_JSON
    previous = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if previous.get("study") not in (None, study.name):
        raise UserError(f"{root}: holds the tuning of study '{previous['study']}', "
                        f"not '{study.name}'; choose another --out")
    dists = tune.distributions()
    started = time.monotonic()
    store = StudyStore(root)
    with store.locked():
        tuning = _open_tuning(study, root, dists, say, execution)
        _tune_in_batches(tuning, root)
        summary = _summary(study, tuning.studies, tune, dists, tuning.labels)
        summary["seconds"] = round(
            float(previous.get("seconds") or 0.0) + time.monotonic() - started, 1
        )
        atomic_write_json(info_path, summary)
    for v in summary["variants"]:
        say(f"tuned {v['label']}: best {_format_params(v['best_params'])} "
            f"({tune.metric} {v['best_value']:.4g}) from {v['trials']} trials")
    return summary


def _open_tuning(study: Study, root: Path, dists: dict[str, Distribution],
                 say: Callable[[str], Any], execution: ExecutionOptions) -> _Tuning:
    """Open (or resume) every variant's Optuna study; trials a stopped run left running
    will run again."""
    tune = study.config.tune
    variants = study.variants()
    labels = {vid: runs[0].variant_label or study.name for vid, runs in variants.items()}
    storage = _storage(root)
    direction = study.config.tune_direction()
    studies = {vid: _open_study(storage, tune, vid, dists, direction) for vid in variants}
    for vid, ostudy in studies.items():
        n = _abandon_running(ostudy)
        if n:
            say(f"tune {labels[vid]}: {n} trial(s) left running by a stopped run "
                "will run again")
    fixed = {path: optuna_distribution(d) for path, d in dists.items()}
    return _Tuning(tune, variants, labels, studies, fixed, say, execution)


def _tune_in_batches(tuning: _Tuning, root: Path) -> None:
    """Ask and run batches of trials until every variant has its trials; Ctrl-C or
    SIGTERM raises :class:`StudyInterrupted` (trials not told stay RUNNING: the next
    run requeues them)."""
    tune, execution = tuning.tune, tuning.execution
    per_round = max(1, execution.workers
                    or plan_workers(len(tuning.variants), None, execution.threads)[0])
    try:
        with sigterm_as_interrupt(), kept_workers():  # one pool for every batch
            while True:
                batch: list[_Pending] = []
                for vid, ostudy in tuning.studies.items():
                    told = len(counted_trials(ostudy.get_trials(deepcopy=False)))
                    size = _batch_size(tune, told, per_round)
                    for _ in range(min(size, max(0, tune.trials - told))):
                        batch.append(_Pending(vid, ostudy.ask(tuning.fixed), list(tune.seeds)))
                if not batch:
                    return
                _run_batch(batch, tuning)
    except KeyboardInterrupt as exc:
        done = sum(
            len(counted_trials(s.get_trials(deepcopy=False))) for s in tuning.studies.values()
        )
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        raise StudyInterrupted(
            f"interrupted during tuning: {done} trials done; run the same command "
            f"again to resume into {root}", signum,
        ) from None


def _batch_size(tune: TuneConfig, told: int, workers: int) -> int:
    """How many trials a variant asks for at once: ``workers``, except where the sampler
    would not use the values told in between anyway — random and grid search (every
    trial independent) and TPE's random start — which ask all of those at once (each
    round starts a worker pool: tens of seconds on a loaded machine)."""
    if tune.sampler in ("random", "grid"):
        return tune.trials
    if tune.sampler == "tpe" and told < TPE_STARTUP:
        return max(workers, TPE_STARTUP - told)
    return workers


def _run_batch(batch: list[_Pending], tuning: _Tuning) -> None:
    """Train every seed of every trial in ``batch`` in one executor call; tell Optuna
    each trial's value as its last seed finishes."""
    studies, variants, labels = tuning.studies, tuning.variants, tuning.labels
    tune, say, execution = tuning.tune, tuning.say, tuning.execution
    tasks: list[Task] = []
    owner: dict[str, tuple[_Pending, int]] = {}
    for p in batch:
        run = variants[p.variant][0]
        for seed in p.seeds:
            rid = f"tune-{p.variant[:10]}-{p.trial.number}-{seed}"
            config = trial_config(run, dict(p.trial.params), seed)
            tasks.append(Task(rid, f"{labels[p.variant]} trial {p.trial.number}", config))
            owner[rid] = (p, seed)

    def on_event(event: Event) -> None:
        if event.kind not in ("done", "failed"):
            return
        p, seed = owner[event.task.run_id]
        if event.kind == "done":
            p.records[seed] = event.record or {}
        else:
            p.errors[seed] = event.error or "unknown error"
        if p.finished:
            ostudy = studies[p.variant]
            told = _tell(ostudy, p, tune)
            n = len(counted_trials(ostudy.get_trials(deepcopy=False)))
            value = "–" if told["value"] is None else f"{told['value']:.4g}"
            say(f"tune {labels[p.variant]}: trial {n}/{tune.trials} "
                f"{_format_params(dict(p.trial.params))}: {tune.metric} {value}"
                + ("" if told["outcome"] == "done" else f" ({told['outcome']})"))

    n_workers, n_threads = plan_workers(tasks, execution.workers, execution.threads)
    make_executor(execution.executor, n_workers, n_threads, execution.address).run(
        tasks, on_event)


def _best(ostudy, tune: TuneConfig, label: str):
    from optuna.trial import TrialState

    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(
            f"tune: variant {label}: none of its {tune.trials} trials finished without "
            "diverging or being pruned; move or widen the search range"
        )
    return ostudy.best_trial


def _summary(study, studies, tune, dists, labels) -> dict[str, Any]:
    from optuna.trial import TrialState

    out_variants = []
    for vid, ostudy in studies.items():
        best = _best(ostudy, tune, labels[vid])
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
            "trial_rows": _trial_rows(ostudy),
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


def tuned_plan(study: Study, best: dict[str, dict[str, Any]]) -> Study:
    """The evaluation study: each variant's runs (evaluation seeds) with its best
    parameters applied; labels unchanged, ids recomputed."""
    runs = []
    for r in study.runs:
        data = r.config.resolved()
        for path, value in best[r.variant_id].items():
            set_path(data, path, value)
        cfg = RunConfig.model_validate(data)
        runs.append(PlannedRun(run_id(cfg), variant_id(cfg), r.variant, r.variant_label,
                               r.seed, cfg))
    return dataclasses.replace(study, runs=runs, tuned=True)


def run_tuned(
    study: Study,
    out: str | Path,
    *,
    execution: ExecutionOptions | None = None,
    on_line: Callable[[str], Any] | None = None,
    report: bool = True,
    svg: bool = False,
    **options: Any,
) -> tuple[StudyOutcome, dict[str, Any]]:
    """Tune (resuming what ``out`` holds), then evaluate every variant at its best
    setting with the study's seeds and write the report (``svg``: its figures as SVG
    too). How runs execute is ``execution`` or its fields as keywords (workers, threads,
    executor, address, progress, retry_failed, force_new_variants). Returns (the
    evaluation's StudyOutcome, the tuning summary)."""
    execution = ExecutionOptions.of(execution, **options)
    summary = tune_study(study, out, execution=execution, on_line=on_line)
    best = {v["variant_id"]: v["best_params"] for v in summary["variants"]}
    plan = tuned_plan(study, best)
    outcome = run_study(plan, out, execution=execution, report=report, svg=svg,
                        on_line=on_line)
    return outcome, summary

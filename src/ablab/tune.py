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
import signal
import time
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
from ablab.tune_trials import (
    TPE_STARTUP,
    TUNING_DB,
    TUNING_JSON,
    PendingTrial,
    abandon_running,
    counted_trials,
    format_params,
    open_optuna_study,
    optuna_distribution,
    tell_trial,
    trial_config,
    trial_storage,
    tuning_summary,
)

__all__ = [
    "TUNING_DB",
    "TUNING_JSON",
    "counted_trials",
    "run_tuned",
    "tune_study",
    "tuned_plan",
]

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
        summary = tuning_summary(study, tuning.studies, tune, dists, tuning.labels)
        summary["seconds"] = round(
            float(previous.get("seconds") or 0.0) + time.monotonic() - started, 1
        )
        atomic_write_json(info_path, summary)
    for v in summary["variants"]:
        say(f"tuned {v['label']}: best {format_params(v['best_params'])} "
            f"({tune.metric} {v['best_value']:.4g}) from {v['trials']} trials")
    return summary


def _open_tuning(study: Study, root: Path, dists: dict[str, Distribution],
                 say: Callable[[str], Any], execution: ExecutionOptions) -> _Tuning:
    """Open (or resume) every variant's Optuna study; trials a stopped run left running
    will run again."""
    tune = study.config.tune
    variants = study.variants()
    labels = {vid: runs[0].variant_label or study.name for vid, runs in variants.items()}
    storage = trial_storage(root)
    direction = study.config.tune_direction()
    studies = {vid: open_optuna_study(storage, tune, vid, dists, direction) for vid in variants}
    for vid, ostudy in studies.items():
        n = abandon_running(ostudy)
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
                batch: list[PendingTrial] = []
                for vid, ostudy in tuning.studies.items():
                    told = len(counted_trials(ostudy.get_trials(deepcopy=False)))
                    size = _batch_size(tune, told, per_round)
                    for _ in range(min(size, max(0, tune.trials - told))):
                        batch.append(PendingTrial(vid, ostudy.ask(tuning.fixed), list(tune.seeds)))
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


def _run_batch(batch: list[PendingTrial], tuning: _Tuning) -> None:
    """Train every seed of every trial in ``batch`` in one executor call; tell Optuna
    each trial's value as its last seed finishes."""
    studies, variants, labels = tuning.studies, tuning.variants, tuning.labels
    tune, say, execution = tuning.tune, tuning.say, tuning.execution
    tasks: list[Task] = []
    owner: dict[str, tuple[PendingTrial, int]] = {}
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
            told = tell_trial(ostudy, p, tune)
            n = len(counted_trials(ostudy.get_trials(deepcopy=False)))
            value = "–" if told["value"] is None else f"{told['value']:.4g}"
            say(f"tune {labels[p.variant]}: trial {n}/{tune.trials} "
                f"{format_params(dict(p.trial.params))}: {tune.metric} {value}"
                + ("" if told["outcome"] == "done" else f" ({told['outcome']})"))

    n_workers, n_threads = plan_workers(tasks, execution.workers, execution.threads)
    make_executor(execution.executor, n_workers, n_threads, execution.address).run(
        tasks, on_event)


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

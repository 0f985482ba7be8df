"""``ablab run --dry-run`` and what ``ablab run`` reads of OUT before it trains (read-only:
the directory's lock is the runner's to take)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from ablab.cli.app import (
    console,
    plural,
)


def may_train(out: Path, retry_failed: bool) -> bool:
    """Whether ``ablab run`` is about to train: OUT is new or holds runs left to do (a
    finished directory may still gain runs from a changed file; run_study starts the
    workers then, as for the Python API)."""
    from ablab.store import peek_statuses

    stored = peek_statuses(out)  # read-only: the lock is run_study's to take
    left = {"pending", "running"} | ({"failed"} if retry_failed else set())
    return not stored or any(status in left for status in stored.values())



def stored_statuses(out: Path) -> dict[str, str]:
    """Run id → status of what OUT holds ({} for a new directory)."""
    from ablab.store import StudyStore

    if not (out / "index.sqlite").exists() and not (out / "study.json").exists():
        return {}
    with StudyStore.existing(out) as store:
        return {row["run_id"]: row["status"] for row in store.rows(True)}


def pending_runs(plan, out: Path, retry_failed: bool) -> dict[str, tuple[str, float]]:
    """Run id → (variant, FLOP-estimate seconds) of the runs ``ablab run`` will train, for
    the progress display's remaining time."""
    from ablab.execute.estimate import run_estimates
    from ablab.store import peek_statuses

    # read-only: before run_study holds the directory's lock, touch nothing (another
    # `ablab run` may be working there; healing or rebuilding is for the lock holder)
    stored = peek_statuses(out)
    skip = {"done", "diverged"} | (set() if retry_failed else {"failed"})
    runs = [r for r in plan.runs if stored.get(r.run_id) not in skip]
    priors = run_estimates([r.config for r in runs])
    return {r.run_id: (r.variant_label, p) for r, p in zip(runs, priors, strict=True)}


def print_plan(plan, out: Path, workers: int | None, calibrate: bool = False) -> None:
    """``--dry-run``: the variants × seeds, what OUT holds of them, and an estimate of
    the rest (tuning trials included) from each model's FLOP count, or with ``calibrate``
    from a few training steps timed here per model and dataset (which loads torch)."""
    stored = stored_statuses(out)
    variants = plan.variants()

    def line(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    line(f"{plan.name}: {plural(len(variants), 'variant')} × "
         f"{plural(len(plan.config.seeds), 'seed')} = {plural(len(plan.runs), 'run')} "
         f"(dry run: nothing is trained)")
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("variant", "seeds", "done", "failed", "to run"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    left = []
    for runs in variants.values():
        statuses = [stored.get(r.run_id, "new") for r in runs]
        done = sum(s in ("done", "diverged") for s in statuses)
        failed = statuses.count("failed")
        left += [r for r, s in zip(runs, statuses, strict=True)
                 if s not in ("done", "diverged", "failed")]
        table.add_row(runs[0].variant_label or "(base recipe)", str(len(runs)), str(done),
                      str(failed), str(len(runs) - done - failed))
    console.print(table)
    held = sum(1 for r in plan.runs if r.run_id in stored)
    where = (f"{out} holds {held} of these runs" if stored else f"{out} is new")
    if stored and len(stored) > held:
        where += f" (and {plural(len(stored) - held, 'other run')})"
    line(where + f"; {plural(len(left), 'run')} to train"
         + ("; failed runs train again with --retry-failed" if
            any(stored.get(r.run_id) == "failed" for r in plan.runs) else ""))
    tuning = _tuning_left(plan, out, line)
    if not left and not tuning:
        return
    line(_estimate_line([r.config for r in left], tuning, workers, calibrate))


def _tuning_left(plan, out: Path, line) -> list:
    """The tuning trials' runs still to train (a line says so), costed as their variant's
    run: all of them until OUT holds the finished tuning's summary (``tuning.json``,
    written once every variant is tuned; a half-done tuning is counted whole)."""
    from ablab.execute.estimate import tuning_runs, tuning_text

    tune = plan.config.tune
    if tune is None:
        return []
    if (out / "tuning.json").is_file():  # ablab.tune_trials.TUNING_JSON
        line(f"tuned already ({out} holds tuning.json)")
        return []
    line(f"first tunes every variant: {plural(tune.trials, 'trial')} each "
         f"({tuning_text(plan)}, in the estimate)")
    return tuning_runs(plan)


def _estimate_line(configs: list, tuning: list, workers: int | None, calibrate: bool) -> str:
    from ablab.execute import available_cores, estimate

    cores = workers or available_cores()
    runs = f"{plural(len(configs), 'run')}" + (
        f" and {plural(len(tuning), 'tuning run')}" if tuning else "")
    if not calibrate:
        seconds = estimate.estimate_study_seconds(configs + tuning, cores)
        how = ("from each model's FLOP count at the development machine's rates; "
               "--calibrate times a few training steps here")
        return f"estimate: {duration(seconds)} for {runs} on {plural(cores, 'core')} ({how})"
    steps = estimate.calibrate(configs + tuning)
    timed = sum(v is not None for v in steps.values())
    seconds = estimate.estimate_calibrated(configs + tuning, cores, steps)
    how = (f"{estimate.CALIBRATION_STEPS} training steps timed for each of "
           f"{plural(timed, 'model-dataset pair')} on one thread, now")
    if timed < len(steps):
        how += f"; FLOP count for {len(steps) - timed}"
    return f"estimate: {duration(seconds)} for {runs} on {plural(cores, 'core')} ({how})"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


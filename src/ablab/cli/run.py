"""``ablab run``: a study's every variant × seed, in one of three ways (plain; with
``--until-decided``, seeds added in rounds; a study with ``[tune]``, tuned first), or its
plan with ``--dry-run``. The study file is parsed once; the options that say how it
executes travel as one :class:`~ablab.execution_options.ExecutionOptions`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ablab.cli.app import AllowPluginsOption, SetOption, SvgOption, app, consent, console
from ablab.cli.outcome import RESULT_FILES, say, show_outcome
from ablab.cli.plan import may_train, pending_runs, print_plan
from ablab.errors import UserError
from ablab.execution_options import ExecutionOptions


class ExecutorKind(StrEnum):
    local = "local"
    ray = "ray"


StudyArgument = Annotated[
    str, typer.Argument(help="A study file (TOML) or a built-in study's name")
]
OutOption = Annotated[Path, typer.Option(help="The study directory (created or resumed)")]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Worker processes (default: chosen)")
]
ThreadsOption = Annotated[
    int | None, typer.Option(min=1, help="Torch threads per worker (default: chosen)")
]
AddressOption = Annotated[str | None, typer.Option(help="Ray cluster address")]
GpusPerRunOption = Annotated[
    float | None,
    typer.Option(help="--executor ray: GPUs each Ray task asks for where runs train on "
                      "CUDA (default 1; a fraction shares a GPU)"),
]
SeedsOption = Annotated[int | None, typer.Option(help="Use seeds 0..N-1 instead")]
RetryFailedOption = Annotated[
    bool, typer.Option("--retry-failed", help="Run failed runs again")
]
ForceNewVariantsOption = Annotated[
    bool, typer.Option("--force-new-variants",
                       help="Add the file's new runs to a directory holding older ones")
]
RerunChangedOption = Annotated[
    bool, typer.Option("--rerun-changed",
                       help="Re-train stored runs whose data files changed since")
]
UntilDecidedOption = Annotated[
    bool,
    typer.Option("--until-decided",
                 help="Add seeds in rounds where a comparison is undecided "
                      "(group-sequential, O'Brien-Fleming alpha spending)"),
]
MaxSeedsOption = Annotated[
    int, typer.Option(min=2, help="Seed budget per variant for --until-decided")
]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run",
                 help="Train nothing: print the variants × seeds, what OUT already "
                      "holds and a time estimate (from each model's FLOP count)"),
]
CalibrateOption = Annotated[
    bool,
    typer.Option("--calibrate",
                 help="With --dry-run: estimate from a few training steps timed here "
                      "(loads torch: seconds)"),
]


@app.command()
def run(
    study: StudyArgument,
    out: OutOption,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    executor: Annotated[ExecutorKind, typer.Option()] = ExecutorKind.local,
    address: AddressOption = None,
    gpus_per_run: GpusPerRunOption = None,
    seeds: SeedsOption = None,
    set_: SetOption = None,
    retry_failed: RetryFailedOption = False,
    force_new_variants: ForceNewVariantsOption = False,
    allow_plugins: AllowPluginsOption = False,
    svg: SvgOption = False,
    rerun_changed: RerunChangedOption = False,
    until_decided: UntilDecidedOption = False,
    max_seeds: MaxSeedsOption = 10,
    dry_run: DryRunOption = False,
    calibrate: CalibrateOption = False,
) -> None:
    """Run every variant × seed of a study; resume what OUT already holds; write the report."""
    from ablab.study import load_study

    if dry_run:
        plan = load_study(study, seeds=seeds, sets=set_ or [], allow_plugins=consent(allow_plugins))
        print_plan(plan, out, workers, calibrate)
        return
    if calibrate:
        raise UserError("--calibrate: only with --dry-run (it times the estimate's steps)")
    if executor is ExecutorKind.local and may_train(out, retry_failed):
        from ablab.execute import start_server

        start_server()  # the workers' torch import (seconds) overlaps with reading the study
    _check_gpus_per_run(gpus_per_run, executor)
    plan = load_study(study, seeds=seeds, sets=set_ or [], allow_plugins=consent(allow_plugins))
    execution = ExecutionOptions(
        workers=workers, threads=threads, executor=executor.value, address=address,
        gpus_per_run=gpus_per_run, retry_failed=retry_failed,
        force_new_variants=force_new_variants,
    )
    if until_decided:
        if plan.config.tune is not None:
            raise UserError("--until-decided: not available for a study with [tune] yet")
        _run_until_decided(plan, out, execution, max_seeds, svg)
    elif plan.config.tune is not None:  # [tune]: tuning first, then the evaluation
        if gpus_per_run is not None:
            raise UserError("--gpus-per-run: not available for a study with [tune] yet")
        _run_tuned(plan, out, execution, svg)
    else:
        _run_plain(plan, out, execution, rerun_changed, svg)


def _check_gpus_per_run(gpus_per_run: float | None, executor: ExecutorKind) -> None:
    if gpus_per_run is not None and not gpus_per_run > 0:
        raise UserError(f"--gpus-per-run: {gpus_per_run} is not allowed; give a number > 0")
    if gpus_per_run is not None and executor is not ExecutorKind.ray:
        raise UserError("--gpus-per-run: only with --executor ray (the local executor "
                        "gives each worker one of the visible GPUs itself)")


def _run_plain(plan, out: Path, execution: ExecutionOptions, rerun_changed: bool,
               svg: bool) -> None:
    """Every run of the study, with a progress display; the report written once."""
    from ablab.runner import run_study
    from ablab.ui import RichStudyProgress

    progress = RichStudyProgress(console, title=plan.name,
                                 pending=pending_runs(plan, out, execution.retry_failed))
    outcome = run_study(plan, out, execution=execution.but(progress=progress),
                        rerun_changed=rerun_changed, svg=svg, on_line=say)
    show_outcome(out, outcome, f"{plan.name}: {{counts}}")


def _run_until_decided(plan, out: Path, execution: ExecutionOptions, max_seeds: int,
                       svg: bool) -> None:
    """Seeds added in rounds where a comparison is undecided; a line per round's plan."""
    from ablab.adaptive import run_until_decided
    from ablab.ui import RichStudyProgress

    def on_round(number: int, per_variant: dict[str, int]) -> None:
        shown = ", ".join(f"{label or 'base'}: {n}" for label, n in per_variant.items())
        say(f"round {number}: seeds per variant — {shown}")

    outcome, _ = run_until_decided(
        plan, out, execution=execution, max_seeds=max_seeds, svg=svg, on_line=say,
        progress=lambda title: RichStudyProgress(console, title=title), on_round=on_round,
    )
    show_outcome(out, outcome, "until decided: {counts}", retry_hint=False)


def _run_tuned(plan, out: Path, execution: ExecutionOptions, svg: bool) -> None:
    """A study with [tune]: a line per finished trial and per tuned variant, then the
    evaluation with the usual progress display and verdicts."""
    from ablab.tune import run_tuned
    from ablab.ui import RichStudyProgress

    tune = plan.config.tune
    say(f"{plan.name}: tuning {len(plan.variants())} variants, {tune.trials} trials each "
        f"({tune.sampler}, {tune.metric}, seeds {tune.seeds})")
    progress = RichStudyProgress(console, title=f"{plan.name} (evaluation)")
    outcome, summary = run_tuned(plan, out, execution=execution.but(progress=progress),
                                 on_line=say, svg=svg)
    show_outcome(
        out, outcome, f"{plan.name}: {{counts}}; tuning took {summary['seconds']:.0f} s",
        after=(f"each variant tuned with {tune.trials} trials, evaluated at its best setting",),
        files=f"{RESULT_FILES}, tuning.json, tuning.sqlite", retry_hint=False,
    )

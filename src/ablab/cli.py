"""The command line: a thin layer over :mod:`ablab.runner` and :mod:`ablab.results`.

Errors a user can cause print one line and exit 2; a run that fails or diverges exits 1.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ablab.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help: wraps to the terminal, readable at 80 columns (rich's boxed
    # panels cut option names and help text there)
    rich_markup_mode=None,
    help="ablab: controlled deep-learning comparisons, from one TOML file to a report.",
)
console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a field by dotted path, e.g. --set optimizer.lr=0.01"),
]
AllowPluginsOption = Annotated[
    bool,
    typer.Option(
        "--allow-plugins",
        help="Import (run) the plugin modules the file names; also ABLAB_ALLOW_PLUGINS=1",
    ),
]
SvgOption = Annotated[
    bool, typer.Option("--svg", help="Also write every figure as SVG (figures/*.svg)")
]


def _consent(allow_plugins: bool) -> bool | None:
    """--allow-plugins gives consent; without it the environment decides."""
    return True if allow_plugins else None


class Catalogue(StrEnum):
    studies = "studies"
    datasets = "datasets"
    models = "models"
    activations = "activations"
    losses = "losses"
    optimizers = "optimizers"
    schedules = "schedules"
    probes = "probes"
    trainers = "trainers"
    run = "run"
    study = "study"


@app.command("list")
def list_(
    catalogue: Annotated[
        str | None,
        typer.Argument(metavar="WHAT", show_default=False,
                       help="studies, models, datasets, activations, losses, optimizers, "
                            "schedules, probes, trainers, run or study; none: an index of "
                            "them all"),
    ] = None,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="One entry, e.g. simple_cnn")
    ] = None,
) -> None:
    """What a study may name: each entry with every field it accepts (its own options
    and the ones every entry takes), their allowed values and defaults."""
    from ablab.config import closest

    allowed = [c.value for c in Catalogue]
    if catalogue is not None and catalogue.lower() not in allowed:
        close = closest(catalogue, allowed)
        raise UserError(f"ablab list {catalogue}: unknown; allowed: {', '.join(allowed)}"
                        + (f" (did you mean {close!r}?)" if close else ""))
    what = Catalogue(catalogue.lower()) if catalogue is not None else None
    if what is None:
        _list_index()
    elif what == Catalogue.studies:
        _list_studies()
    elif what.value in ("run", "study"):
        _list_fields(what.value)
    else:
        _list_entries(what.value, name)


def _list_index() -> None:
    from ablab.schema import catalogue
    from ablab.study import builtin_studies

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("catalogue", style="bold", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("entries")
    studies = builtin_studies()
    table.add_row("studies", str(len(studies)), ", ".join(studies))
    for what, entries in catalogue().items():
        table.add_row(what, str(len(entries)), ", ".join(e.name for e in entries))
    table.add_row("run", "", "the fields of a run file (and of a study's \\[base])")
    table.add_row("study", "", "the top-level fields of a study file")
    console.print(table, highlight=False)
    console.print("`ablab list NAME` shows each entry's fields, allowed values and defaults; "
                  "`ablab schema` writes them as a JSON Schema.", highlight=False,
                  markup=False)


def _fields_table(rows) -> Table:
    table = Table(box=None, show_header=True, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("  field", no_wrap=True)
    table.add_column("allowed")
    table.add_column("default")
    for row in rows:
        table.add_row(f"  {row.name}", row.allowed, row.default or "(required)")
    return table


def _list_entries(what: str, name: str | None) -> None:
    from ablab.schema import COMPONENTS, entry_fields, registry_of

    reg = registry_of(what)
    entries = list(reg)
    if name is not None:
        entries = [reg.get(name)] if reg.canonical(name) else []
        if not entries:
            raise UserError(f"ablab list {what}: {reg.unknown_message(name)}")
    generic = COMPONENTS[what].generic_fields()
    for entry in entries:
        console.print(f"[bold]{entry.name}[/bold]  {entry.summary}", highlight=False)
        rows = entry_fields(what, entry)
        if rows:
            console.print(_fields_table(rows), highlight=False)
        else:
            console.print("  (no options)", highlight=False)
    if generic:
        console.print(f"every {reg.kind} takes {', '.join(generic)}; "
                      f"a {reg.kind} is a name (\"{entries[0].name}\") or a table "
                      f"({{ name = \"{entries[0].name}\", ... }})", highlight=False,
                      markup=False)


def _list_fields(what: str) -> None:
    from ablab.schema import FIELD_TABLES, model_rows

    console.print(f"[bold]{what} file[/bold]", highlight=False)
    console.print(_fields_table(model_rows(FIELD_TABLES[what])), highlight=False)


@app.command("schema")
def schema(
    run_file: Annotated[
        bool, typer.Option("--run", help="The schema of a run file instead of a study file")
    ] = False,
) -> None:
    """Print a JSON Schema of a study file (or a run file) for editors: save it, then put
    `#:schema ./ablab-study.schema.json` as the first line of a study file (taplo / Even
    Better TOML)."""
    import json

    from ablab.schema import run_schema, study_schema

    text = json.dumps(run_schema() if run_file else study_schema(), indent=2)
    sys.stdout.write(text + "\n")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _list_studies() -> None:
    from ablab.execute import available_cores
    from ablab.execute.estimate import estimate_study_seconds
    from ablab.study import builtin_studies, load_study

    cores = available_cores()
    for name in builtin_studies():
        study = load_study(name)
        seconds = estimate_study_seconds([r.config for r in study.runs], cores)
        summary = study.config.description.strip().split(":")[0]
        console.print(
            f"[bold]{name}[/bold]  {len(study.variants())} variants × "
            f"{len(study.config.seeds)} seeds = {len(study.runs)} runs, "
            f"{_duration(seconds)} on {cores} cores  [dim]{summary}[/dim]",
            highlight=False,
        )


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


#: The final metrics ``ablab train`` prints, in order.
TRAIN_TABLE_KEYS = (
    "test_accuracy", "test_loss", "test_cross_entropy", "test_precision", "test_recall",
    "test_f1", "best_val_accuracy", "best_val_epoch", "weights_epoch", "epochs_run",
    "chance_accuracy", "at_chance", "seconds",
)


#: What ``ablab train`` prints of a regression run (``task = "regression"``).
TRAIN_TABLE_KEYS_REGRESSION = (
    "test_rmse", "test_mae", "test_r2", "test_mse", "test_loss", "best_val_rmse",
    "best_val_epoch", "weights_epoch", "epochs_run", "seconds",
)


def _result_table(result, title: str) -> Table:
    table = Table(title=f"{title} — {result.status}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    regression = "test_rmse" in result.final or "best_val_rmse" in result.final
    if result.config.get("trainer"):  # another trainer: what it returned, then its time
        keys = [k for k in result.final if k != "seconds"] + ["seconds"]
    else:
        keys = list(TRAIN_TABLE_KEYS_REGRESSION if regression else TRAIN_TABLE_KEYS)
    for key in keys:
        table.add_row(key, _fmt(result.final.get(key)))
    if result.sizes:
        table.add_row("train / val / test", " / ".join(str(v) for v in result.sizes.values()))
    return table


@app.command()
def train(
    run_file: Annotated[Path, typer.Argument(help="A run file (TOML)")],
    out: Annotated[Path | None, typer.Option(help="Where to write summary.json")] = None,
    set_: SetOption = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads (default: by model size)")
    ] = None,
    allow_plugins: AllowPluginsOption = False,
) -> None:
    """Train one fully specified run and report its metrics."""
    from ablab.config import load_run, run_id
    from ablab.store import atomic_write_json
    from ablab.train.trainers import RunFailed, time_limit, train_one

    cfg = load_run(run_file, set_ or [], allow_plugins=_consent(allow_plugins))
    from ablab.data.plan_check import check_run_data

    check_run_data(cfg, str(run_file))  # data too small for its split: refused, not trained
    out = out or Path("runs") / f"{run_file.stem}-{run_id(cfg)}"
    from ablab.execute import Task, plan_workers
    from ablab.execute.base import set_threads

    set_threads(plan_workers([Task(run_id(cfg), "run", cfg.resolved())], 1, threads)[1])
    try:  # find an unwritable --out before training, not after
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write here ({exc.strerror})") from None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        # epochs of the built-in loop; another trainer's steps (run.log) have no known end
        TextColumn("epoch {task.completed}/{task.total}" if cfg.epochs
                   else "step {task.completed}"),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(cfg.name or run_file.stem, total=cfg.epochs, metrics="")

        def on_epoch(record: dict) -> None:
            text = " ".join(  # the built-in loop's loss and accuracies, or what run.log got
                f"{short} {_fmt(record[key])}"
                for key, short in (("train_loss", "loss"), ("train_accuracy", "acc"),
                                   ("val_accuracy", "val_acc"), ("val_rmse", "val_rmse"),
                                   ("val_r2", "val_r2"))
                if record.get(key) is not None
            ) or " ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k != "epoch")
            progress.update(task, advance=1, metrics=text)

        try:
            # the run's trainer (the built-in loop by default), its files in --out
            with time_limit(cfg.timeout):
                result = train_one(cfg, on_epoch=on_epoch, artefacts=out)
        except UserError:
            raise
        except RunFailed as exc:
            err_console.print(f"run failed: {exc}")
            raise typer.Exit(1) from None
        except Exception as exc:  # a failure inside the run: report it, exit 1
            err_console.print(f"run failed: {type(exc).__name__}: {exc}".splitlines()[0])
            raise typer.Exit(1) from None

    console.print(_result_table(result, f"{cfg.name or run_file.stem} ({result.run_id})"))
    if result.status == "diverged":
        err_console.print(f"diverged: {result.error}" if result.error else
                          f"diverged: the loss became non-finite at epoch {result.diverged_epoch}")
    elif result.final.get("at_chance"):
        err_console.print("did not learn: test accuracy is no better than chance")
    atomic_write_json(out / "summary.json", result.to_dict())
    console.print(f"wrote {out / 'summary.json'}")
    if result.status != "done":
        raise typer.Exit(1)


class ExecutorKind(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
def run(
    study: Annotated[str, typer.Argument(help="A study file (TOML) or a built-in study's name")],
    out: Annotated[Path, typer.Option(help="The study directory (created or resumed)")],
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: chosen)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads per worker (default: chosen)")
    ] = None,
    executor: Annotated[ExecutorKind, typer.Option()] = ExecutorKind.local,
    address: Annotated[str | None, typer.Option(help="Ray cluster address")] = None,
    gpus_per_run: Annotated[
        float | None,
        typer.Option(help="--executor ray: GPUs each Ray task asks for where runs train on "
                          "CUDA (default 1; a fraction shares a GPU)"),
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Use seeds 0..N-1 instead")] = None,
    set_: SetOption = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed runs again")
    ] = False,
    force_new_variants: Annotated[
        bool, typer.Option("--force-new-variants",
                           help="Add the file's new runs to a directory holding older ones")
    ] = False,
    allow_plugins: AllowPluginsOption = False,
    svg: SvgOption = False,
    rerun_changed: Annotated[
        bool, typer.Option("--rerun-changed",
                           help="Re-train stored runs whose data files changed since")
    ] = False,
    until_decided: Annotated[
        bool,
        typer.Option("--until-decided",
                     help="Add seeds in rounds where a comparison is undecided "
                          "(group-sequential, O'Brien-Fleming alpha spending)"),
    ] = False,
    max_seeds: Annotated[
        int, typer.Option(min=2, help="Seed budget per variant for --until-decided")
    ] = 10,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run",
                     help="Train nothing: print the variants × seeds, what OUT already "
                          "holds and a time estimate from a short calibration"),
    ] = False,
) -> None:
    """Run every variant × seed of a study; resume what OUT already holds; write the report."""
    from ablab.runner import run_study
    from ablab.study import load_study
    from ablab.ui import RichStudyProgress

    if dry_run:
        plan = load_study(study, seeds=seeds, sets=set_ or [],
                          allow_plugins=_consent(allow_plugins))
        _print_plan(plan, out, workers)
        return

    if executor is ExecutorKind.local and _may_train(out, retry_failed):
        from ablab.execute import start_server

        start_server()  # the workers' torch import (seconds) overlaps with reading the study
    if gpus_per_run is not None and not gpus_per_run > 0:
        raise UserError(f"--gpus-per-run: {gpus_per_run} is not allowed; give a number > 0")
    if gpus_per_run is not None and executor is not ExecutorKind.ray:
        raise UserError("--gpus-per-run: only with --executor ray (the local executor "
                        "gives each worker one of the visible GPUs itself)")
    if until_decided and _has_tune(study, seeds, set_, allow_plugins):
        raise UserError("--until-decided: not available for a study with [tune] yet")
    if until_decided:
        _run_until_decided(study, out, seeds, set_ or [], max_seeds, workers, threads,
                           executor.value, address, retry_failed, _consent(allow_plugins),
                           gpus_per_run)
        _svg_report(out, svg)
        return
    plan = load_study(study, seeds=seeds, sets=set_ or [], allow_plugins=_consent(allow_plugins))
    if plan.config.tune is not None:  # [tune]: tuning first, then the evaluation
        if gpus_per_run is not None:
            raise UserError("--gpus-per-run: not available for a study with [tune] yet")
        _run_tuned(plan, out, workers, threads, executor.value, address, retry_failed,
                   force_new_variants)
        _svg_report(out, svg)
        return
    outcome = run_study(
        plan,
        out,
        workers=workers,
        threads=threads,
        executor=executor.value,
        address=address,
        gpus_per_run=gpus_per_run,
        retry_failed=retry_failed,
        force_new_variants=force_new_variants,
        progress=RichStudyProgress(console, title=plan.name,
                                   pending=_pending_runs(plan, out, retry_failed)),
        rerun_changed=rerun_changed,
        svg=svg,
    )
    counts = outcome.counts
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"{plan.name}: {summary}")
    for label, reason in outcome.failures:
        err_console.print(f"failed: {label}: {reason}")
    _print_verdicts(out, outcome.analysis)
    console.print(f"results in {out}/ (results.csv, summary.csv, report.html, report.md)")
    if counts.get("failed"):
        console.print("re-run with --retry-failed to try the failed runs again")
    raise typer.Exit(outcome.exit_code)


def _may_train(out: Path, retry_failed: bool) -> bool:
    """Whether ``ablab run`` is about to train: OUT is new or holds runs left to do (a
    finished directory may still gain runs from a changed file; run_study starts the
    workers then, as for the Python API)."""
    from ablab.store import peek_statuses

    stored = peek_statuses(out)  # read-only: the lock is run_study's to take
    left = {"pending", "running"} | ({"failed"} if retry_failed else set())
    return not stored or any(status in left for status in stored.values())


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _stored_statuses(out: Path) -> dict[str, str]:
    """Run id → status of what OUT holds ({} for a new directory)."""
    from ablab.store import StudyStore

    if not (out / "index.sqlite").exists() and not (out / "study.json").exists():
        return {}
    with StudyStore.existing(out) as store:
        return {row["run_id"]: row["status"] for row in store.rows(True)}


def _pending_runs(plan, out: Path, retry_failed: bool) -> dict[str, tuple[str, float]]:
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


def _print_plan(plan, out: Path, workers: int | None) -> None:
    """``--dry-run``: the variants × seeds, what OUT holds of them, and an estimate of
    the rest from a few timed training steps per model and dataset."""
    from ablab.execute import available_cores
    from ablab.execute.estimate import CALIBRATION_STEPS, calibrate, estimate_calibrated

    stored = _stored_statuses(out)
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
    if plan.config.tune is not None:
        line(f"first tunes every variant: {plural(plan.config.tune.trials, 'trial')} each "
             "(not in the estimate)")
    if not left:
        return
    cores = workers or available_cores()
    configs = [r.config for r in left]
    steps = calibrate(configs)
    timed = sum(v is not None for v in steps.values())
    seconds = estimate_calibrated(configs, cores, steps)
    how = (f"{CALIBRATION_STEPS} training steps timed for each of "
           f"{plural(timed, 'model-dataset pair')} on one thread, now")
    if timed < len(steps):
        how += f"; FLOP count for {len(steps) - timed}"
    line(f"estimate: {_duration(seconds)} for {plural(len(left), 'run')} on "
         f"{plural(cores, 'core')} ({how})")


def _svg_report(out: Path, svg: bool) -> None:
    """``--svg``: (re)write the report with every figure as SVG too."""
    if svg:
        from ablab.report import write_report
        from ablab.store import StudyStore

        with StudyStore.existing(out) as store:
            write_report(store, svg=True)


def _print_verdicts(out: Path, a=None) -> None:
    """The verdicts, one line each, decided first (like a test summary); interactions
    before them (from ``a``, the study's fresh analysis, when given)."""
    from ablab.analysis import analyze
    from ablab.analysis.variance import terminal_lines as variance_lines
    from ablab.analysis.verdicts import terminal_lines
    from ablab.store import StudyStore

    if a is None:
        with StudyStore.existing(out) as store:
            a = analyze(store)
    for warning in a.inert.values():  # levels that trained identical runs: no verdict
        err_console.print(f"WARNING {warning}", markup=False, highlight=False, soft_wrap=True)
    lines = [f"INTERACTION {s}" for s in a.interaction_sentences]
    lines += terminal_lines(a.comparisons, a.primary)  # the study's primary outcome
    lines += [f"TRADE-OFF  {s}" for s in a.tradeoff_sentences]
    lines += variance_lines(a.variance_sources, a.variance_sentences)  # variance = "sources"
    if lines:
        label = a.outcomes.primary.label if a.outcomes else "test accuracy"
        console.print(f"verdicts ({label}):", highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _run_until_decided(study, out, seeds, sets, max_seeds, workers, threads, executor,
                       address, retry_failed, allow_plugins, gpus_per_run=None) -> None:
    from ablab.adaptive import run_until_decided
    from ablab.ui import RichStudyProgress

    def on_round(number: int, per_variant: dict[str, int]) -> None:
        shown = ", ".join(f"{label or 'base'}: {n}" for label, n in per_variant.items())
        console.print(f"round {number}: seeds per variant — {shown}", highlight=False,
                      markup=False, soft_wrap=True)

    outcome, per_variant = run_until_decided(
        study, out, max_seeds=max_seeds, seeds=seeds, sets=sets,
        progress=lambda title: RichStudyProgress(console, title=title), on_round=on_round,
        workers=workers, threads=threads, executor=executor, address=address,
        retry_failed=retry_failed, allow_plugins=allow_plugins, gpus_per_run=gpus_per_run,
    )
    counts = outcome.counts
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"until decided: {summary}", highlight=False)
    for label, reason in outcome.failures:
        err_console.print(f"failed: {label}: {reason}")
    _print_verdicts(out, outcome.analysis)
    console.print(f"results in {out}/ (results.csv, summary.csv, report.html, report.md)")
    raise typer.Exit(outcome.exit_code)


def _has_tune(study, seeds, sets, allow_plugins) -> bool:
    from ablab.study import load_study

    plan = load_study(study, seeds=seeds, sets=sets or [], allow_plugins=_consent(allow_plugins))
    return plan.config.tune is not None


def _run_tuned(plan, out, workers, threads, executor, address, retry_failed,
               force_new_variants) -> None:
    """``ablab run`` for a study with [tune]: a progress line per finished trial and per
    tuned variant, then the evaluation with the usual progress display and verdicts."""
    from ablab.tune import run_tuned
    from ablab.ui import RichStudyProgress

    def line(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    tune = plan.config.tune
    line(f"{plan.name}: tuning {len(plan.variants())} variants, {tune.trials} trials each "
         f"({tune.sampler}, {tune.metric}, seeds {tune.seeds})")
    outcome, summary = run_tuned(
        plan, out, workers=workers, threads=threads, executor=executor, address=address,
        on_line=line, retry_failed=retry_failed, force_new_variants=force_new_variants,
        progress=RichStudyProgress(console, title=f"{plan.name} (evaluation)"),
    )
    counts = outcome.counts
    summary_text = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"{plan.name}: {summary_text}; tuning took {summary['seconds']:.0f} s",
                  highlight=False)
    for label, reason in outcome.failures:
        err_console.print(f"failed: {label}: {reason}")
    line(f"each variant tuned with {tune.trials} trials, evaluated at its best setting")
    _print_verdicts(out, outcome.analysis)
    console.print(f"results in {out}/ (results.csv, summary.csv, report.html, report.md, "
                  "tuning.json, tuning.sqlite)")
    raise typer.Exit(outcome.exit_code)


@app.command()
def status(out: Annotated[Path, typer.Argument(help="A study directory")]) -> None:
    """Runs per status (done, failed, diverged, pending) and what is left."""
    from ablab.results import study_status

    info = study_status(out)
    counts = info["counts"]
    table = Table(title=f"{info['name']} — {plural(info['total'], 'run')}")
    table.add_column("status")
    table.add_column("runs", justify="right")
    for key, n in counts.items():
        table.add_row(key, str(n))
    console.print(table)
    left = counts["pending"] + counts["running"]
    for row in info["rows"]:
        if row["status"] == "failed":
            console.print(f"failed: {row['variant_label']}, seed={row['seed']}: {row['error']}")
    if left:
        console.print(f"{plural(left, 'run')} left; `ablab run` with the same study and --out "
                      "resumes them")
    else:
        console.print("nothing left to run")


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="A study directory")],
    svg: SvgOption = False,
) -> None:
    """(Re)write report.html, report.md, results.csv and summary.csv from what the
    directory holds."""
    from ablab.results import open_results

    results = open_results(out)
    paths = results.report(svg=svg)
    # from the analysis just made (the index at the time of the report), not a re-read
    pending = [r for v in results.analysis.variants for r in v.with_status("pending", "running")]
    _print_verdicts(out, results.analysis)
    for path in paths.values():
        console.print(f"wrote {path}")
    if pending:
        names = ", ".join(
            f"{r['run_id']} ({r['variant_label'] + ', ' if r['variant_label'] else ''}"
            f"seed={r['seed']})" for r in pending[:5]
        )
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        console.print(
            f"partial: {plural(len(pending), 'run')} not done: {names}{more}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def analyze(
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet file, one row per run")],
    factor: Annotated[list[str], typer.Option(
        "--factor", help="A column that varies (repeat for several); 'lr' finds 'params.lr'")],
    metric: Annotated[str, typer.Option(
        "--metric", help="The column judged; 'f1' finds 'metrics.f1'")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the report and tables")],
    seed: Annotated[str | None, typer.Option(
        "--seed", help="The seed column, pairing runs across variants (default: a column "
                       "'seed' or 'params.seed' if there is one)")] = None,
    goal: Annotated[str | None, typer.Option(
        "--goal", help="max (higher is better, the default) or min")] = None,
    range_: Annotated[tuple[float, float] | None, typer.Option(
        "--range", help="The metric's bounds LOW HIGH (e.g. 0 1), so intervals stay inside")
    ] = None,
) -> None:
    """Verdicts, warnings and a report for runs produced elsewhere (a CSV / Parquet table,
    an MLflow search_runs export): report.html, report.md, results.csv, summary.csv."""
    from ablab.external import analyze as analyze_table
    from ablab.external import write_outputs

    a = analyze_table(file, factor, metric, seed=seed, goal=goal, range=range_)
    paths = write_outputs(a, out)
    _print_verdicts(out, a)
    for warning in a.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for path in paths.values():
        console.print(f"wrote {path}")


@app.command()
def check(out: Annotated[Path, typer.Argument(help="A study directory")]) -> None:
    """Verify the index and every run record; quarantine damaged records (exit 1 if any)."""
    from ablab.store import StudyStore

    with StudyStore.existing(out) as store:
        found = store.check()
        counts = store.counts()
    bad = found["quarantined"] + found["missing"]
    console.print(
        f"{out}: {plural(len(found['ok']), 'run record')} whole, "
        f"{len(found['quarantined'])} damaged "
        f"(moved to runs/quarantine/), {len(found['missing'])} missing; index "
        + (f"rebuilt ({found['rebuilt']})" if found["rebuilt"] else "whole"),
        highlight=False,
        soft_wrap=True,
    )
    if bad:
        left = counts["pending"] + counts["running"]
        console.print(f"{plural(left, 'run')} pending; `ablab run` with the same study and --out "
                      "re-trains them", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


data_app = typer.Typer(
    help="Where each dataset is (or the files, folder and URL it needs); fetch one.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(data_app, name="data")


@data_app.callback()
def data(ctx: typer.Context) -> None:
    """Every dataset, with where it was found or the exact files, folder and URL it needs."""
    if ctx.invoked_subcommand is not None:
        return
    from ablab.data.sources import locate
    from ablab.registry import DATASETS

    for entry in DATASETS:
        where = locate(entry.name)
        if where is None:
            origin = "plugin dataset" if entry.meta.get("plugin") else "no files needed"
            if entry.meta.get("paths"):
                origin = "reads the files a study names"
            line = f"{entry.name}: {origin} ({entry.summary})"
        elif where.found is not None:
            line = f"{entry.name}: found in {where.found}"
        else:
            line = (
                f"{entry.name}: missing; needs {', '.join(where.files)} in {where.folder} "
                f"from {where.url} (looked in {', '.join(str(p) for p in where.searched)}); "
                f"`ablab data fetch {entry.name}` downloads it"
            )
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@data_app.command("fetch")
def data_fetch(name: Annotated[str, typer.Argument(help="A dataset's name")]) -> None:
    """Download a dataset through torchvision (checksums verified) where a network allows."""
    from ablab.data.sources import fetch
    from ablab.registry import DATASETS

    if name not in DATASETS:
        raise UserError(
            f"ablab data fetch: unknown dataset {name!r}; datasets: {', '.join(DATASETS.names())}"
        )
    where = fetch(name)
    console.print(f"{name}: downloaded and verified in {where.found}", highlight=False,
                  soft_wrap=True, markup=False)


class ExportTarget(StrEnum):
    mlflow = "mlflow"
    tensorboard = "tensorboard"


@app.command("export")
def export_(
    out: Annotated[Path, typer.Argument(help="A study directory")],
    to: Annotated[ExportTarget, typer.Option("--to", help="Where to export")],
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: MLflow's own, e.g. sqlite:///mlflow.db)"),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment name (default: the study's name)")
    ] = None,
    logdir: Annotated[
        Path | None, typer.Option(help="TensorBoard log folder (default: DIR/tensorboard)")
    ] = None,
) -> None:
    """Export the stored runs to MLflow or TensorBoard (optional extras)."""
    from ablab.export import export_mlflow, export_tensorboard

    if to == ExportTarget.mlflow:
        info = export_mlflow(out, tracking_uri=tracking_uri, experiment=experiment)
        console.print(
            f"MLflow experiment '{info['experiment']}' ({info['tracking_uri']}): "
            f"{plural(info['exported'], 'run')} exported, {info['skipped']} already there",
            highlight=False, markup=False, soft_wrap=True,
        )
        view = f"view: mlflow ui --backend-store-uri {info['tracking_uri']}"
        if not _mlflow_ui_installed():
            view += (" (the web UI needs the full mlflow package, not mlflow-skinny: "
                     "pip install 'ablab[mlflow-ui]')")
        console.print(view, highlight=False, markup=False, soft_wrap=True)
    else:
        info = export_tensorboard(out, logdir=logdir)
        console.print(
            f"TensorBoard: {plural(info['runs'], 'run')}, "
            f"{plural(info['histograms'], 'histogram')} in {info['logdir']}",
            highlight=False, markup=False, soft_wrap=True,
        )
        console.print(f"view: tensorboard --logdir {info['logdir']}", highlight=False,
                      markup=False, soft_wrap=True)


def _mlflow_ui_installed() -> bool:
    """Whether ``mlflow ui`` can serve its pages here: flask and the web frontend, which
    the full ``mlflow`` package has and ``mlflow-skinny`` lacks."""
    import importlib.util

    spec = importlib.util.find_spec("mlflow")
    if spec is None or importlib.util.find_spec("flask") is None:
        return False
    root = Path(next(iter(spec.submodule_search_locations or []), ""))
    return (root / "server" / "js" / "build").is_dir()


@app.command("check-model")
def check_model_cmd(
    name: Annotated[str, typer.Argument(help="A registered model (built in or a plugin's)")],
    plugin: Annotated[
        list[str] | None,
        typer.Option("--plugin", help="A plugin module (a .py path or a name) to import first"),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="One example's shape, e.g. 3,32,32 or 20")
    ] = None,
) -> None:
    """Which generic options (activation, dropout, batch_norm, init) a model honours;
    exit 1 when it ignores one."""
    from ablab.models.core import check_model
    from ablab.plugins import PluginError, import_plugins, resolve_plugins

    if plugin:
        try:  # naming the file on the command line is the consent
            import_plugins(resolve_plugins(plugin, Path.cwd()), allow=True)
        except PluginError as exc:
            raise UserError(f"--plugin: {exc}") from None
    shape = None
    if input_shape:
        try:
            shape = tuple(int(d) for d in input_shape.split(",") if d.strip())
        except ValueError:
            raise UserError(f"--input-shape {input_shape!r}: give integers, e.g. 3,32,32") \
                from None
    from ablab.registry import MODELS

    if name not in MODELS:
        raise UserError(f"check-model: {MODELS.unknown_message(name)}")
    result = check_model(name, input_shape=shape)
    console.print(str(result), highlight=False, markup=False, soft_wrap=True)
    if not result.ok:
        console.print(f"ignored: {', '.join(result.ignored)}", highlight=False, markup=False)
        raise typer.Exit(1)


def _one_line(text: str) -> str:
    """A user error is one line: control characters (a newline inside a key the user
    wrote, say) are shown escaped."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def main() -> None:
    """Exit status: 0 done; 1 runs failed or diverged; 2 bad input (one line); 130 / 143
    stopped by Ctrl-C / SIGTERM (128 + the signal, as a shell reports it)."""
    from ablab.execute import stop_server
    from ablab.runner import StudyInterrupted, Terminated, sigterm_as_interrupt

    received: list[int] = []
    try:
        with sigterm_as_interrupt() as received:
            app()
    except StudyInterrupted as exc:  # runs put back to pending; says how to resume
        err_console.print(str(exc))
        sys.exit(exc.exit_code)
    except UserError as exc:
        stop_server()  # started before the study file was read: nothing will run
        # "ablab[mlflow]" is no markup; a field name holding a newline stays one line;
        # an error about several things (datasets) says one line for each
        for line in getattr(exc, "lines", None) or [str(exc)]:
            err_console.print(f"error: {_one_line(line)}", markup=False)
        sys.exit(2)
    except OSError as exc:  # the disk, not the study: one line, not a traceback
        stop_server()
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"error: {where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt as exc:
        err_console.print("interrupted")
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns KeyboardInterrupt (and so SIGTERM) into exit 130
            err_console.print("interrupted")
            sys.exit(143 if received else 130)
        raise


def console_main() -> None:
    """The ``ablab`` command: :func:`main`, then leave without the interpreter's teardown
    of torch, matplotlib and pandas (0.7-2 s measured for #17, paid by every command after
    its last line). Everything is written by then: the store closes its index and writes
    files atomically inside the command. The teardown still runs where something may need
    it: a child process still alive (an interrupted pool), Ray (its atexit shuts down
    the cluster it started), or an exception that is not an exit (its traceback)."""
    try:
        main()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    import multiprocessing

    if "ray" in sys.modules or multiprocessing.active_children():
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message"): the message, then status 1
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    console_main()

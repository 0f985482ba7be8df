"""``ablab train``: one fully specified run, its progress and its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ablab.cli.app import (
    AllowPluginsOption,
    SetOption,
    app,
    consent,
    console,
    err_console,
)
from ablab.errors import UserError


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

    cfg = load_run(run_file, set_ or [], allow_plugins=consent(allow_plugins))
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
    result = _train_with_progress(cfg, run_file.stem, out)
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



def _train_with_progress(cfg, stem: str, out: Path):
    """Train ``cfg`` with its trainer (the built-in loop by default; its files in
    ``out``), a progress bar of epochs (or a trainer's logged steps); a failure inside
    the run says why and exits 1."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ablab.train.trainers import RunFailed, time_limit, train_one

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
        task = progress.add_task(cfg.name or stem, total=cfg.epochs, metrics="")

        def on_epoch(record: dict) -> None:
            progress.update(task, advance=1, metrics=_epoch_text(record))

        try:
            with time_limit(cfg.timeout):
                return train_one(cfg, on_epoch=on_epoch, artefacts=out)
        except UserError:
            raise
        except RunFailed as exc:
            err_console.print(f"run failed: {exc}")
            raise typer.Exit(1) from None
        except Exception as exc:  # a failure inside the run: report it, exit 1
            err_console.print(f"run failed: {type(exc).__name__}: {exc}".splitlines()[0])
            raise typer.Exit(1) from None


def _epoch_text(record: dict) -> str:
    """The built-in loop's loss and accuracies of an epoch, or what run.log got."""
    return " ".join(
        f"{short} {_fmt(record[key])}"
        for key, short in (("train_loss", "loss"), ("train_accuracy", "acc"),
                           ("val_accuracy", "val_acc"), ("val_rmse", "val_rmse"),
                           ("val_r2", "val_r2"))
        if record.get(key) is not None
    ) or " ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k != "epoch")

"""Commands on a study directory (status, report, check, export) and beside it (analyze
runs made elsewhere, data, check-model)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ablab.cli.app import (
    SvgOption,
    app,
    console,
    plural,
)
from ablab.cli.outcome import print_verdicts
from ablab.errors import UserError


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
    print_verdicts(out, results.analysis)
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
    print_verdicts(out, a)
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


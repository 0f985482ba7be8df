"""``ablab list`` and ``ablab schema``: what a study may name, and its JSON Schema."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from ablab.cli.app import (
    app,
    console,
)
from ablab.cli.plan import duration
from ablab.errors import UserError


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


def _list_studies() -> None:
    from ablab.execute import available_cores
    from ablab.execute.estimate import estimate_study_seconds, tuning_runs, tuning_text
    from ablab.study import builtin_studies, load_study

    cores = available_cores()
    for name in builtin_studies():
        study = load_study(name)
        runs = [r.config for r in study.runs] + tuning_runs(study)  # tuning trains first
        seconds = estimate_study_seconds(runs, cores)
        tuning = tuning_text(study)
        summary = study.config.description.strip().split(":")[0]
        console.print(
            f"[bold]{name}[/bold]  {len(study.variants())} variants × "
            f"{len(study.config.seeds)} seeds = {len(study.runs)} runs"
            f"{f' + {tuning}' if tuning else ''}, "
            f"{duration(seconds)} on {cores} cores  [dim]{summary}[/dim]",
            highlight=False,
        )


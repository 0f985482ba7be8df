"""Results from elsewhere: ablab's verdicts, warnings and report for runs it did not train.

A table with one row per run (a CSV or Parquet file, or a pandas DataFrame) is turned into
the analysis' own inputs (factors, and variants whose runs are indexed by seed), then
analysed and reported exactly as a study directory is (``ablab.analysis.analyze_runs``):
no second statistics path. What only a training run records (learning curves, probes,
confusion matrices) is absent, so the report has no such sections::

    >>> import pandas as pd                                            # doctest: +SKIP
    >>> runs = pd.read_csv("runs.csv")        # columns lr, seed, f1   # doctest: +SKIP
    >>> a = analyze(runs, factors=["lr"], metric="f1", seed="seed", out="report")  # doctest: +SKIP
    >>> print("\\n".join(a.verdicts))                                  # doctest: +SKIP

Columns are named as in the table; an MLflow ``search_runs`` table works as it is:
``lr`` finds ``params.lr`` and ``f1`` finds ``metrics.f1`` when the bare name is not a
column. Every numeric column besides the factors and the seed is kept as a run's final
figure (under its bare name), so ablab's own ``results.csv`` gives back the comparisons
``ablab report`` made from the study directory. A ``status`` column, when there is one,
says which runs finished (ablab's done / failed / diverged / pending, MLflow's FINISHED /
FAILED / KILLED / RUNNING); without one every row is a finished run. The seed column is
the one named, else a column ``seed`` (or ``params.seed``) when there is one; runs of two
variants with the same seed are paired. Without one every row is its own seed, so nothing
is paired.

A factor column named ``dataset`` (or ``dataset.*``) changes the data a run is tested on,
as the ``dataset`` factors of a study do: its levels are contexts compared within, not
choices judged.

Errors (:class:`ablab.errors.UserError`, exit 2 on the command line) name the file and the
column: a column that is not there, a single row, a factor with one level, missing values,
a seed that is not an integer, two rows for one variant and seed, too few runs to compare.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablab.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from ablab.analysis.study_analysis import StudyAnalysis

#: Prefixes an MLflow ``search_runs`` table puts before parameter, metric and tag names.
PREFIXES = ("params.", "metrics.", "tags.")
#: File types ``read_table`` reads.
TABLE_TYPES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
#: A ``status`` column's values, as ablab's statuses (lower-cased); others are "failed".
STATUS = {
    "done": "done", "finished": "done", "diverged": "diverged", "failed": "failed",
    "killed": "failed", "pending": "pending", "running": "pending", "scheduled": "pending",
}
#: ablab's own results.csv columns that are not a run's figures.
_NOT_FIGURES = {"run_id", "variant", "status", "error", "diverged_epoch", "at_chance",
                "start_time", "end_time", "experiment_id", "run_name"}


#: What a factor's path is called (the analysis knows factors by their config paths; a
#: table's columns are no config paths, so checks that read a config do not apply).
TABLE_PATH = "column:"


def role_of(name: str) -> str:
    """A column named ``dataset`` (or ``dataset.*``) is a context (its levels are compared
    within, as a study's dataset factor is); any other factor is a treatment."""
    return "context" if name == "dataset" or name.startswith("dataset.") else "treatment"


class TableError(UserError):
    """A table that cannot be analysed; one line naming the file and the column."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as a DataFrame (one row per run)."""
    import pandas as pd

    p = Path(path)
    kind = TABLE_TYPES.get(p.suffix.lower())
    if not p.is_file():
        raise TableError(f"{p}: no such file")
    if kind is None:
        raise TableError(f"{p}: unsupported file type {p.suffix!r}; allowed: "
                         f"{', '.join(TABLE_TYPES)}")
    try:
        if kind == "parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p, sep="\t" if kind == "tsv" else ",")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        text = " ".join(str(exc).split())[:120]
        raise TableError(f"{p}: cannot read as {kind}: {text}") from None


def bare(column: str) -> str:
    """``params.lr`` → ``lr``; other names as they are."""
    for prefix in PREFIXES:
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def resolve_column(frame: pd.DataFrame, name: str, source: str, what: str) -> str:
    """The table's column that ``name`` means: itself, else ``params.NAME``,
    ``metrics.NAME`` or ``tags.NAME``."""
    columns = [str(c) for c in frame.columns]
    if name in columns:
        return name
    found = [p + name for p in PREFIXES if p + name in columns]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise TableError(f"{source}: {what} {name!r} is ambiguous: {', '.join(found)}; "
                         "name one of them")
    shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
    raise TableError(f"{source}: {what} {name!r}: no such column; columns: {shown}")


def _missing_row(frame: pd.DataFrame, column: str) -> int | None:
    missing = frame[column].isna().to_numpy()
    return int(missing.argmax()) + 1 if missing.any() else None


def _text(value: Any) -> str | None:
    """A table cell as text; None when empty (pandas reads an empty cell as NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return str(value)


def _seeds(frame: pd.DataFrame, column: str | None, source: str) -> list[int]:
    if column is None:
        return list(range(len(frame)))
    out = []
    for i, value in enumerate(frame[column].tolist()):
        try:
            seed = int(value)
            if seed != float(value):
                raise ValueError
        except (TypeError, ValueError):
            raise TableError(f"{source}: column {column!r}: seed {value!r} (data row "
                             f"{i + 1}) is not an integer") from None
        out.append(seed)
    return out


def _statuses(frame: pd.DataFrame) -> list[str]:
    column = next((c for c in frame.columns if str(c) in ("status", "tags.status")), None)
    if column is None:
        return ["done"] * len(frame)
    return [STATUS.get(str(v).strip().lower(), "failed") for v in frame[column].tolist()]


def table_inputs(
    frame: pd.DataFrame,
    factors: list[str],
    metric: str,
    seed: str | None = None,
    source: str = "<table>",
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The analysis' inputs from a table: ``info`` (as ``study.json`` gives it: factors,
    columns, the declared metric left to the caller) and one index row per run (variant
    values, seed, status, final figures); and the metric's name as the runs record it."""
    factor_cols, metric_col, seed_col = _columns(frame, factors, metric, seed, source)
    statuses = _statuses(frame)
    for col in [*factor_cols, *([] if seed_col is None else [seed_col])]:
        row = _missing_row(frame, col)
        if row is not None:
            raise TableError(f"{source}: column {col!r} has missing values (first at data row "
                             f"{row})")
    values = _metric_values(frame, metric_col, [s == "done" for s in statuses], source)
    names = [bare(c) for c in factor_cols]
    if len(set(names)) != len(names):
        names = factor_cols
    for col in factor_cols:
        levels = frame[col].map(str).unique().tolist()
        if len(levels) < 2:
            raise TableError(f"{source}: factor column {col!r} has one level ({levels[0]!r}); "
                             "a factor needs at least two")
    metric_name = bare(metric_col)
    rows = _run_rows(frame, factor_cols, names, seed_col, statuses, (metric_name, values),
                     source)
    _check_enough_runs(rows, names, source)
    info = {
        "name": Path(source).stem if not source.startswith("<") else "external results",
        "description": f"Runs read from {source}.",
        # not config paths (no training config is known): the table's columns
        "factors": [[f"{TABLE_PATH}{name}"] for name in names],
        "columns": {f"{TABLE_PATH}{name}": name for name in names},
        "roles": [role_of(name) for name in names],
        "equivalence_margin": None,
    }
    return info, rows, metric_name


def _columns(
    frame: pd.DataFrame, factors: list[str], metric: str, seed: str | None, source: str
) -> tuple[list[str], str, str | None]:
    """The factor, metric and seed columns the names mean (the seed: the one named, else
    ``seed`` / ``params.seed`` when the table has one, else None)."""
    if len(frame) < 2:
        raise TableError(f"{source}: {len(frame)} row(s); a comparison needs runs (rows) of "
                         "at least two variants")
    factor_cols = [resolve_column(frame, f, source, "factor") for f in factors]
    if not factor_cols:
        raise TableError(f"{source}: name at least one factor column (--factor COL)")
    if len(set(factor_cols)) != len(factor_cols):
        raise TableError(f"{source}: a factor is named twice: {', '.join(factor_cols)}")
    metric_col = resolve_column(frame, metric, source, "metric")
    if metric_col in factor_cols:
        raise TableError(f"{source}: column {metric_col!r} cannot be both the metric and a "
                         "factor")
    seed_col = None
    if seed is not None:
        seed_col = resolve_column(frame, seed, source, "seed")
    elif "seed" in frame.columns or "params.seed" in frame.columns:
        seed_col = resolve_column(frame, "seed", source, "seed")
    return factor_cols, metric_col, seed_col


def _metric_values(
    frame: pd.DataFrame, metric_col: str, done: list[bool], source: str
) -> pd.Series:
    """The metric column as numbers; a value that is not a number, or a finished run
    without one, is an error."""
    values = frame[metric_col]
    if values.dtype.kind not in "biuf":
        import pandas as pd

        converted = pd.to_numeric(values, errors="coerce")
        bad = [v for v, c in zip(values.tolist(), converted.tolist(), strict=True)
               if c != c and v == v]
        if bad:
            raise TableError(f"{source}: column {metric_col!r} is not numeric (e.g. "
                             f"{bad[0]!r})")
        values = converted
    for i, (value, finished) in enumerate(zip(values.tolist(), done, strict=True)):
        if finished and (value is None or not math.isfinite(float(value))):
            raise TableError(f"{source}: column {metric_col!r} has missing values (first at "
                             f"data row {i + 1})")
    return values


def _run_rows(
    frame: pd.DataFrame, factor_cols: list[str], names: list[str], seed_col: str | None,
    statuses: list[str], metric: tuple[str, pd.Series], source: str,
) -> list[dict[str, Any]]:
    """One index row per table row; two rows of one variant and seed are an error.
    ``metric`` is the metric's name and its values as numbers."""
    metric_name, values = metric
    figure_cols = [c for c in frame.columns
                   if c not in factor_cols and c != seed_col and str(c) not in _NOT_FIGURES
                   and frame[c].dtype.kind in "biuf" and frame[c].dtype.kind != "b"]
    seeds = _seeds(frame, seed_col, source)
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], int] = {}
    for i, (record, seed_value, status) in enumerate(zip(frame.to_dict("records"), seeds,
                                                         statuses, strict=True)):
        variant = {name: str(record[col]) for col, name in zip(factor_cols, names,
                                                                   strict=True)}
        label = ", ".join(f"{k}={v}" for k, v in variant.items())
        key = (label, seed_value)
        if key in seen:
            raise TableError(f"{source}: data rows {seen[key]} and {i + 1} are both "
                             f"{label}, {seed_col or 'seed'}={seed_value}; one row per run")
        seen[key] = i + 1
        final: dict[str, Any] = {}
        if status == "done":
            final = _final_figures(record, figure_cols, metric_name, float(values.iloc[i]))
        rows.append({
            "run_id": str(record.get("run_id") or f"row{i + 1}"),
            "variant_id": label,
            "variant_label": label,
            "variant": variant,
            "seed": seed_value,
            "config": {},
            "status": status,
            "final": final,
            "error": _text(record.get("error")) if status == "failed" else None,
            "diverged_epoch": None,
            "metrics": {k: final.get(k) for k in ("convergence_epoch", "stability",
                                                   "overfit_gap")},
        })
    return rows


def _final_figures(
    record: dict[str, Any], figure_cols: list[Any], metric_name: str, metric_value: float
) -> dict[str, Any]:
    """A finished run's figures: each numeric column's value under its bare name, the
    metric's value, and ``at_chance`` where the table says it."""
    final: dict[str, Any] = {}
    for col in figure_cols:
        value = record[col]
        if value is not None and value == value:
            final[bare(str(col))] = float(value)
    final[metric_name] = metric_value
    chance = record.get("at_chance")
    if isinstance(chance, bool):
        final["at_chance"] = chance
    return final


def _check_enough_runs(rows: list[dict[str, Any]], names: list[str], source: str) -> None:
    """At least two variants with at least two finished runs each."""
    per_variant: dict[str, int] = {}
    for row in rows:
        if row["status"] == "done":
            per_variant[row["variant_label"]] = per_variant.get(row["variant_label"], 0) + 1
    if len(per_variant) < 2 or max(per_variant.values()) < 2:
        raise TableError(f"{source}: too few finished runs to compare ({len(per_variant)} "
                         f"variant(s) of {', '.join(names)}, at most "
                         f"{max(per_variant.values(), default=0)} run(s) each); a comparison "
                         "needs two variants with at least 2 runs (seeds) each")


def analyze_table(
    frame: pd.DataFrame,
    factors: list[str],
    metric: str,
    *,
    seed: str | None = None,
    goal: str | None = None,
    range: tuple[float, float] | list[float] | None = None,  # noqa: A002 - the CLI's word
    source: str = "<table>",
) -> StudyAnalysis:
    """The analysis of a table of runs (see the module's documentation): the metric is
    the study's declared outcome (``goal`` "max" / "min" and ``range`` [low, high] where
    given; a built-in metric's name keeps its own)."""
    from ablab.analysis.study_analysis import analyze_runs

    if goal is not None and goal not in ("max", "min"):
        raise TableError(f"--goal: {goal!r}; allowed: max, min")
    if range is not None:
        low, high = (float(v) for v in range)
        if not low < high:
            raise TableError(f"--range: [{low}, {high}]; give LOW HIGH with LOW < HIGH")
    info, rows, name = table_inputs(frame, list(factors), metric, seed, source)
    spec: dict[str, Any] = {"name": name}
    if goal is not None:
        spec["goal"] = goal
    if range is not None:
        spec["range"] = [float(v) for v in range]
    info["metric"] = spec
    text = (f"# ablab analyze {source} " + " ".join(f"--factor {f}" for f in factors)
            + f" --metric {metric}" + (f" --seed {seed}" if seed else "")
            + (f" --goal {goal}" if goal else "")
            + (f" --range {range[0]} {range[1]}" if range is not None else ""))
    return analyze_runs(info, rows, None, study_text=text)


def write_outputs(a: StudyAnalysis, out: str | Path) -> dict[str, Path]:
    """results.csv, summary.csv, report.html and report.md (+ figures/) in ``out``."""
    from ablab.report.writer import (
        FIGURE_DIR,
        render_figures,
        render_html,
        render_markdown,
        report_context,
    )
    from ablab.store import atomic_write_text

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise TableError(f"--out {root}: is a file; give a folder")
    root.mkdir(parents=True, exist_ok=True)
    paths = {"results": root / "results.csv", "summary": root / "summary.csv",
             "html": root / "report.html", "markdown": root / "report.md"}
    atomic_write_text(paths["results"], a.runs.to_csv(index=False))
    atomic_write_text(paths["summary"], a.summary.to_csv(index=False))
    figures = render_figures(a, root / FIGURE_DIR)
    context = report_context(a, figures)
    atomic_write_text(paths["html"], render_html(context))
    atomic_write_text(paths["markdown"], render_markdown(context))
    return paths


def analyze(
    data: pd.DataFrame | str | Path,
    factors: list[str] | str,
    metric: str,
    *,
    seed: str | None = None,
    goal: str | None = None,
    range: tuple[float, float] | list[float] | None = None,  # noqa: A002 - the CLI's word
    out: str | Path | None = None,
) -> StudyAnalysis:
    """ablab's verdicts on runs produced anywhere: ``data`` a DataFrame (one row per run)
    or the path of a CSV / Parquet file; ``factors`` the columns that vary; ``metric`` the
    column judged (``goal`` "max" or "min", ``range`` its bounds); ``seed`` the seed
    column (pairs runs across variants). With ``out``, writes results.csv, summary.csv
    and the report there. Returns the analysis (``.verdicts``, ``.comparisons``,
    ``.warnings``).

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"width": [8] * 4 + [64] * 4, "seed": [0, 1, 2, 3] * 2,
    ...                      "r2": [.41, .40, .43, .42, .52, .50, .53, .51]})
    >>> analyze(runs, factors=["width"], metric="r2", seed="seed").verdicts[0][:20]
    'width=64 beats width='
    """
    if isinstance(data, (str, Path)):
        source = str(data)
        frame = read_table(data)
    else:
        source, frame = "<dataframe>", data
    factors = [factors] if isinstance(factors, str) else list(factors)
    a = analyze_table(frame, factors, metric, seed=seed, goal=goal, range=range,
                      source=source)
    if out is not None:
        write_outputs(a, out)
    return a

"""The study's tables: ``summary.csv`` (one row per variant: each metric's mean, std and
intervals) and ``results.csv`` (one row per run), the same the report shows, with the
outcomes they carry beyond the built-in classification metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ablab.analysis.outcomes import outcome_of, scale_of, study_outcomes
from ablab.analysis.runs import METRICS, Variant, build_factors, build_variants
from ablab.analysis.stats import describe, metric_scale
from ablab.analysis.variance import without_design_runs

#: Per-run figures summarized per variant beside the metrics: what a run cost.
COST_FIELDS = ("epochs_run", "seconds")
#: A regression run's final figures (``task = "regression"``): in results.csv and
#: summary.csv when a study's runs record them (absent from a classification study's).
REGRESSION_FIELDS = ("test_rmse", "test_mae", "test_r2", "test_mse", "best_val_rmse")


def regression_fields(variants: list[Variant]) -> tuple[str, ...]:
    recorded = any("test_rmse" in (r.get("final") or {}) for v in variants for r in v.done)
    return REGRESSION_FIELDS if recorded else ()


def _cost(v: Variant, name: str) -> list[float]:
    out = []
    for row in v.done:
        value = (row.get("final") or {}).get(name)
        if value is None and name == "seconds":
            value = row.get("seconds")
        if value is not None:
            out.append(float(value))
    return out


def summary_table(
    variants: list[Variant], columns: list[str], extra: tuple = ()
) -> pd.DataFrame:
    """Per variant: counts by status, then for each metric (and each cost field) n, mean,
    std, t CI and (for small or skewed samples) a bootstrap CI, over ``done`` runs only;
    ``extra``: outcomes beyond the built-in metrics (a declared primary one), first.
    ``summary.csv`` is this table."""
    records = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.label, **{c: v.values.get(c) for c in columns}}
        row.update(
            runs=len(v.runs),
            done=len(v.done),
            diverged=len(v.with_status("diverged")),
            failed=len(v.with_status("failed")),
            pending=len(v.with_status("pending", "running")),
            at_chance=len(v.at_chance),
        )
        samples = {o.name: v.values_of(o.name) for o in extra}
        samples |= {m: v.values_of(m) for m in METRICS} | {c: _cost(v, c) for c in COST_FIELDS}
        scales = {o.name: scale_of(o) for o in extra}
        for metric, values in samples.items():
            d = describe(values, scale=scales.get(metric) or metric_scale(metric))
            for key in ("n", "mean", "std", "ci_low", "ci_high", "boot_low", "boot_high"):
                row[f"{metric}_{key}"] = d[key]
            row[f"{metric}_ci_method"] = d["ci_method"]
        records.append(row)
    return pd.DataFrame.from_records(records)


def runs_table(variants: list[Variant], columns: list[str],
               extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per run, plan order within variants: factors, seed, status, metrics, cost
    (``extra``: further final figures, see :func:`extra_fields`). ``results.csv`` is this
    table."""
    records = []
    for v in variants:
        for row in v.runs:
            final = row.get("final") or {}
            record = {"run_id": row["run_id"], **{c: v.values.get(c) for c in columns}}
            record.update(seed=row["seed"], status=row["status"])
            record.update(v.run_metrics.get(row["run_id"], {}))
            record.update((k, final.get(k)) for k in extra)
            record.update(
                test_f1=final.get("test_f1"),
                best_val_epoch=final.get("best_val_epoch"),
                at_chance=final.get("at_chance"),
                epochs_run=final.get("epochs_run"),
                seconds=final.get("seconds") or row.get("seconds"),
                diverged_epoch=row.get("diverged_epoch"),
                error=(row.get("error") or "").strip().splitlines()[-1][:200]
                if row.get("error") else None,
                variant=v.label,
            )
            records.append(record)
    return pd.DataFrame.from_records(records)


def study_tables(
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    records: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, summary table) exactly as :func:`analyze_runs` builds them, without
    the comparisons (what ``results.csv`` and ``summary.csv`` hold)."""
    rows = without_design_runs(info, rows)  # a variance design's extra runs: their own table
    factors = build_factors(info, rows)
    columns = [c for f in factors for c in f.columns]
    variants = build_variants(rows, records)
    extra = extra_outcomes(info, variants)
    return (runs_table(variants, columns, tuple(o.name for o in extra)),
            summary_table(variants, columns, extra))


def regression_default(info: dict[str, Any], variants: list[Variant]) -> dict[str, Any]:
    """A regression study that declares no ``metric`` is judged on test R² (with test
    RMSE beside it): it has no accuracy."""
    if info.get("metric") or not regression_fields(variants):
        return info
    return {**info, "metric": {"name": "test_r2"},
            "outcomes": info.get("outcomes") or ["test_rmse"]}


def _extra(info: dict[str, Any]) -> tuple:
    """A declared primary outcome that is not a built-in metric: summarised first."""
    primary = study_outcomes(info).primary
    return () if primary.name in METRICS or primary.name in COST_FIELDS else (primary,)


def extra_outcomes(info: dict[str, Any], variants: list[Variant]) -> tuple:
    """The outcomes results.csv and summary.csv carry beyond the built-in loop's
    classification metrics: the declared primary one (first), then a regression study's
    RMSE, MAE, R², MSE and best validation RMSE."""
    extra = list(_extra(regression_default(info, variants)))
    names = {o.name for o in extra}
    extra += [outcome_of(n) for n in regression_fields(variants) if n not in names]
    return tuple(extra)

"""Per-run and per-variant tables (``results.csv``, ``summary.csv``).

Only runs that finished (``done``) enter means; diverged, failed and at-chance runs are
counted in their own columns so they are never averaged in silently.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

RESULT_METRICS = (
    "test_accuracy",
    "test_loss",
    "test_cross_entropy",
    "test_f1",
    "best_val_accuracy",
    "best_val_epoch",
    "epochs_run",
    "seconds",
)
SUMMARY_METRICS = (
    "test_accuracy",
    "test_loss",
    "test_cross_entropy",
    "best_val_accuracy",
    "epochs_run",
    "seconds",
)


def mean_ci(values, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and a t-based confidence interval of the mean.

    >>> mean_ci([1.0, 2.0, 3.0])["ci_low"] < 2.0 < mean_ci([1.0, 2.0, 3.0])["ci_high"]
    True
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _scaled_ci(metric: str, values: pd.Series) -> tuple[float, float]:
    from ablab.analysis.stats import mean_ci_in_scale, metric_scale  # stats imports us

    return mean_ci_in_scale(values.dropna().astype(float).tolist(), metric_scale(metric))


def results_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """One row per run: id, one column per varied factor, seed, status, final metrics."""
    records = []
    for row in rows:
        final = row.get("final") or {}
        record = {"run_id": row["run_id"]}
        for column in columns:
            record[column] = (row.get("variant") or {}).get(column)
        record.update(seed=row["seed"], status=row["status"])
        for metric in RESULT_METRICS:
            record[metric] = final.get(metric)
        record["at_chance"] = final.get("at_chance")
        record["diverged_epoch"] = row.get("diverged_epoch")
        record["error"] = row.get("error")
        record["variant"] = row["variant_label"]
        records.append(record)
    return pd.DataFrame.from_records(records)


def summary_frame(results: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per variant: counts by status, then n / mean / std / 95 % CI per metric."""
    out = []
    if results.empty:
        return pd.DataFrame()
    for variant, group in results.groupby("variant", sort=False):
        first = group.iloc[0]
        record: dict[str, Any] = {"variant": variant}
        for column in columns:
            record[column] = first[column]
        done = group[group["status"] == "done"]
        record.update(
            runs=len(group),
            done=len(done),
            diverged=int((group["status"] == "diverged").sum()),
            failed=int((group["status"] == "failed").sum()),
            pending=int(group["status"].isin(["pending", "running"]).sum()),
            at_chance=int(done["at_chance"].fillna(False).astype(bool).sum()),
        )
        for metric in SUMMARY_METRICS:
            summary = mean_ci(done[metric].dropna().astype(float).tolist())
            # the interval on the metric's own scale (accuracies in [0, 1], losses > 0)
            summary["ci_low"], summary["ci_high"] = _scaled_ci(metric, done[metric])
            record[f"{metric}_n"] = summary["n"]
            for key in ("mean", "std", "ci_low", "ci_high"):
                record[f"{metric}_{key}"] = summary[key]
        out.append(record)
    return pd.DataFrame.from_records(out)

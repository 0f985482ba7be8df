"""What both exporters share: the stored runs with their records, flattened configs."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablab.errors import UserError
from ablab.store import StudyStore

#: Per-epoch history keys exported as metrics (``step = epoch``).
HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_cross_entropy",
    "lr",
)


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise one clear line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"export to {extra} needs the optional '{extra}' extra: "
            f"pip install 'ablab[{extra}]'"
        ) from None


@dataclass
class ExportedRun:
    run_id: str
    label: str  # "activation=relu, seed=0"
    variant: dict[str, Any]
    seed: int
    status: str
    record: dict[str, Any]


def stored_runs(store: StudyStore) -> Iterator[ExportedRun]:
    """Every run of the study with a record (done or diverged), in plan order."""
    for row in store.rows():
        if row["status"] not in ("done", "diverged"):
            continue
        record = store.load_record(row["run_id"])
        if record is None:
            continue
        prefix = f"{row['variant_label']}, " if row["variant_label"] else ""
        yield ExportedRun(
            row["run_id"],
            f"{prefix}seed={row['seed']}",
            row["variant"] or {},
            int(row["seed"]),
            row["status"],
            record,
        )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"name": "adam", "lr": 0.01}}`` → ``{"optimizer.name": "adam",
    "optimizer.lr": 0.01}``; lists are kept as values (``model.hidden = [16, 8]``), a list
    of tables (probes) by index: ``probes.0.name``."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{i}"))
    else:
        out[prefix] = data
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def history_metrics(record: dict[str, Any]) -> Iterator[tuple[str, int, float]]:
    """(key, epoch, value) for each finite per-epoch metric."""
    for row in record.get("history") or []:
        for key in HISTORY_KEYS:
            value = _number(row.get(key))
            if value is not None:
                yield key, int(row["epoch"]), value


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numeric final metrics (test accuracy, losses, best validation accuracy, ...);
    lists (the confusion matrix) and missing values are left out."""
    out = {}
    for key, value in (record.get("final") or {}).items():
        number = _number(value)
        if number is not None:
            out[key] = number
    return out


def report_files(root: Path) -> list[Path]:
    return [p for p in (root / "report.html", root / "report.md") if p.exists()]

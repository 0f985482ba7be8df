"""``ablab export DIR --to mlflow``: one MLflow experiment per study.

The experiment is named after the study. A parent run (tag ``ablab.kind = study``)
carries the report (``report.html``, ``report.md``), ``results.csv``, ``summary.csv``
and the study file as artifacts; each stored run becomes a nested run (tag
``mlflow.parentRunId``) with

* params: its resolved config flattened to dotted keys (``optimizer.lr``);
* per-epoch metrics (``train_loss``, ``val_accuracy``, ``lr``, ...) with ``step=epoch``;
* final metrics (``test_accuracy``, ``test_cross_entropy``, ``best_val_accuracy``, ...);
* tags ``ablab.run_id``, ``ablab.status``, ``ablab.seed`` and one per varied factor;
* artifacts ``record.json`` and, when kept, ``weights.safetensors``.

Exporting again adds only runs not exported yet (matched by ``ablab.run_id``) and
refreshes the report. Any tracking URI MLflow accepts works: ``sqlite:///mlflow.db``
(MLflow's default), ``http://host:5000``, ...
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ablab.errors import UserError
from ablab.export.common import (
    final_metrics,
    flatten,
    history_metrics,
    report_files,
    require,
    stored_runs,
)
from ablab.store import StudyStore

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
BATCH_METRICS, BATCH_PARAMS = 1000, 100  # MLflow's log_batch limits


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def export_mlflow(
    out: str | Path, tracking_uri: str | None = None, experiment: str | None = None
) -> dict[str, Any]:
    """Log every stored run of the study in ``out`` to MLflow (see the module doc).
    Returns ``{"experiment", "experiment_id", "tracking_uri", "parent_run_id",
    "exported", "skipped"}``."""
    mlflow = require("mlflow", "mlflow")
    from mlflow.exceptions import MlflowException

    with StudyStore.existing(out) as store:
        info = store.study_info()
        name = experiment or info["name"]
        tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        try:
            return _export(store, info, name, tracking_uri)
        except MlflowException as exc:
            first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
            raise UserError(f"mlflow ({tracking_uri}): "
                            f"{first[0] if first else type(exc).__name__}") from None


def _export(store: StudyStore, info: dict[str, Any], name: str, tracking_uri: str):
    """The study's experiment, its parent run and files, then every stored run not
    exported yet as a nested run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment(client, name)
    parent_id = _parent_run(client, experiment_id, name, info)
    _log_study_files(client, parent_id, store.root)
    done = {
        r.data.tags.get("ablab.run_id")
        for r in _search_all(client, experiment_id, "tags.`ablab.kind` = 'run'")
    }
    exported = skipped = 0
    now = int(time.time() * 1000)
    for run in stored_runs(store):
        if run.run_id in done:
            skipped += 1
            continue
        _export_run(client, store, experiment_id, parent_id, name, run, now)
        exported += 1
    return {
        "experiment": name,
        "experiment_id": experiment_id,
        "tracking_uri": tracking_uri,
        "parent_run_id": parent_id,
        "exported": exported,
        "skipped": skipped,
    }


def _experiment(client, name: str) -> str:
    """The id of the experiment named ``name``: created, or restored when deleted."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, tags={"ablab.study": name})
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _parent_run(client, experiment_id: str, name: str, info: dict[str, Any]) -> str:
    """The id of the study's parent run (tag ``ablab.kind = study``), created with the
    study's description, seeds and factors as params the first time."""
    from mlflow.entities import Param

    parents = _search_all(client, experiment_id, "tags.`ablab.kind` = 'study'")
    if parents:
        return parents[0].info.run_id
    parent = client.create_run(
        experiment_id, run_name=name, tags={"ablab.kind": "study", "ablab.study": name}
    )
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[
        Param("description", _param_value(info.get("description") or "")),
        Param("seeds", _param_value(info.get("seeds"))),
        Param("factors", _param_value(info.get("factors"))),
    ])
    client.set_terminated(parent_id)
    return parent_id


def _log_study_files(client, parent_id: str, root: Path) -> None:
    """The report, the tables, the study file and the figures on the parent run (again on
    every export: they change as runs are added)."""
    for path in [*report_files(root), root / "results.csv", root / "summary.csv",
                 root / "study.toml"]:
        if path.exists():
            client.log_artifact(parent_id, str(path))
    figures = root / "figures"
    if figures.is_dir():
        client.log_artifacts(parent_id, str(figures), artifact_path="figures")


def _export_run(
    client, store: StudyStore, experiment_id: str, parent_id: str, name: str, run, now: int
) -> None:
    """One stored run as a nested run: tags, its config as params, its history and final
    figures as metrics, its record and (when kept) its weights as artifacts."""
    from mlflow.entities import Metric, Param

    tags = {
        "mlflow.parentRunId": parent_id,
        "ablab.kind": "run",
        "ablab.study": name,
        "ablab.run_id": run.run_id,
        "ablab.status": run.status,
        "ablab.seed": str(run.seed),
    }
    tags.update({f"ablab.variant.{k}": str(v) for k, v in run.variant.items()})
    created = client.create_run(experiment_id, run_name=run.label, tags=tags)
    mid = created.info.run_id
    params = [Param(k, _param_value(v)) for k, v in flatten(run.record["config"]).items()]
    metrics = [Metric(k, v, now, step) for k, step, v in history_metrics(run.record)]
    last = int((run.record.get("final") or {}).get("epochs_run") or 0)
    metrics += [Metric(k, v, now, last) for k, v in final_metrics(run.record).items()]
    for i in range(0, len(params), BATCH_PARAMS):
        client.log_batch(mid, params=params[i : i + BATCH_PARAMS])
    for i in range(0, len(metrics), BATCH_METRICS):
        client.log_batch(mid, metrics=metrics[i : i + BATCH_METRICS])
    _log_run_files(client, store, mid, run)
    client.set_terminated(mid, status="FINISHED" if run.status == "done" else "FAILED")


def _log_run_files(client, store: StudyStore, mid: str, run) -> None:
    """``record.json`` and, when kept, ``weights.safetensors`` (stable artifact names)."""
    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "record.json"
        record_path.write_text(json.dumps(run.record, indent=1))
        client.log_artifact(mid, str(record_path))
    weights = store.weights_path(run.run_id)
    if weights.exists():
        with tempfile.TemporaryDirectory() as tmp:  # a stable artifact name
            target = Path(tmp) / "weights.safetensors"
            target.write_bytes(weights.read_bytes())
            client.log_artifact(mid, str(target))

"""Bringing a study directory's plan up to the study file before a run trains: new runs,
probes turned on, weights now asked for, data files that changed. Runs under the
directory's lock (:func:`ablab.runner.run_study` holds it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ablab import identity
from ablab.store import StudyStore
from ablab.study import Study


def sync_directory(
    store: StudyStore, study: Study, datasets: list[dict[str, Any]],
    force_new_variants: bool, rerun_changed: bool, say: Callable[[str], None],
) -> dict[str, Any]:
    """Bring the directory's plan up to the study (new runs, probes turned on, weights
    asked for, data changed); returns the fingerprints of the data files it reads."""
    data_files, changed = _data_identity(store, study, datasets, rerun_changed)
    more_probes = _probes_added(store, study)
    if more_probes:
        say(more_probes)
    store.sync_plan(study, force_new_variants=force_new_variants or bool(more_probes))
    for note in _requeue_for_artefacts(store, study):
        say(note)
    if changed:
        store.requeue(changed)
        say(f"re-training {len(changed)} stored runs whose data changed (--rerun-changed)")
    store.set_meta("data_files", json.dumps(data_files))
    return data_files


def _data_identity(
    store: StudyStore, study: Study, datasets: list[dict[str, Any]], rerun_changed: bool
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The fingerprints of the files the study reads (stored in the index as meta
    ``data_files``; each record gets its own), and the finished runs to train again
    because their files changed (only with ``rerun_changed``; else refused, before the
    directory's study files are touched)."""
    from ablab.data.fingerprint import (
        DataChangedError,
        changed_files,
        dataset_key,
        fingerprints,
    )

    known = json.loads(store.meta("data_files") or "{}")
    now = fingerprints(datasets, known)
    changed = changed_files(known, now)
    if not changed:
        return {**known, **now}, {}
    planned = {r.run_id: r for r in study.runs}
    stale = [
        r for r in store.rows()
        if r["status"] in ("done", "diverged") and r["config"].get("dataset") is not None
        and dataset_key(r["config"]["dataset"]) in changed
    ]
    if stale and not rerun_changed:
        key = next(dataset_key(r["config"]["dataset"]) for r in stale)
        raise DataChangedError(
            f"{changed[key][0]}: changed since these runs ({len(stale)} stored runs read it): "
            f"use a new --out, or --rerun-changed"
        )
    again = {r["run_id"]: planned[r["run_id"]].config.resolved()
             for r in stale if r["run_id"] in planned}
    return {**known, **now}, again


def _without_probes(config: dict[str, Any]) -> str:
    ident = identity.identity(config)
    ident.pop("probes", None)
    return json.dumps(ident, sort_keys=True)


def _probes_added(store: StudyStore, study: Study) -> str | None:
    """Probes are part of a run's identity, so turning one on plans new run ids. When that
    is the only change (every stored run has a planned run equal but for its probes, which
    add to the stored ones), the new runs are the stored ones asking for more: accepted
    (the old ones set aside, kept on disk) and said in one line."""
    if not store.db_path.exists():
        return None
    stored = {r["run_id"]: r for r in store.rows()}
    planned = {r.run_id: r for r in study.runs}
    if not stored or set(stored) == set(planned):
        return None
    new = [r for rid, r in planned.items() if rid not in stored]
    gone = {_without_probes(r["config"]): r for rid, r in stored.items() if rid not in planned}
    if len(new) != len(gone):
        return None
    for run in new:
        old = gone.get(_without_probes(run.config.resolved()))
        if old is None:
            return None
        had = {json.dumps(p, sort_keys=True) for p in old["config"].get("probes") or []}
        wants = {json.dumps(p, sort_keys=True) for p in run.config.resolved()["probes"]}
        if not had < wants:
            return None
    return (
        f"re-training {len(new)} stored runs with the same seeds: the study file turns on "
        "probes they did not record (the old runs are set aside, not deleted)"
    )


def _requeue_for_artefacts(store: StudyStore, study: Study) -> list[str]:
    """Finished runs whose kept weights the study file now asks for (``keep``, which is
    not part of a run's identity) go back to pending; one line says so."""
    rows = {r["run_id"]: r for r in store.rows()}
    again: dict[str, dict[str, Any]] = {}
    for run in study.runs:
        keep = run.config.keep
        row = rows.get(run.run_id)
        if keep == "none" or row is None or row["status"] != "done":
            continue
        record = store.load_record(run.run_id) or {}
        kept = (record.get("config") or {}).get("keep", "none")
        if kept != keep or not store.weights_path(run.run_id).is_file():
            again[run.run_id] = run.config.resolved()
    if not again:
        return []
    store.requeue(again)
    return [
        f"re-training {len(again)} stored runs with the same seeds: the study file asks "
        f'for weights they did not keep (keep = "{study.runs[0].config.keep}")'
    ]

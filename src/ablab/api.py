"""The Python API: run a study into a directory, read it back. The CLI is a thin layer
over these functions.

    >>> study = load_study("moons-circles-activations", seeds=1)   # doctest: +SKIP
    >>> outcome = run_study(study, "out/moons", workers=2)           # doctest: +SKIP
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ablab.analysis import results_frame, summary_frame
from ablab.errors import UserError
from ablab.execute import Event, Task, make_executor, plan_workers
from ablab.store import StudyStore, atomic_write_text
from ablab.study import Study, load_study

__all__ = [
    "StudyInterrupted",
    "StudyOutcome",
    "Terminated",
    "load_study",
    "run_study",
    "sigterm_as_interrupt",
    "write_tables",
]


class StudyInterrupted(UserError):
    """Ctrl-C or SIGTERM: running runs were put back to pending; nothing done is lost.

    ``signum`` is the signal that stopped the study; the CLI exits with ``128 + signum``
    (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process that signal ended."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so both stop a study the same
    way (``except KeyboardInterrupt`` catches both)."""


class Progress(Protocol):
    def start(self, total: int, already_done: int, workers: int, threads: int) -> None: ...
    def on_event(self, event: Event) -> None: ...
    def stop(self) -> None: ...


@dataclass
class StudyOutcome:
    out: Path
    counts: dict[str, int]
    ran: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)
    workers: int = 1
    threads: int = 1

    @property
    def exit_code(self) -> int:
        """0: every run done; 1: some failed or diverged (the rest are complete)."""
        bad = self.counts.get("failed", 0) + self.counts.get("diverged", 0)
        return 1 if bad or self.counts.get("pending", 0) else 0


def write_tables(store: StudyStore) -> dict[str, Path]:
    """(Re)write results.csv and summary.csv from the index."""
    info = store.study_info()
    columns = list(dict.fromkeys(info["columns"].values()))
    results = results_frame(store.rows(), columns)
    summary = summary_frame(results, columns)
    paths = {"results": store.root / "results.csv", "summary": store.root / "summary.csv"}
    atomic_write_text(paths["results"], results.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    return paths


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM stops a study the way Ctrl-C does: it raises :class:`Terminated` (a
    KeyboardInterrupt). Yields the list of signals received. Outside the main thread,
    where Python cannot set handlers, it does nothing."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(
    study: Study | str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    force_new_variants: bool = False,
    progress: Progress | None = None,
    report: bool = True,
) -> StudyOutcome:
    """Train every run of ``study`` that ``out`` does not already hold, then write the
    tables (and the report). Resumable: a second call runs only what is left."""
    if not isinstance(study, Study):
        study = load_study(study)
    store = StudyStore(out)
    failures: list[tuple[str, str]] = []
    with store.locked():
        store.sync_plan(study, force_new_variants=force_new_variants)
        todo = store.prepare(retry_failed=retry_failed)
        runs = {r.run_id: r for r in study.runs}
        tasks = [Task(rid, runs[rid].label, runs[rid].config.resolved()) for rid in todo]
        n_workers, n_threads = plan_workers(tasks, workers, threads)
        running: set[str] = set()
        write_tables(store)

        def on_event(event: Event) -> None:
            rid = event.task.run_id
            if event.kind == "started":
                store.mark_running(rid)
                running.add(rid)
            elif event.kind == "done":
                store.record_result(event.record)
                running.discard(rid)
                write_tables(store)
            elif event.kind == "failed":
                store.record_failure(rid, event.error or "unknown error")
                running.discard(rid)
                failures.append((event.task.label, event.error or "unknown error"))
                write_tables(store)
            if progress is not None:
                progress.on_event(event)

        if progress is not None:
            total = len(study.runs)
            progress.start(total, total - len(tasks), n_workers, n_threads)
        try:
            if tasks:
                with sigterm_as_interrupt():
                    make_executor(executor, n_workers, n_threads, address).run(tasks, on_event)
        except KeyboardInterrupt as exc:
            signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
            store.mark_pending(sorted(running))
            write_tables(store)
            counts = store.counts()
            left = counts["pending"] + counts["running"]
            raise StudyInterrupted(
                f"interrupted: {counts['done']} runs done, {left} left; "
                f"run the same command again to resume into {store.root}",
                signum,
            ) from None
        finally:
            if progress is not None:
                progress.stop()
        write_tables(store)
        if report:
            write_report(store)
        counts = store.counts()
        store.close()
    return StudyOutcome(Path(out), counts, len(tasks), failures, n_workers, n_threads)


def write_report(store: StudyStore) -> dict[str, Path]:
    """Write report.html and report.md (with figures/) from what the store holds."""
    from ablab.report import write_report as _write

    return _write(store)


def study_status(out: str | Path) -> dict[str, Any]:
    store = StudyStore.existing(out)
    info = store.study_info()
    counts = store.counts()
    rows = store.rows()
    store.close()
    return {"name": info["name"], "counts": counts, "rows": rows, "total": len(rows)}

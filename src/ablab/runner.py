"""Running: a study into its directory (:func:`run_study`) and one run alone
(:func:`train_run`). The CLI and the notebook API (``ablab.run_study``, ``Study.run``)
are thin layers over these two calls.

    >>> study = load_study("moons-circles-activations", seeds=1)   # doctest: +SKIP
    >>> outcome = run_study(study, "out/moons", workers=2)           # doctest: +SKIP
    >>> outcome = run_study(study, "out/moons",                      # doctest: +SKIP
    ...                     execution=ExecutionOptions(workers=2, retry_failed=True))
    >>> outcome.results.summary                                      # doctest: +SKIP

A study run holds the directory's lock, plans the runs the directory does not hold yet,
trains them with an executor, records each as it finishes (rewriting the tables), and
writes the report at the end. Ctrl-C and SIGTERM stop it the same way: running runs go
back to pending and :class:`StudyInterrupted` says how to resume.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ablab import study as _study
from ablab.directory_sync import sync_directory
from ablab.errors import UserError
from ablab.execute import Event, Task, make_executor, plan_workers, start_server
from ablab.execution_options import ExecutionOptions
from ablab.one_run import train_run
from ablab.results import StudyResults
from ablab.store import StudyStore
from ablab.study_process import (
    Terminated,
    collector_spares_what_is_loaded,
    import_in_background,
    sigterm_as_interrupt,
)

__all__ = [
    "ExecutionOptions",
    "Progress",
    "Study",
    "StudyInterrupted",
    "StudyOutcome",
    "Terminated",
    "run_study",
    "load_study",
    "sigterm_as_interrupt",
    "train_run",
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


class Progress(Protocol):
    """What a progress display implements (see :mod:`ablab.ui`)."""

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None: ...
    def on_event(self, event: Event) -> None: ...
    def stop(self) -> None: ...


@dataclass
class StudyOutcome:
    """What one :func:`run_study` call did; ``results`` opens what the directory holds."""

    out: Path
    counts: dict[str, int]
    ran: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)
    workers: int = 1
    threads: int = 1
    notes: list[str] = field(default_factory=list)  # what this call decided, one line each
    # the analysis the report was written from (None without a report): the CLI prints
    # its verdicts instead of analysing the directory a second time
    analysis: Any = None

    @property
    def exit_code(self) -> int:
        """0: every run done; 1: some failed or diverged (the rest are complete)."""
        bad = self.counts.get("failed", 0) + self.counts.get("diverged", 0)
        return 1 if bad or self.counts.get("pending", 0) else 0

    @property
    def results(self) -> StudyResults:
        return StudyResults(self.out, self)


def _progress(progress: bool | Progress | None, title: str) -> Progress | None:
    """``True``: a notebook-friendly display; ``False`` / ``None``: none; else as given."""
    if progress is True:
        from ablab.ui import study_progress

        return study_progress(title)
    return progress or None


#: While a study runs, results.csv and summary.csv are rewritten at most this often, and
#: never more often than keeps their writing under 1/TABLES_SHARE of the coordinator's
#: time (they are written from the index alone, linear in the runs); always at the start
#: and at the end.
TABLES_EVERY_S = 5.0
TABLES_SHARE = 20.0


class _Recorder:
    """Applies executor events to the store (and passes them to the progress display)."""

    def __init__(self, store: StudyStore, progress: Progress | None):
        self.store = store
        self.progress = progress
        self.running: set[str] = set()
        self.failures: list[tuple[str, str]] = []
        self.tables_written = -math.inf
        self.data_files: dict[str, dict[str, Any]] = {}  # run id → its data's fingerprints
        self.tables_cost = 0.0  # seconds the last table writing took

    def write_tables(self, force: bool = True) -> None:
        from ablab.report import write_tables  # pandas and matplotlib: loaded when used

        now = time.monotonic()
        every = max(TABLES_EVERY_S, TABLES_SHARE * self.tables_cost)
        if force or now - self.tables_written >= every:
            write_tables(self.store)
            self.tables_written = time.monotonic()
            self.tables_cost = self.tables_written - now

    def record(self, record: dict[str, Any]) -> None:
        """Store one finished run with its history-derived metrics (constant cost: one
        record file, one index transaction)."""
        from ablab.analysis import history_metrics

        metrics = history_metrics(record.get("history") or [])
        self.store.record_result(record, metrics=metrics)

    def __call__(self, event: Event) -> None:
        rid = event.task.run_id
        if event.kind == "started":
            self.running.add(rid)  # first: a signal between the two still finds it
            self.store.mark_running(rid)
        elif event.kind == "done":
            if rid in self.data_files:
                event.record["data_files"] = self.data_files[rid]
            self.record(event.record)
            self.running.discard(rid)
            self.write_tables(force=False)
        elif event.kind == "failed":
            reason = event.error or "unknown error"
            self.store.record_failure(rid, reason)
            self.running.discard(rid)
            self.failures.append((event.task.label, reason))
            self.write_tables(force=False)
        if self.progress is not None:
            self.progress.on_event(event)

    def interrupted(self, exc: KeyboardInterrupt) -> StudyInterrupted:
        """Put running runs back to pending; the error that says how to resume."""
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        self.store.end_interrupted_transaction()  # the signal may have cut one short
        # every run the index says is running is this process's (the directory is locked
        # to it), whether or not its "started" event got as far as self.running
        self.store.mark_pending(sorted(self.running | set(self.store.running_ids())))
        self.write_tables()
        counts = self.store.counts()
        left = counts["pending"] + counts["running"]
        return StudyInterrupted(
            f"interrupted: {counts['done']} runs done, {left} left; "
            f"run the same command again to resume into {self.store.root}",
            signum,
        )


#: What the report at the end of a study imports: seconds of CPU on 2 cores, loaded by a
#: thread while the parent otherwise waits for the workers' fork server to import torch.
REPORT_IMPORTS = (
    "scipy.stats", "pandas", "statsmodels.stats.power", "statsmodels.stats.anova",
    "statsmodels.regression.linear_model", "matplotlib.figure",
    "matplotlib.backends.backend_agg", "ablab.analysis", "ablab.report",
)


def run_study(
    study: _study.Study | str | Path,
    out: str | Path,
    *,
    execution: ExecutionOptions | None = None,
    report: bool = True,
    rerun_changed: bool = False,
    svg: bool = False,
    on_line: Callable[[str], Any] | None = None,
    **options: Any,
) -> StudyOutcome:
    """Train every run of ``study`` that ``out`` does not already hold, then write the
    tables (and the report). Resumable: a second call runs only what is left.

    How it executes is ``execution`` (:class:`~ablab.execution_options.ExecutionOptions`),
    or its fields as keywords (``workers=2``, ``progress=True``, ``gpus_per_run=0.5``,
    ...). ``on_line`` is told, one line each, what this call decided before training
    (also kept in the outcome's ``notes``). Runs that fail do not raise: see the
    outcome's ``counts`` and ``failures``."""
    execution = ExecutionOptions.of(execution, **options)
    study = _runnable(study)
    notes: list[str] = []
    say = _collecting(notes, on_line)
    datasets = _check_data(study, say)
    display = _progress(execution.progress, study.name)
    with (collector_spares_what_is_loaded() as freeze_what_is_loaded,
          StudyStore(out) as store, store.locked()):
        data_files = sync_directory(store, study, datasets, execution.force_new_variants,
                                    rerun_changed, say)
        tasks = _tasks(store, study, store.prepare(retry_failed=execution.retry_failed))
        if tasks and execution.executor == "local":
            start_server()  # workers' torch import overlaps with the planning below
        n_workers, n_threads = plan_workers(tasks, execution.workers, execution.threads)
        recorder = _Recorder(store, display)
        recorder.data_files = _data_files_by_run(study, data_files)
        recorder.write_tables()
        freeze_what_is_loaded()  # and what the tables imported (pandas)
        if display is not None:
            display.start(len(study.runs), len(study.runs) - len(tasks), n_workers, n_threads)
        preparing = (import_in_background(REPORT_IMPORTS, then=freeze_what_is_loaded)
                     if tasks and report else None)
        _train(tasks, recorder, display, execution, n_workers, n_threads)
        recorder.write_tables()
        if preparing is not None:
            preparing.join()  # the report forks its drawing processes: no import half-done
        analysis = _write_report(store, svg) if report else None
        counts = store.counts()
    return StudyOutcome(
        Path(out), counts, len(tasks), recorder.failures, n_workers, n_threads, notes,
        analysis=analysis,
    )


def _collecting(notes: list[str], on_line: Callable[[str], Any] | None) -> Callable[[str], None]:
    """A ``say(line)`` that keeps each line in ``notes`` and passes it to ``on_line``."""

    def say(line: str) -> None:
        notes.append(line)
        if on_line is not None:
            on_line(line)

    return say


def _runnable(study: _study.Study | str | Path) -> _study.Study:
    """The study (loaded when given as a file or a built-in name); one with [tune] is run
    by :func:`ablab.tune.run_tuned`, which tunes it first."""
    if not isinstance(study, _study.Study):
        study = _study.load_study(study)
    if study.config.tune is not None and not study.tuned:
        raise UserError(
            f"{study.source}: [tune] asks for every variant to be tuned before it is "
            "evaluated; run it with `ablab run` or ablab.run_tuned(study, out)"
        )
    return study


def _check_data(study: _study.Study, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The datasets the runs read; refused before any worker, directory or cache folder
    when one is unavailable, and a warning for a plugin dataset that names no files."""
    from ablab.data.fingerprint import (  # ablab.data loads torch: not at import
        DataUnavailableError,
        silent_plugin_datasets,
        unavailable,
    )

    datasets = [d for r in study.runs if (d := r.config.resolved().get("dataset")) is not None]
    missing = unavailable(datasets)
    if missing:
        raise DataUnavailableError(missing)
    for name in silent_plugin_datasets(datasets):
        say(f"warning: dataset {name} (a plugin) names no files, so ablab cannot tell when "
            "its data changes; register it with files=[...] (or files=() if it reads none)")
    return datasets


def _tasks(store: StudyStore, study: _study.Study, todo: list[str]) -> list[Task]:
    """One executor task for each run id left to train."""
    runs = {r.run_id: r for r in study.runs}
    return [
        Task(rid, runs[rid].label, runs[rid].config.resolved(), artefacts_folder(store, rid))
        for rid in todo
    ]


def _data_files_by_run(
    study: _study.Study, data_files: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Run id → the fingerprints of the data files it reads (each record says which)."""
    from ablab.data.fingerprint import dataset_key

    return {
        r.run_id: data_files[key]
        for r in study.runs
        if r.config.dataset is not None
        and (key := dataset_key(r.config.resolved()["dataset"])) in data_files
    }


def _train(tasks: list[Task], recorder: _Recorder, display: Progress | None,
           execution: ExecutionOptions, n_workers: int, n_threads: int) -> None:
    """Train ``tasks`` with the chosen executor; Ctrl-C or SIGTERM puts running runs back
    to pending and raises :class:`StudyInterrupted`."""
    try:
        if tasks:
            with sigterm_as_interrupt():
                make_executor(execution.executor, n_workers, n_threads, execution.address,
                              execution.gpus_per_run).run(tasks, recorder)
    except KeyboardInterrupt as exc:
        raise recorder.interrupted(exc) from None
    finally:
        if display is not None:
            display.stop()


def _write_report(store: StudyStore, svg: bool) -> Any:
    """Analyse the directory and write its report; returns the analysis."""
    from ablab.analysis import analyze
    from ablab.report import write_report

    analysis = analyze(store)
    write_report(store, svg=svg, analysis=analysis)
    return analysis


def artefacts_folder(store: StudyStore, run_id: str) -> str | None:
    """Where a run's trainer keeps its own files: DIR/runs/ID/ (made when it writes), for
    the trainers that write any; the built-in loop writes none (its weights are the
    store's)."""
    return str(store.root / "runs" / run_id)


class Study(_study.Study):
    """A study that can run itself: :class:`ablab.study.Study` plus :meth:`run`. This is
    what ``ablab.Study`` and ``ablab.load_study`` give. ``run`` lives here, in the layer
    that runs studies, so the study layer below needs neither the runner nor a hook the
    runner sets on import."""

    def run(self, out: str | Path, *, execution: ExecutionOptions | None = None,
            report: bool = True, on_line: Callable[[str], Any] | None = print,
            **options: Any) -> StudyResults:
        """Train every run ``out`` does not hold yet (resumable), write the tables and the
        report; returns :class:`ablab.results.StudyResults`. ``execution`` or its fields
        as keywords (workers, threads, executor, progress, ...), as :func:`run_study`;
        ``progress`` defaults to True here (without ``execution``) and ``on_line`` (what
        the run decided, e.g. runs trained again) to printing it."""
        if execution is None:
            options.setdefault("progress", True)
        outcome = run_study(self, out, execution=execution, report=report, on_line=on_line,
                            **options)
        return outcome.results

    @classmethod
    def of(cls, study: _study.Study) -> Study:
        """``study`` as a runnable :class:`Study` (the same fields)."""
        if isinstance(study, cls):
            return study
        return cls(**{f.name: getattr(study, f.name) for f in dataclasses.fields(study)})


def load_study(*args: Any, **kwargs: Any) -> Study:
    """:func:`ablab.study.load_study` (same arguments), as a runnable :class:`Study`:
    what ``ablab.load_study`` is."""
    return Study.of(_study.load_study(*args, **kwargs))

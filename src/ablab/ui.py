"""Study progress displays, each an object with ``start`` / ``on_event`` / ``stop`` (the
:class:`ablab.runner.Progress` protocol).

:class:`RichStudyProgress`, for the terminal: runs done / total with ETA, one line per
current run with its epoch, and a line for each run that fails or diverges.
:class:`TqdmStudyProgress`: one ``tqdm.auto`` bar (a text bar outside Jupyter).
:class:`NotebookStudyProgress`, for Jupyter: one HTML display updated in place (runs done,
the runs in progress, failures), which needs neither ipywidgets nor a warning.
:func:`study_progress` picks one."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ablab.execute import Event


def variant_of(label: str) -> str:
    """``activation=relu, seed=2`` → ``activation=relu`` (the run's variant)."""
    head, sep, tail = label.rpartition(", seed=")
    if sep and tail.isdigit():
        return head
    return "" if label.startswith("seed=") else label


class RemainingTime:
    """Seconds left of a study, from the measured time per run *of each variant*: a run
    of a variant that has finished runs costs their mean; one of a variant not measured
    yet costs its prior (the FLOP-count estimate) scaled by how the finished runs
    compared with theirs. Summed over the runs left, divided by the workers. Without
    priors, unmeasured variants cost the mean of all finished runs."""

    def __init__(self, pending: dict[str, tuple[str, float]] | None = None, workers: int = 1):
        self.pending = dict(pending or {})  # run id -> (variant, prior seconds)
        self.workers = max(1, workers)
        self.measured: dict[str, list[float]] = {}  # variant -> seconds of its runs
        self.priors_done: list[tuple[float, float]] = []  # (prior, measured)
        self.unknown_left = 0  # runs left that the plan did not list

    def finished(self, run_id: str, label: str, seconds: float | None) -> None:
        variant, prior = self.pending.pop(run_id, (variant_of(label), None))
        if seconds is None or not seconds >= 0:
            return
        self.measured.setdefault(variant, []).append(float(seconds))
        if prior:
            self.priors_done.append((prior, float(seconds)))

    @property
    def runs_left(self) -> int:
        return len(self.pending) + self.unknown_left

    def seconds_left(self) -> float | None:
        """None until some run has finished (nothing measured to go by)."""
        if not self.measured:
            return None
        every = [s for runs in self.measured.values() for s in runs]
        overall = sum(every) / len(every)
        scale = (sum(m for _, m in self.priors_done) / sum(p for p, _ in self.priors_done)
                 if self.priors_done else None)
        total = self.unknown_left * overall
        for variant, prior in self.pending.values():
            runs = self.measured.get(variant)
            if runs:
                total += sum(runs) / len(runs)
            elif prior and scale is not None:
                total += prior * scale
            else:
                total += overall
        return total / self.workers


def format_left(seconds: float | None, runs_left: int | None = None) -> str:
    """``left: 0:01:05``; with no run left, nothing (a finished study has no time left to
    estimate); before any run has finished, says so in words."""
    if runs_left == 0:
        return ""
    if seconds is None:
        return "left: estimated after the first run"
    return f"left: {format_clock(seconds)}"


def format_clock(seconds: float) -> str:
    """``1:02:05``."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_seconds(record: dict[str, Any] | None) -> float | None:
    """A finished run's own seconds from its record (a ``RunResult`` as a dict keeps them
    with its final metrics)."""
    record = record or {}
    seconds = record.get("seconds")
    if seconds is None and isinstance(record.get("final"), dict):
        seconds = record["final"].get("seconds")
    return seconds if isinstance(seconds, int | float) else None


class _RemainingColumn(TimeRemainingColumn):
    """The study's row: the per-variant estimate; a run's row: rich's own."""

    def render(self, task):
        if "left" in task.fields:
            return Text(task.fields["left"], style="progress.remaining")
        return super().render(task)


class RichStudyProgress:
    """On a terminal: a live display (runs done / total, elapsed, time left, a row per
    current run with its epoch). Elsewhere (a pipe, a file, a CI log): plain lines, one per
    message and never wrapped, a progress line at every tenth of the runs and at the end,
    and a line for each run that fails or diverges."""

    #: lines a non-terminal display prints over a study (one per tenth of its runs)
    STEPS = 10

    def __init__(self, console: Console | None = None, title: str = "study",
                 pending: dict[str, tuple[str, float]] | None = None):
        """``pending``: run id → (variant, FLOP-estimate seconds) of the runs to train,
        for the remaining-time estimate (without it, variants are told by their labels)."""
        self.console = console or Console()
        self.title = title
        self.live = self.console.is_terminal and not self.console.is_dumb_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            _RemainingColumn(),
            console=self.console,
        ) if self.live else None
        self.overall = None
        self.current: dict[str, int] = {}
        self.remaining = RemainingTime(pending)
        self.planned = pending is not None
        self.total = self.done = 0
        self.started = 0.0
        self.next_line = 0  # the runs done at which a non-terminal display says more

    def say(self, text: str, lead: str = "", style: str = "") -> None:
        """One message, one line (no hard wrap at the console's width; run labels and
        errors are printed as they are, never read as markup); ``lead`` in ``style``."""
        line = Text.assemble((lead, style), text) if lead else Text(text)
        self.console.print(line, highlight=False, soft_wrap=True)

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None:
        self.say(f": {total} runs, {already_done} already stored; "
                 f"{workers} worker(s) × {threads} thread(s)", self.title, "bold")
        self.remaining.workers = max(1, workers)
        if not self.planned:
            self.remaining.unknown_left = total - already_done
        self.total, self.done = total, already_done
        self.started = time.monotonic()
        self.next_line = already_done + self._step()
        if self.progress is None:
            return
        self.progress.start()
        self.overall = self.progress.add_task(
            "[bold]runs", total=total, completed=already_done, info="",
            left=self._left(),
        )

    def _step(self) -> int:
        return max(1, -(-(self.total or 1) // self.STEPS))  # a tenth, rounded up

    def _left(self) -> str:
        return format_left(self.remaining.seconds_left(), self.remaining.runs_left)

    def status_line(self) -> str:
        """``runs 30/300 0:00:12 left: 0:01:48`` (no time left once every run is done)."""
        parts = [f"runs {self.done}/{self.total}",
                 format_clock(time.monotonic() - self.started), self._left()]
        return " ".join(p for p in parts if p)

    def on_event(self, event: Event) -> None:
        rid = event.task.run_id
        if event.kind in ("done", "failed"):
            if not self.planned:
                self.remaining.unknown_left = max(0, self.remaining.unknown_left - 1)
            seconds = run_seconds(event.record) if event.kind == "done" else None
            self.remaining.finished(rid, event.task.label, seconds)
            self.done += 1
            if self.progress is not None:
                self.progress.update(self.overall, left=self._left())
        if self.progress is not None:
            self._update_live(event)
        if event.kind == "failed":
            self.say(f" {event.task.label}: {event.error}", "failed", "red")
        elif event.kind == "done" and (event.record or {}).get("status") == "diverged":
            epoch = event.record.get("diverged_epoch")
            self.say(f" {event.task.label}: non-finite loss at epoch {epoch}", "diverged",
                     "yellow")
        if (self.progress is None and event.kind in ("done", "failed")
                and self.done >= min(self.next_line, self.total)):
            self.next_line = self.done + self._step()
            self.say(self.status_line())

    def _update_live(self, event: Event) -> None:
        rid = event.task.run_id
        if event.kind == "started" and rid not in self.current:
            self.current[rid] = self.progress.add_task(
                f"  {event.task.label}", total=event.task.epochs, info=""
            )
        elif event.kind == "epoch" and rid in self.current:
            rec = event.record or {}
            acc = rec.get("val_accuracy")
            info = f"val_acc {acc:.3f}" if isinstance(acc, float) else ""
            self.progress.update(self.current[rid], completed=rec.get("epoch", 0), info=info)
        elif event.kind in ("done", "failed"):
            task_id = self.current.pop(rid, None)
            if task_id is not None:
                self.progress.remove_task(task_id)
            self.progress.advance(self.overall)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class TqdmStudyProgress:
    """Study progress with ``tqdm.auto``: a widget in Jupyter, a text bar elsewhere."""

    def __init__(self, title: str = "study"):
        self.title = title
        self.bar = None

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=already_done, desc=self.title, unit="run")
        self.bar.set_postfix_str(f"{workers} worker(s) × {threads} thread(s)")

    def on_event(self, event: Event) -> None:
        if self.bar is None:
            return
        if event.kind in ("done", "failed"):
            self.bar.update(1)
            if event.kind == "failed":
                self.bar.write(f"failed {event.task.label}: {event.error}")
        elif event.kind == "epoch":
            rec = event.record or {}
            acc = rec.get("val_accuracy")
            info = f"{event.task.label} epoch {rec.get('epoch')}"
            if isinstance(acc, float):
                info += f" val_acc {acc:.3f}"
            self.bar.set_postfix_str(info, refresh=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.close()


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ``IPKernelApp``)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class NotebookStudyProgress:
    """Study progress in Jupyter: one HTML output, updated in place (an IPython display
    handle), at most every ``INTERVAL`` seconds and on every finished run. It shows runs
    done / total, failures and divergences with their reasons, and the runs in progress
    with their epoch. Plain IPython display messages: works without ipywidgets (where
    ``tqdm.auto`` and rich warn) in Jupyter, VS Code, Colab and ``nbclient``."""

    INTERVAL = 0.5

    def __init__(self, title: str = "study"):
        self.title = title
        self.handle = None
        self.total = self.done = 0
        self.setup = ""
        self.current: dict[str, str] = {}  # run id -> "label: epoch 3 / 10, val_acc 0.91"
        self.problems: list[str] = []
        self.started = self.last = 0.0
        self.finished = False

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None:
        import time

        from IPython.display import HTML, display

        self.total, self.done = total, already_done
        self.setup = f"{workers} worker(s) × {threads} thread(s)"
        self.started = time.monotonic()
        self.handle = display(HTML(self.html()), display_id=True)

    def on_event(self, event: Event) -> None:
        rid, label = event.task.run_id, event.task.label
        if event.kind == "started":
            self.current[rid] = f"{label}: starting"
        elif event.kind == "epoch":
            rec = event.record or {}
            acc = rec.get("val_accuracy")
            of = f" / {event.task.epochs}" if event.task.epochs else ""  # a trainer's steps
            info = f"{label}: epoch {rec.get('epoch')}{of}"
            self.current[rid] = info + (f", val_acc {acc:.3f}" if isinstance(acc, float) else "")
        elif event.kind in ("done", "failed"):
            self.current.pop(rid, None)
            self.done += 1
            if event.kind == "failed":
                self.problems.append(f"failed {label}: {event.error}")
            elif (event.record or {}).get("status") == "diverged":
                epoch = event.record.get("diverged_epoch")
                self.problems.append(f"diverged {label}: non-finite loss at epoch {epoch}")
        self.refresh(force=event.kind in ("done", "failed"))

    def refresh(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if self.handle is None or (not force and now - self.last < self.INTERVAL):
            return
        from IPython.display import HTML

        self.last = now
        self.handle.update(HTML(self.html()))

    def html(self) -> str:
        import html
        import time

        esc = html.escape
        seconds = time.monotonic() - self.started if self.started else 0.0
        state = "finished" if self.finished else "running"
        failed = sum(p.startswith("failed") for p in self.problems)
        parts = [
            '<div class="ablab-progress">',
            f"<b>{esc(self.title)}</b> — {state}: {self.done} / {self.total} runs"
            + (f", {failed} failed" if failed else "")
            + f' <progress value="{self.done}" max="{max(self.total, 1)}"></progress> '
            f"{seconds:.1f} s, {esc(self.setup)}",
        ]
        if self.current and not self.finished:
            parts.append("<br><small>" + "<br>".join(esc(c) for c in self.current.values())
                         + "</small>")
        if self.problems:
            parts.append('<ul style="color:#b00">')
            parts += [f"<li>{esc(p)}</li>" for p in self.problems]
            parts.append("</ul>")
        parts.append("</div>")
        return "".join(parts)

    def stop(self) -> None:
        self.finished = True
        self.refresh(force=True)


def study_progress(title: str = "study"):
    """A progress display that works in a notebook and on a terminal: in Jupyter one HTML
    display updated in place (:class:`NotebookStudyProgress`); elsewhere ``tqdm`` when it
    is installed, else rich."""
    if in_jupyter():
        return NotebookStudyProgress(title)
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        return RichStudyProgress(title=title)
    return TqdmStudyProgress(title)

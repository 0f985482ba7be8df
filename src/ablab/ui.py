"""Study progress displays, each an object with ``start`` / ``on_event`` / ``stop`` (the
:class:`ablab.runner.Progress` protocol).

:class:`RichStudyProgress`, for the terminal: runs done / total with ETA, one line per
current run with its epoch, and a line for each run that fails or diverges.
:class:`TqdmStudyProgress`, for a notebook: one ``tqdm.auto`` bar.
:func:`study_progress` picks one for a notebook."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ablab.execute import Event


class RichStudyProgress:
    def __init__(self, console: Console | None = None, title: str = "study"):
        self.console = console or Console()
        self.title = title
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.overall = None
        self.current: dict[str, int] = {}

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None:
        self.console.print(
            f"[bold]{self.title}[/bold]: {total} runs, {already_done} already stored; "
            f"{workers} worker(s) × {threads} thread(s)",
            highlight=False,
        )
        self.progress.start()
        self.overall = self.progress.add_task(
            "[bold]runs", total=total, completed=already_done, info=""
        )

    def on_event(self, event: Event) -> None:
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
            if event.kind == "failed":
                self.console.print(
                    f"[red]failed[/red] {event.task.label}: {event.error}", highlight=False
                )
            elif (event.record or {}).get("status") == "diverged":
                epoch = event.record.get("diverged_epoch")
                self.console.print(
                    f"[yellow]diverged[/yellow] {event.task.label}: non-finite loss at "
                    f"epoch {epoch}",
                    highlight=False,
                )

    def stop(self) -> None:
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


def study_progress(title: str = "study"):
    """A progress display that works in a notebook and on a terminal: ``tqdm.auto`` when
    tqdm is installed, else rich (which renders live in Jupyter too)."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        return RichStudyProgress(title=title)
    return TqdmStudyProgress(title)

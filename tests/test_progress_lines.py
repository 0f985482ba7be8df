"""Study progress as a user reads it when stdout is not a terminal (a pipe, a CI log):
one line per message, never hard-wrapped, and no time-left placeholder once the study
is finished."""

from __future__ import annotations

import io

from conftest import cli_env, moons_study, run_cli
from rich.console import Console

from ablab.execute import Event
from ablab.execute.base import Task
from ablab.ui import RichStudyProgress, format_left, run_seconds

LONG_TITLE = "a-study-whose-name-alone-takes-up-most-of-an-eighty-column-terminal-line"


def _task(i: int, variant: str = "relu") -> Task:
    return Task(f"run{i}", f"activation={variant}, seed={i}", {"epochs": 2})


def _done(task: Task, seconds: float) -> Event:
    # as a worker hands a finished run over: a RunResult as a dict, its seconds among
    # its final metrics
    return Event("done", task, record={"run_id": task.run_id, "status": "done",
                                       "final": {"test_accuracy": 0.9, "seconds": seconds}})


def _piped_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()  # not a terminal, as stdout is in a pipe
    return Console(file=out, width=80), out


def test_progress_off_a_terminal_is_one_line_per_message_and_ends_without_time_left():
    console, out = _piped_console()
    tasks = [_task(i, v) for i, v in enumerate(["relu", "tanh"] * 2)]
    progress = RichStudyProgress(console, title=LONG_TITLE,
                                 pending={t.run_id: (t.label.split(",")[0], 0.1) for t in tasks})
    progress.start(total=len(tasks), already_done=0, workers=2, threads=1)
    for t in tasks[:3]:
        progress.on_event(Event("started", t))
        progress.on_event(Event("epoch", t, record={"epoch": 1, "val_accuracy": 0.8}))
        progress.on_event(_done(t, seconds=2.0))
    long_error = "the trainer raised " + "x" * 120
    progress.on_event(Event("started", tasks[3]))
    progress.on_event(Event("failed", tasks[3], error=long_error))
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == (f"{LONG_TITLE}: 4 runs, 0 already stored; 2 worker(s) × 1 thread(s)")
    assert f"failed activation=tanh, seed=3: {long_error}" in lines  # whole, one line
    status = [line for line in lines if line.startswith("runs ")]
    assert [s.split()[1] for s in status] == ["1/4", "2/4", "3/4", "4/4"]
    # measured runs (2 s each, 2 workers): the estimate is a time, not a placeholder
    assert status[0].endswith("left: 0:00:03")  # 3 runs x 2 s / 2 workers
    assert "left" not in status[-1]  # the study is finished: no time left to estimate
    assert not any("-:--" in line for line in lines)
    assert not any("━" in line for line in lines)  # no bar drawn into a log


def test_progress_off_a_terminal_says_a_line_per_tenth_of_a_large_study():
    console, out = _piped_console()
    progress = RichStudyProgress(console, title="big")
    progress.start(total=300, already_done=0, workers=2, threads=1)
    for i in range(300):
        progress.on_event(_done(_task(i), seconds=1.0))
    progress.stop()
    status = [line for line in out.getvalue().splitlines() if line.startswith("runs ")]
    assert [s.split()[1] for s in status] == [f"{n}/300" for n in range(30, 301, 30)]


def test_time_left_is_said_in_words_until_known_and_left_out_when_nothing_is_left():
    assert format_left(None) == "left: estimated after the first run"
    assert format_left(3725) == "left: 1:02:05"
    assert format_left(0.0, runs_left=0) == "" and format_left(None, runs_left=0) == ""
    assert run_seconds({"final": {"seconds": 1.5}}) == 1.5
    assert run_seconds({"seconds": 2}) == 2 and run_seconds(None) is None


def test_a_study_resumed_with_every_run_stored_says_no_time_left():
    console, out = _piped_console()
    progress = RichStudyProgress(console, title="resumed", pending={})
    progress.start(total=6, already_done=6, workers=1, threads=1)
    progress.stop()
    assert out.getvalue().splitlines() == [
        "resumed: 6 runs, 6 already stored; 1 worker(s) × 1 thread(s)"
    ]


def test_ablab_run_into_a_pipe_prints_whole_lines(tmp_path):
    study = moons_study(tmp_path, name=LONG_TITLE, seeds=(0,), epochs=1)
    out = tmp_path / "out"
    env = cli_env()
    env["COLUMNS"] = "40"  # rich wraps at this width off a terminal, unless told not to
    proc = run_cli("run", str(study), "--out", str(out), "--workers", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{LONG_TITLE}: 2 runs, 0 already stored; 1 worker(s) × 1 thread(s)" in lines
    assert f"results in {out}/ (results.csv, summary.csv, report.html, report.md)" in lines
    status = [line for line in lines if line.startswith("runs ")]
    assert status and status[-1].startswith("runs 2/2 ") and "left" not in status[-1]
    assert not any("-:--" in line for line in lines)

"""The ``ablab`` app, its shared options and consoles, and the exit policy (:func:`main`).

Errors a user can cause print one line and exit 2; a run that fails or diverges exits 1;
Ctrl-C / SIGTERM exit 130 / 143. The commands live beside this module, one module per
family (catalogue, train, run, directory); :mod:`ablab.cli.outcome` is the one place that
prints what a study run did."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from ablab.errors import UserError
from ablab.study_process import Terminated, sigterm_as_interrupt

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help: wraps to the terminal, readable at 80 columns (rich's boxed
    # panels cut option names and help text there)
    rich_markup_mode=None,
    help="ablab: controlled deep-learning comparisons, from one TOML file to a report.",
)
console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a field by dotted path, e.g. --set optimizer.lr=0.01"),
]
AllowPluginsOption = Annotated[
    bool,
    typer.Option(
        "--allow-plugins",
        help="Import (run) the plugin modules the file names; also ABLAB_ALLOW_PLUGINS=1",
    ),
]
SvgOption = Annotated[
    bool, typer.Option("--svg", help="Also write every figure as SVG (figures/*.svg)")
]



def consent(allow_plugins: bool) -> bool | None:
    """--allow-plugins gives consent; without it the environment decides."""
    return True if allow_plugins else None



def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"



def _one_line(text: str) -> str:
    """A user error is one line: control characters (a newline inside a key the user
    wrote, say) are shown escaped."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _loaded(module: str, name: str) -> type | None:
    """``module.name`` where ``module`` is already imported (None otherwise): what an
    exception can be an instance of only once its module ran."""
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


def _stop_server() -> None:
    """Stop the workers' fork server where this command started one."""
    local = sys.modules.get("ablab.execute.local")
    if local is not None:
        local.stop_server()


def main() -> None:
    """Exit status: 0 done; 1 runs failed or diverged; 2 bad input (one line); 130 / 143
    stopped by Ctrl-C / SIGTERM (128 + the signal, as a shell reports it)."""
    received: list[int] = []
    try:
        # SIGTERM stops every command the way Ctrl-C does; while a study trains, the
        # runner's own handler (the same one) takes over.
        with sigterm_as_interrupt() as received:
            app()
    except UserError as exc:
        interrupted = _loaded("ablab.runner", "StudyInterrupted")
        if interrupted is not None and isinstance(exc, interrupted):
            err_console.print(str(exc))  # runs put back to pending; says how to resume
            sys.exit(exc.exit_code)
        _stop_server()  # started before the study file was read: nothing will run
        # "ablab[mlflow]" is no markup; a field name holding a newline stays one line;
        # an error about several things (datasets) says one line for each
        for line in getattr(exc, "lines", None) or [str(exc)]:
            err_console.print(f"error: {_one_line(line)}", markup=False)
        sys.exit(2)
    except OSError as exc:  # the disk, not the study: one line, not a traceback
        _stop_server()
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"error: {where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt as exc:
        err_console.print("interrupted")
        by_sigterm = received or isinstance(exc, Terminated)
        sys.exit(143 if by_sigterm else 130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns KeyboardInterrupt (and so SIGTERM) into exit 130
            err_console.print("interrupted")
            sys.exit(143 if received else 130)
        raise


def console_main() -> None:
    """The ``ablab`` command: :func:`main`, then leave without the interpreter's teardown
    of torch, matplotlib and pandas (0.7-2 s measured for #17, paid by every command after
    its last line). Everything is written by then: the store closes its index and writes
    files atomically inside the command. The teardown still runs where something may need
    it: a child process still alive (an interrupted pool), Ray (its atexit shuts down
    the cluster it started), or an exception that is not an exit (its traceback)."""
    try:
        main()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    import multiprocessing

    if "ray" in sys.modules or multiprocessing.active_children():
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message"): the message, then status 1
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


"""What running a study does to the calling process: SIGTERM stops it as Ctrl-C does,
the report's libraries load in the background while runs train, and what is loaded stays out
of the garbage collector's reach until the study ends. Standard library only."""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so both stop a study the same
    way (``except KeyboardInterrupt`` catches both)."""


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


def import_in_background(
    modules: tuple[str, ...], then: Callable[[], None] = lambda: None
) -> threading.Thread:
    """Import ``modules`` in a daemon thread (a failure is left for the report to say),
    then call ``then``."""
    import importlib

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the report imports it again and says why
                break
        then()

    thread = threading.Thread(target=load, name="ablab-report-imports", daemon=True)
    thread.start()
    return thread


@contextmanager
def collector_spares_what_is_loaded() -> Iterator[Callable[[], None]]:
    """Within the block, the objects alive when it starts or when the yielded function is
    called (from any thread: after a batch of imports) -- the modules imported: torch,
    pandas, matplotlib, ..., several hundred thousand objects -- are out of the cyclic
    garbage collector's reach (``gc.freeze``): each full collection while the runs'
    records arrive and the report is analysed and drawn then walks only what those
    allocate, in this process and in the report's forked drawing processes. At the end
    everything goes back to the collector (``gc.unfreeze``), so a notebook that runs a
    study collects as before; a call after the end freezes nothing. Where objects are
    frozen already (by the program calling this), nothing is frozen or unfrozen here."""
    if gc.get_freeze_count():
        yield lambda: None
        return
    lock, active = threading.Lock(), [True]

    def freeze() -> None:
        with lock:
            if active[0]:
                gc.freeze()

    freeze()
    try:
        yield freeze
    finally:
        with lock:
            active[0] = False
            gc.unfreeze()

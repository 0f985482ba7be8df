"""Local executor: a pool of worker processes, each with its own thread budget.

Each worker runs one task at a time and reports through a pipe (start, every epoch, the
result). The parent watches both the pipes and the processes: a worker that dies (killed,
out of memory) fails only the run it held, and is replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from ablab.execute.base import Event, OnEvent, Task, run_task, set_threads


def _worker(conn: Connection, threads: int) -> None:
    # The parent decides how to stop on Ctrl-C; workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        run_id, config = task
        conn.send(("started", run_id, None))
        status, payload = run_task(
            config, lambda rec, rid=run_id: conn.send(("epoch", rid, rec))
        )
        conn.send((status, run_id, payload))


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    task: Task | None = None


class LocalExecutor:
    """Runs tasks in ``workers`` processes with ``threads`` torch threads each."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self._ctx = mp.get_context("spawn")  # fork + torch threads can deadlock
        self._pool: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker, args=(child, self.threads), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task], on_event: OnEvent) -> None:
        queue = deque(tasks)
        self._pool = [self._spawn() for _ in range(min(self.workers, len(tasks)))]
        try:
            while queue or any(w.task for w in self._pool):
                for worker in self._pool:
                    if worker.task is None and queue:
                        worker.task = queue.popleft()
                        worker.conn.send((worker.task.run_id, worker.task.config))
                busy = [w for w in self._pool if w.task]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._drain(worker, on_event)
        finally:
            self.shutdown()

    def _drain(self, worker: _Worker, on_event: OnEvent) -> None:
        """Handle what a worker sent; if it died, fail its run and replace it."""
        try:
            while worker.task and worker.conn.poll():
                kind, _run_id, payload = worker.conn.recv()
                task = worker.task
                if kind == "epoch":
                    on_event(Event("epoch", task, record=payload))
                elif kind == "started":
                    on_event(Event("started", task))
                elif kind == "done":
                    worker.task = None
                    on_event(Event("done", task, record=payload))
                else:
                    worker.task = None
                    on_event(Event("failed", task, error=payload))
        except (EOFError, OSError):
            pass
        if worker.task is not None and not worker.process.is_alive():
            task, code = worker.task, worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            worker.task = None
            index = self._pool.index(worker)
            self._pool[index] = self._spawn()
            on_event(Event("failed", task, error=f"worker process died ({how})"))

    def shutdown(self) -> None:
        for worker in self._pool:
            if worker.process.is_alive():
                if worker.task is None:
                    try:
                        worker.conn.send(None)
                    except (OSError, BrokenPipeError):
                        pass
                    worker.process.join(timeout=2)
                if worker.process.is_alive():
                    worker.process.terminate()
                    worker.process.join(timeout=5)
            worker.conn.close()
        self._pool = []

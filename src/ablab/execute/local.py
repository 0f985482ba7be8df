"""Local executor: a pool of worker processes, each with its own thread budget.

Each worker runs one unit of work at a time: a task, or a group of tasks that differ only
in seed, trained together as one batched model (``group_tasks``); the next unit is sent
ahead and waits in its pipe, so tiny runs do not leave a worker idle between them.
It reports through a
pipe per run (start, every epoch, the result), so a group's runs are stored and shown
exactly as if they had run one by one. The parent watches both the pipes and the
processes: a worker that dies (killed, out of memory) fails only the runs it held, and is
replaced.

Workers start from a fork server that has imported torch and ablab once (``PRELOAD``), so
a new worker costs milliseconds instead of a torch import (seconds); the server itself is
a fresh process (not a fork of the parent, whose torch threads could deadlock a fork).
Inside :func:`kept_workers` (adaptive seeds' rounds, tuning batches) a pool outlives its
``run`` call and serves the next one with the same workers × threads.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from ablab.execute.base import (
    TRAINING_MODULES,
    Event,
    OnEvent,
    Task,
    allow_plugins_in_this_worker,
    gpu_for_worker,
    parent_vouches_for_plugins,
    plan_units,
    run_group,
    set_threads,
    visible_gpus,
    wants_cuda,
)
from ablab.execute.shipping import install_entries, pack_or_stay_here, run_here

#: The number of workers that share this worker's GPU (set by the local executor).
GPU_SHARERS_ENV = "ABLAB_GPU_SHARERS"

#: Modules the fork server imports once, before it forks any worker: a worker then starts
#: with torch and every built-in component loaded (milliseconds instead of seconds).
PRELOAD = ["ablab.execute.local", *TRAINING_MODULES]


def _context() -> mp.context.BaseContext:
    """The fork server context (spawn where there is none), told what to preload; the
    server starts on the first worker (or :func:`start_server`) and lives as long as this
    process."""
    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - not POSIX
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_server() -> None:
    """Start the fork server now, without waiting for it: its torch import overlaps with
    what the parent does before the first worker is needed."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def stop_server() -> None:
    """Stop a fork server this process started, at once: ``ablab run`` starts it before it
    reads the study file, and a bad file must not leave it importing torch (seconds of
    CPU) after the command has already said what is wrong."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the module's own instance; no public handle
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)  # it reads no request while importing: no SIGTERM
    except ProcessLookupError:
        pass
    server._stop()  # closes its pipes, reaps it


def _worker(
    conn: Connection,
    threads: int,
    allow_plugins: bool = False,
    shipped: bytes | None = None,
    environ: dict[str, str] | None = None,
) -> None:
    # The parent decides how to stop on Ctrl-C; workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What the fork server imported (torch, scikit-learn, ablab: ~400,000 objects) lives
    # as long as the worker: out of the cyclic collector's reach, a full collection walks
    # only what the runs allocate, and touches none of the inherited pages (copy-on-write).
    gc.freeze()
    if environ is not None:  # the parent's environment now, not the fork server's at start
        os.environ.clear()
        os.environ.update(environ)
    set_threads(threads)
    allow_plugins_in_this_worker(allow_plugins)
    install_entries(shipped)  # components defined in the parent's __main__ (a notebook)
    while True:
        try:
            unit = conn.recv()
        except (EOFError, OSError):
            return
        if unit is None:
            # Everything sent is in the pipe already; skip the interpreter's teardown of
            # torch (about a second per worker at the end of every study).
            conn.close()
            os._exit(0)
        batched, task = unit
        run_ids = [rid for rid, _, _ in task]
        for rid in run_ids:
            conn.send(("started", rid, None))
        outcomes = run_group(
            [config for _, config, _ in task], _ProgressSender(conn, run_ids), batched,
            [folder for _, _, folder in task],
        )
        for rid, (status, payload) in zip(run_ids, outcomes, strict=True):
            conn.send((status, rid, payload))


class _ProgressSender:
    """Sends epoch records (progress display only) to the parent at most every
    ``INTERVAL`` seconds per run, and always a run's first: a 300-epoch toy run would
    otherwise send 300 messages a second, and the parent, sharing the cores, spent ~2 s
    of CPU per study receiving them."""

    INTERVAL = 0.2

    def __init__(self, conn: Connection, run_ids: list[str]):
        self.conn, self.run_ids = conn, run_ids
        self.last_sent: dict[int, float] = {}

    def __call__(self, i: int, record: dict) -> None:
        now = time.monotonic()
        if now - self.last_sent.get(i, -1e9) >= self.INTERVAL:
            self.last_sent[i] = now
            self.conn.send(("epoch", self.run_ids[i], record))


#: Seconds a run may go past its ``timeout`` before its worker is killed: a trainer that
#: enforces the limit itself (the ``command`` trainer stops its process at ``timeout``, and
#: records its stderr) gets to.
KILL_GRACE_S = 2.0


#: Units of work sent ahead to each worker: while it trains one, the next waits in its
#: pipe, so a worker never idles for a round trip through the parent between tiny runs.
UNITS_AHEAD = 2


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    tasks: dict[str, Task] | None = None  # run id -> task, of the units it holds
    # each unit sent, oldest first: (run ids not finished yet, its tasks, batched)
    units: deque = field(default_factory=deque)
    started: set = field(default_factory=set)  # run ids the worker said it started
    # run id -> (monotonic time past which the worker is killed, the reason it then fails)
    deadlines: dict = field(default_factory=dict)
    timed_out: str | None = None  # why the worker was killed, for the runs it held

    @property
    def task(self) -> dict[str, Task] | None:
        return self.tasks or None

    def start(self, run_id: str) -> None:
        """The worker began ``run_id``: its time limit (``timeout``; seeds trained together
        share ``timeout`` × their number) starts now."""
        self.started.add(run_id)
        limit = self.tasks[run_id].timeout
        if limit is None:
            return
        from ablab.train.trainers import timed_out_message  # ablab.train loads torch

        size = next((len(unit) for _, unit, _ in self.units
                     if any(t.run_id == run_id for t in unit)), 1)
        deadline = time.monotonic() + limit * size + KILL_GRACE_S
        self.deadlines[run_id] = (deadline, timed_out_message(limit * size))

    def expired(self, now: float) -> str | None:
        """The reason to kill this worker now: a run it holds is past its time limit."""
        return next((why for deadline, why in self.deadlines.values() if now >= deadline), None)

    def settle(self, run_id: str) -> None:
        """A run is finished: drop its unit once all of that unit's runs are."""
        del self.tasks[run_id]
        self.started.discard(run_id)
        self.deadlines.pop(run_id, None)
        for left, _, _ in self.units:
            left.discard(run_id)
        while self.units and not self.units[0][0]:
            self.units.popleft()

    def unstarted_units(self) -> list[tuple[list[Task], bool]]:
        """Units sent ahead that the worker never began (to go back to the queue)."""
        return [
            (unit, batched)
            for left, unit, batched in self.units
            if not any(t.run_id in self.started for t in unit)
            and len(left) == len(unit)
        ]


#: Pools kept between ``run`` calls inside :func:`kept_workers`, by what their workers
#: were started with; None outside such a block.
_KEPT: dict[tuple, list[_Worker]] | None = None
#: What other executors keep for the block (a Ray runtime), closed when it ends.
_CLOSE_AT_END: list = []


def close_when_kept_workers_end(close) -> bool:
    """Inside :func:`kept_workers`: ``close()`` is called when the block ends (True);
    outside it nothing is kept and the caller closes now (False)."""
    if _KEPT is None:
        return False
    _CLOSE_AT_END.append(close)
    return True


@contextmanager
def kept_workers() -> Iterator[None]:
    """Within this block, a :class:`LocalExecutor` leaves its idle workers running when its
    ``run`` ends, and the next executor with the same workers, threads, plugin consent and
    shipped components takes them over: rounds of adaptive seeds and tuning batches start
    no process. The workers stop when the block ends. Nested blocks share the outer one."""
    global _KEPT
    if _KEPT is not None:
        yield
        return
    _KEPT = {}
    try:
        yield
    finally:
        kept, _KEPT = _KEPT, None
        for pool in kept.values():
            _stop(pool)
        while _CLOSE_AT_END:
            _CLOSE_AT_END.pop()()


def worker_environ(
    index: int, gpus: list[str], environ: dict[str, str], workers: int = 1
) -> dict[str, str]:
    """The environment worker ``index`` of ``workers`` starts with: ``environ``, and where
    runs train on GPUs, ``CUDA_VISIBLE_DEVICES`` set to its one GPU (round robin over
    ``gpus``), so the programs of a study spread over every visible GPU and each worker's
    ``cuda`` is its own device; ``ABLAB_GPU_SHARERS`` says how many workers share that
    GPU (each sizes its programs to its share of the memory:
    ``ablab.train.batched.memory_budget``).

    >>> worker_environ(3, ["0", "1", "2"], {"A": "1"}, workers=4)
    {'A': '1', 'CUDA_VISIBLE_DEVICES': '0', 'ABLAB_GPU_SHARERS': '2'}
    """
    env = dict(environ)
    gpu = gpu_for_worker(index, gpus)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
        sharers = sum(1 for i in range(max(workers, index + 1)) if gpu_for_worker(i, gpus) == gpu)
        env[GPU_SHARERS_ENV] = str(sharers)
    return env


class LocalExecutor:
    """Runs tasks in ``workers`` processes with ``threads`` torch threads each; where the
    runs train on CUDA, worker ``i`` sees only GPU ``i mod n`` of the ``n`` visible."""

    def __init__(self, workers: int, threads: int, batch_seeds: bool = True):
        self.workers, self.threads = workers, threads
        self.batch_seeds = batch_seeds
        self._ctx = _context()  # fork server: plain fork + torch threads can deadlock
        self._pool: list[_Worker] = []
        self._queue: deque = deque()
        self._allow_plugins = False
        self._shipped: bytes | None = None
        self._gpus: list[str] = []

    def _spawn(self, index: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        environ = worker_environ(index, self._gpus, dict(os.environ), self.workers)
        process = self._ctx.Process(
            target=_worker,
            args=(child, self.threads, self._allow_plugins, self._shipped, environ),
            daemon=True,
        )
        # An ignored SIGINT survives exec, so a Ctrl-C while the worker is still importing
        # torch cannot kill it half-way (the parent alone decides how to stop).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task], on_event: OnEvent) -> None:
        self._shipped, stay_here = pack_or_stay_here(self.workers)
        if stay_here:
            return run_here(tasks, on_event)
        units = plan_units(tasks) if self.batch_seeds else [([t], None) for t in tasks]
        self._queue = queue = deque(units)
        self._allow_plugins = parent_vouches_for_plugins(tasks)
        gpus = visible_gpus()
        self._gpus = gpus if wants_cuda([t.config for t in tasks], bool(gpus)) else []
        key = (self.workers, self.threads, self._allow_plugins, self._shipped,
               tuple(self._gpus))
        kept = [w for w in (_KEPT or {}).pop(key, []) if w.process.is_alive()]
        want = min(self.workers, len(queue))
        self._pool = kept[:want] + [self._spawn(i) for i in range(len(kept[:want]), want)]
        if kept[want:]:  # more than this call needs: they wait for the next one
            _KEPT.setdefault(key, []).extend(kept[want:])
        try:
            while queue or any(w.task for w in self._pool):
                for worker in self._pool:
                    while len(worker.units) < UNITS_AHEAD and queue:
                        unit, batched = queue.popleft()
                        worker.tasks = {**(worker.tasks or {}), **{t.run_id: t for t in unit}}
                        worker.units.append(({t.run_id for t in unit}, unit, batched))
                        worker.conn.send(
                            (batched, [(t.run_id, t.config, t.artefacts) for t in unit])
                        )
                busy = [w for w in self._pool if w.task]
                ready = wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy],
                    timeout=_until_next_deadline(busy),
                )
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._drain(worker, on_event)
                self._kill_timed_out(on_event)
        finally:
            if _KEPT is not None and not any(w.task for w in self._pool):
                _KEPT.setdefault(key, []).extend(self._pool)  # for the next run call
                self._pool = []
            else:
                self.shutdown()

    def _kill_timed_out(self, on_event: OnEvent) -> None:
        """Kill each worker holding a run past its time limit: its run fails with "timed out
        after N s", the worker is replaced (``_drain``), and the study goes on."""
        now = time.monotonic()
        for worker in list(self._pool):
            why = worker.expired(now) if worker.task else None
            if why is None:
                continue
            worker.timed_out = why
            worker.process.kill()
            worker.process.join()
            self._drain(worker, on_event)

    def _drain(self, worker: _Worker, on_event: OnEvent) -> None:
        """Handle what a worker sent; if it died, fail its run and replace it."""
        try:
            while worker.tasks and worker.conn.poll():
                kind, run_id, payload = worker.conn.recv()
                task = worker.tasks[run_id]
                if kind == "epoch":
                    on_event(Event("epoch", task, record=payload))
                elif kind == "started":
                    worker.start(run_id)
                    on_event(Event("started", task))
                elif kind == "done":
                    worker.settle(run_id)
                    on_event(Event("done", task, record=payload))
                else:
                    worker.settle(run_id)
                    on_event(Event("failed", task, error=payload))
        except (EOFError, OSError):
            pass
        if worker.tasks and not worker.process.is_alive():
            back = worker.unstarted_units()  # sent ahead, never begun: they go back
            again = {t.run_id for unit, _ in back for t in unit}
            self._queue.extendleft(reversed(back))
            lost = [t for rid, t in worker.tasks.items() if rid not in again]
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            reason = worker.timed_out or f"worker process died ({how})"
            worker.tasks = None
            worker.units.clear()
            worker.started.clear()
            worker.deadlines.clear()
            index = self._pool.index(worker)
            self._pool[index] = self._spawn(index)
            for task in lost:
                on_event(Event("failed", task, error=reason))

    def shutdown(self) -> None:
        _stop(self._pool)
        self._pool = []


def _until_next_deadline(workers: list[_Worker]) -> float | None:
    """Seconds until the first time limit among ``workers`` runs out (None: no limit)."""
    deadlines = [d for w in workers for d, _ in w.deadlines.values()]
    if not deadlines:
        return None
    return max(0.0, min(deadlines) - time.monotonic())


def _stop(pool: list[_Worker]) -> None:
    """Ask every idle worker to leave, then wait for all (terminate the busy ones)."""
    for worker in pool:
        if worker.process.is_alive() and worker.task is None:
            try:
                worker.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
    for worker in pool:
        if worker.process.is_alive():
            if worker.task is None:
                worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
        worker.conn.close()

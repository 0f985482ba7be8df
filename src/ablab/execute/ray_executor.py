"""Ray executor: the same tasks as Ray tasks, on a local Ray or a cluster (``address``).

Each unit of work (a run, or the seeds of a variant trained together: ``group_tasks``)
is one Ray task; it asks Ray for ``threads`` CPUs and sets the same torch thread count as
the local executor would, so both give identical results for the same runs.
"""

from __future__ import annotations

from collections import deque

from ablab.errors import UserError
from ablab.execute.base import (
    Event,
    OnEvent,
    Task,
    allow_plugins_in_this_worker,
    parent_vouches_for_plugins,
    plan_units,
    run_group,
    set_threads,
)
from ablab.execute.local import close_when_kept_workers_end
from ablab.execute.shipping import install_entries, pack_main_entries


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray: Ray is not installed; install it with "
            "`.venv/bin/pip install 'ablab[ray]'` (or `pip install ray`)"
        ) from None
    return ray


def _remote_fit(
    configs: list[dict],
    threads: int,
    batched: bool | None = None,
    allow_plugins: bool = False,
    shipped: bytes | None = None,
    artefacts: list[str | None] | None = None,
):
    set_threads(threads)
    allow_plugins_in_this_worker(allow_plugins)
    install_entries(shipped)  # components defined in the driver's __main__ (a notebook)
    # ``timeout`` is enforced inside the task (no parent watches a Ray worker's run)
    return run_group(configs, batched=batched, artefacts=artefacts, limit_here=True)


#: Units in flight per worker slot (see RayExecutor.run).
UNITS_PER_SLOT = 2


class RayExecutor:
    def __init__(self, threads: int, address: str | None = None, workers: int | None = None):
        self.ray = _ray()
        self.threads, self.address, self.workers = threads, address, workers

    def run(self, tasks: list[Task], on_event: OnEvent) -> None:
        ray = self.ray
        shipped = pack_main_entries()  # before Ray starts: a one-line error if impossible
        started_here = not ray.is_initialized()
        if started_here:
            kwargs = {"address": self.address} if self.address else {
                "num_cpus": (self.workers or 1) * self.threads,
                "include_dashboard": False,
            }
            try:
                ray.init(log_to_driver=False, configure_logging=False, **kwargs)
            except ConnectionError as exc:
                raise UserError(f"--address {self.address}: cannot reach Ray ({exc})") from None
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_remote_fit)
        pending = {}
        try:
            allow = parent_vouches_for_plugins(tasks)
            queue = deque(plan_units(tasks))
            # Submitted in batches: enough units in flight to keep every slot busy (two per
            # slot), more as they finish; results are collected many at a time.
            slots = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(
                1, self.threads))
            in_flight = max(2, UNITS_PER_SLOT * slots)
            while pending or queue:
                while queue and len(pending) < in_flight:
                    unit, batched = queue.popleft()
                    configs = [t.config for t in unit]
                    folders = [t.artefacts for t in unit]
                    pending[
                        remote.remote(configs, self.threads, batched, allow, shipped, folders)
                    ] = unit
                    for task in unit:
                        on_event(Event("started", task))
                refs = list(pending)
                done, rest = ray.wait(refs, num_returns=1)
                if rest:  # and whatever else has finished meanwhile
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    done = [*done, *more]
                for ref in done:
                    unit = pending.pop(ref)
                    try:
                        outcomes = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a lost worker fails its runs
                        outcomes = [("failed", f"Ray task failed: {type(exc).__name__}")] * len(
                            unit
                        )
                    for task, (status, payload) in zip(unit, outcomes, strict=True):
                        if status == "done":
                            on_event(Event("done", task, record=payload))
                        else:
                            on_event(Event("failed", task, error=payload))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            # Adaptive rounds and tuning batches keep the Ray runtime they started
            # (kept_workers), instead of starting Ray again per round.
            if started_here and not close_when_kept_workers_end(ray.shutdown):
                ray.shutdown()

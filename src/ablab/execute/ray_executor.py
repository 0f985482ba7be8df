"""Ray executor: the same tasks as Ray tasks, on a local Ray or a cluster (``address``).

Each unit of work (a run, or the runs of one batched program: ``plan_units``) is one Ray
task; it asks Ray for ``threads`` CPUs and sets the same torch thread count as the local
executor would, so both give identical results for the same runs. Where the runs train on
CUDA (``device = "cuda"``, or ``"auto"`` on a cluster with GPUs) a task also asks for
GPUs: one each, or ``gpus_per_run`` (``--gpus-per-run``; a fraction lets several programs
share a device). Ray then gives each task its own ``CUDA_VISIBLE_DEVICES``, and the task
reports the GPUs it got with its runs (``Event.placement``).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

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
    wants_cuda,
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
    outcomes = run_group(configs, batched=batched, artefacts=artefacts, limit_here=True)
    return outcomes, _placement()


def _placement() -> dict[str, Any]:
    """The GPUs Ray gave this task, and what the task's process sees of them."""
    import ray

    return {
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def gpus_per_task(
    configs: list[dict], cluster_gpus: float, gpus_per_run: float | None
) -> float:
    """The GPUs one Ray task (a unit of these runs) asks for: none unless the runs train on
    CUDA and the cluster has GPUs; then ``gpus_per_run`` (a fraction shares a device among
    several tasks), by default one.

    >>> gpus_per_task([{"device": "auto"}], 0, None), gpus_per_task([{"device": "auto"}], 2, None)
    (0.0, 1.0)
    >>> gpus_per_task([{"device": "cpu"}], 2, 0.5), gpus_per_task([{"device": "auto"}], 2, 0.5)
    (0.0, 0.5)
    """
    if cluster_gpus <= 0 or not wants_cuda(configs, True):
        return 0.0
    return 1.0 if gpus_per_run is None else float(gpus_per_run)


#: How many times a unit whose worker process died is run again (Ray's ``max_retries``).
WORKER_RETRIES = 2

#: Units in flight per worker slot (see RayExecutor.run).
UNITS_PER_SLOT = 2


class RayExecutor:
    def __init__(
        self,
        threads: int,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_run: float | None = None,
    ):
        if gpus_per_run is not None and gpus_per_run <= 0:
            raise UserError(f"--gpus-per-run: {gpus_per_run} is not allowed; give a number > 0")
        self.ray = _ray()
        self.threads, self.address, self.workers = threads, address, workers
        self.gpus_per_run = gpus_per_run

    def run(self, tasks: list[Task], on_event: OnEvent) -> None:
        ray = self.ray
        shipped = pack_main_entries()  # before Ray starts: a one-line error if impossible
        started_here = self._start_ray()
        # A worker process that dies (kill -9, its node lost) is a system failure: Ray
        # runs its unit again on another worker, the same pure function of the same
        # configs, so the numbers are those it would have given. An exception inside a
        # run is no such failure (run_group records it as the run's); never retried.
        remote = ray.remote(num_cpus=self.threads, max_retries=WORKER_RETRIES,
                            retry_exceptions=False)(_remote_fit)
        pending: dict[Any, list[Task]] = {}
        try:
            allow = parent_vouches_for_plugins(tasks)
            resources = ray.cluster_resources()
            cluster_gpus = self._cluster_gpus(resources)
            # Runs bound for the cluster's GPUs train as batched programs, whatever this
            # (the driver's) machine has.
            on_gpu = cluster_gpus > 0 and wants_cuda([t.config for t in tasks], True)
            queue = deque(plan_units(tasks, on_gpu=on_gpu or None))
            # Submitted in batches: enough units in flight to keep every slot busy (two per
            # slot), more as they finish; results are collected many at a time.
            slots = self.workers or max(1, int(resources.get("CPU", 1)) // max(1, self.threads))
            in_flight = max(2, UNITS_PER_SLOT * slots)
            while pending or queue:
                while queue and len(pending) < in_flight:
                    unit, batched = queue.popleft()
                    ref = self._submit(remote, unit, batched, cluster_gpus, allow=allow,
                                       shipped=shipped)
                    pending[ref] = unit
                    for task in unit:
                        on_event(Event("started", task))
                for ref in _finished(ray, list(pending)):
                    _report(ray, ref, pending.pop(ref), on_event)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            # Adaptive rounds and tuning batches keep the Ray runtime they started
            # (kept_workers), instead of starting Ray again per round.
            if started_here and not close_when_kept_workers_end(ray.shutdown):
                ray.shutdown()

    def _start_ray(self) -> bool:
        """Start Ray here unless it runs already (a cluster at ``address``, else a local
        one with a worker slot's CPUs per worker); whether it was started here."""
        if self.ray.is_initialized():
            return False
        kwargs = {"address": self.address} if self.address else {
            "num_cpus": (self.workers or 1) * self.threads,
            "include_dashboard": False,
        }
        try:
            self.ray.init(log_to_driver=False, configure_logging=False, **kwargs)
        except ConnectionError as exc:
            raise UserError(f"--address {self.address}: cannot reach Ray ({exc})") from None
        return True

    def _cluster_gpus(self, resources: dict[str, Any]) -> float:
        """The cluster's GPUs; ``--gpus-per-run`` on a cluster without any is an error."""
        cluster_gpus = float(resources.get("GPU", 0))
        if self.gpus_per_run is not None and cluster_gpus <= 0:
            raise UserError(f"--gpus-per-run {self.gpus_per_run}: the Ray cluster has no "
                            "GPUs; leave the option out to train on CPUs")
        return cluster_gpus

    def _submit(
        self, remote: Any, unit: list[Task], batched: bool, cluster_gpus: float, *,
        allow: bool, shipped: bytes | None,
    ) -> Any:
        """One unit as a Ray task (with the GPUs its runs ask for, the plugin consent and
        the components shipped from the driver); its object ref."""
        configs = [t.config for t in unit]
        folders = [t.artefacts for t in unit]
        gpus = gpus_per_task(configs, cluster_gpus, self.gpus_per_run)
        task_remote = remote.options(num_gpus=gpus) if gpus else remote
        return task_remote.remote(configs, self.threads, batched, allow, shipped, folders)


def _finished(ray: Any, refs: list[Any]) -> list[Any]:
    """Waits for one of ``refs`` to finish; it and whatever else has finished meanwhile."""
    done, rest = ray.wait(refs, num_returns=1)
    if rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        done = [*done, *more]
    return done


def _report(ray: Any, ref: Any, unit: list[Task], on_event: OnEvent) -> None:
    """A finished unit's runs, each done or failed, with the GPUs its task got; a task
    whose worker was lost fails each of its runs."""
    placement = None
    try:
        outcomes, placement = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a lost worker fails its runs
        outcomes = [("failed", f"Ray task failed: {type(exc).__name__}")] * len(unit)
    for task, (status, payload) in zip(unit, outcomes, strict=True):
        if status == "done":
            on_event(Event("done", task, record=payload, placement=placement))
        else:
            on_event(Event("failed", task, error=payload, placement=placement))

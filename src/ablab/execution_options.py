"""How a study executes, as one value: :class:`ExecutionOptions`.

The command line, ``Study.run``, :func:`ablab.runner.run_study`,
:func:`ablab.adaptive.run_until_decided` and :func:`ablab.tune.tune_study` all take one of
these instead of passing workers, threads, executor, address and the retry / force flags
one by one through their signatures. It says *how* runs are trained, never *what* is
trained (the study) or what is written afterwards (the report)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutionOptions"]


@dataclass(frozen=True)
class ExecutionOptions:
    """``workers`` / ``threads``: worker processes and torch threads each (None: chosen
    from the cores and the models). ``executor``: "local" or "ray" (``address``: the Ray
    cluster's). ``gpus_per_run``: GPUs each Ray task asks for where runs train on CUDA
    (None: one). ``retry_failed``: train failed runs again. ``force_new_variants``: add a
    file's new runs to a directory holding older ones. ``progress``: True for a
    notebook-friendly display, False / None for none, or an object with ``start`` /
    ``on_event`` / ``stop`` (:class:`ablab.runner.Progress`)."""

    workers: int | None = None
    threads: int | None = None
    executor: str = "local"
    address: str | None = None
    gpus_per_run: float | None = None
    retry_failed: bool = False
    force_new_variants: bool = False
    progress: Any = None

    @classmethod
    def of(cls, options: ExecutionOptions | None = None, **fields: Any) -> ExecutionOptions:
        """``options`` (or the defaults) with ``fields`` set: how the public functions
        keep their keyword arguments (``run_study(study, out, workers=2)``). An unknown
        keyword raises TypeError, as a misspelt argument does."""
        base = options if options is not None else cls()
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(base, **fields) if fields else base

    def but(self, **fields: Any) -> ExecutionOptions:
        """A copy with ``fields`` changed."""
        return dataclasses.replace(self, **fields)

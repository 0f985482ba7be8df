"""Components registered in ``__main__`` (a notebook cell, a script) reach the workers.

A worker process cannot import ``__main__`` of a notebook: a model registered in a cell
with ``@ablab.register_model`` exists only in the kernel. So the parent sends every such
registry entry to its workers *by value* (cloudpickle, as Ray and joblib do), and the
worker registers it again before validating any config. Running the cell was the user's
consent to run that code; the workers run exactly that code, nothing they import.

Entries registered from importable modules are not shipped: workers import those
(``plugins``). :func:`pack_main_entries` runs in the parent, :func:`install_entries` in
the worker (local pool initializer, Ray task).
"""

from __future__ import annotations

from typing import Any

from ablab.errors import UserError
from ablab.registry import (
    ACTIVATIONS,
    DATASETS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    PROBES,
    SCHEDULES,
    TRAINERS,
    Registry,
)

__all__ = [
    "ShippingError",
    "install_entries",
    "main_entries",
    "pack_main_entries",
    "pack_or_stay_here",
    "run_here",
]

REGISTRIES: dict[str, Registry] = {
    r.kind: r for r in (
        DATASETS, MODELS, ACTIVATIONS, LOSSES, OPTIMIZERS, SCHEDULES, PROBES, TRAINERS
    )
}

MAIN_MODULES = ("__main__", "__mp_main__")


class ShippingError(UserError):
    """A component defined in ``__main__`` cannot be sent to worker processes."""


def main_entries() -> list[tuple[str, str]]:
    """``(kind, name)`` of every registered component defined in ``__main__``."""
    return [
        (kind, entry.name)
        for kind, registry in REGISTRIES.items()
        for entry in registry
        if getattr(entry.fn, "__module__", None) in MAIN_MODULES
    ]


def pack_main_entries() -> bytes | None:
    """The ``__main__`` entries as one cloudpickle payload for the workers (None when
    there are none). Raises :class:`ShippingError` with one line, before any run starts,
    when they cannot be pickled; training them in this process (``workers=1``) still
    works."""
    wanted = main_entries()
    if not wanted:
        return None
    payload = [
        (kind, name, entry.summary, entry.fn, entry.meta)
        for kind, name in wanted
        for entry in [REGISTRIES[kind].get(name)]
    ]
    try:
        import cloudpickle

        return cloudpickle.dumps(payload)
    except Exception as exc:  # noqa: BLE001 - ImportError, PicklingError, TypeError...
        kind, name = wanted[0]
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ShippingError(
            f"{kind} {name!r} is defined in __main__ (a notebook cell or a script) and cannot "
            f"be sent to worker processes ({type(exc).__name__}: {detail}); run the study in "
            "this process with workers=1, or move it into a module named in `plugins`"
        ) from None


def install_entries(blob: bytes | None) -> None:
    """In a worker: register the shipped ``__main__`` entries, replacing any entry of the
    same name (a script's spawned worker re-imports it as ``__mp_main__``)."""
    if not blob:
        return
    import cloudpickle

    entries: list[tuple[str, str, str, Any, dict[str, Any]]] = cloudpickle.loads(blob)
    for kind, name, summary, fn, meta in entries:
        registry = REGISTRIES[kind]
        registry._entries.pop(name, None)  # noqa: SLF001 - same package family
        registry.register(name, summary, **meta)(fn)


def pack_or_stay_here(workers: int) -> tuple[bytes | None, bool]:
    """What an executor with ``workers`` processes sends them: ``(payload, False)``; or,
    when the ``__main__`` entries cannot be shipped and ``workers == 1``, ``(None, True)``:
    train in this process, where they are registered."""
    try:
        return pack_main_entries(), False
    except ShippingError:
        if workers == 1:
            return None, True
        raise


def run_here(tasks: list[Any], on_event: Any) -> None:
    """Train the tasks one unit after another in this process (no worker to ship to)."""
    from ablab.execute.base import Event, plan_units, run_group

    for unit, batched in plan_units(tasks):
        for task in unit:
            on_event(Event("started", task))
        outcomes = run_group(
            [t.config for t in unit],
            lambda i, record, unit=unit: on_event(Event("epoch", unit[i], record=record)),
            batched,
            [t.artefacts for t in unit],
            limit_here=True,  # no worker process to kill: the time limit is kept here
        )
        for task, (status, payload) in zip(unit, outcomes, strict=True):
            if status == "done":
                on_event(Event("done", task, record=payload))
            else:
                on_event(Event("failed", task, error=payload))

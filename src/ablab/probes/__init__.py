"""Diagnostics recorded during training (dead units, activation distributions, gradient
flow, weight norms, decision boundaries).

The ``PROBES`` registry is filled by :mod:`ablab.probes.catalogue` (no torch; loaded by
``ablab.registry.load_builtins``); each probe's module loads when a run attaches it. The
names below are imported from their modules on first use (``ablab.lazy``), ``decode_grid``
from :mod:`ablab.stored_grid` (numpy), where the analysis reads grids too.
"""

from typing import Any

from ablab.lazy import lazy_package

__all__, _from_submodules, __dir__ = lazy_package(__name__, globals(), {
    "base": ("ProbeContext", "ProbeSet", "attach_probes"),
})
__all__ = [*__all__, "decode_grid"]


def __getattr__(name: str) -> Any:
    if name == "decode_grid":
        from ablab.stored_grid import decode_grid

        return decode_grid
    return _from_submodules(name)

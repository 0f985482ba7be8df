"""Diagnostics recorded during training (dead units, activation distributions, gradient
flow, weight norms, decision boundaries).

The ``PROBES`` registry is filled by :mod:`ablab.probes.catalogue` (no torch; loaded by
``ablab.registry.load_builtins``); each probe's module loads when a run attaches it. The
names of :mod:`.base` are imported on first use (``ablab.lazy``).
"""

from ablab.lazy import lazy_package
from ablab.stored_grid import decode_grid

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), {
    "base": ("ProbeContext", "ProbeSet", "attach_probes"),
})
__all__ = [*__all__, "decode_grid"]

"""Diagnostics recorded during training (dead units, activation distributions, gradient
flow, weight norms, decision boundaries).

Importing this package fills the ``PROBES`` registry.
"""

from ablab.probes import boundary as _boundary  # noqa: F401  (registers "boundary")
from ablab.probes import gradients as _gradients  # noqa: F401  (registers gradients, weights)
from ablab.probes import units as _units  # noqa: F401  (registers dead_units, activations)
from ablab.probes.base import ProbeContext, ProbeSet, attach_probes
from ablab.stored_grid import decode_grid

__all__ = ["ProbeContext", "ProbeSet", "attach_probes", "decode_grid"]

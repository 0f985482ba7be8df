"""The built-in probes as registry entries, without torch: each entry declares the probe's
options (its keyword-only parameters) and, when a run attaches it, imports the module that
implements it (:mod:`.boundary`, :mod:`.gradients`, :mod:`.units`, which load torch) and
calls the function of the same name there, whose docstring says what it records.

Importing this module fills the ``PROBES`` registry (``ablab.registry.load_builtins``);
``tests/test_light_cli.py`` checks that each entry's options are its implementation's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ablab.registry import PROBES

if TYPE_CHECKING:
    from ablab.probes.base import ProbeContext


@PROBES.register("boundary", "Decision-boundary probabilities on a 2-D grid (2-D inputs only)",
                 classification_only=True)
def boundary(
    ctx: ProbeContext,
    *,
    grid: Annotated[int, Field(ge=10, le=1000)] = 200,
    margin: Annotated[float, Field(ge=0)] = 0.5,
    epochs: list[Annotated[int, Field(ge=0)]] = [],
) -> Any:
    """See :func:`ablab.probes.boundary.boundary`."""
    from ablab.probes import boundary as implementation

    return implementation.boundary(ctx, grid=grid, margin=margin, epochs=epochs)


@PROBES.register("gradients", "Gradient norm per parameter layer and overall, mean per epoch")
def gradients(ctx: ProbeContext) -> Any:
    """See :func:`ablab.probes.gradients.gradients`."""
    from ablab.probes import gradients as implementation

    return implementation.gradients(ctx)


@PROBES.register("weights", "L2 norm of each parameter layer's weight per epoch")
def weights(ctx: ProbeContext) -> Any:
    """See :func:`ablab.probes.gradients.weights`."""
    from ablab.probes import gradients as implementation

    return implementation.weights(ctx)


@PROBES.register("dead_units", "Dead units and zero-activation fraction per activation layer")
def dead_units(ctx: ProbeContext, *, every: Annotated[int, Field(ge=1)] = 1) -> Any:
    """See :func:`ablab.probes.units.dead_units`."""
    from ablab.probes import units as implementation

    return implementation.dead_units(ctx, every=every)


@PROBES.register("activations", "Histogram, mean, std and saturation per activation layer")
def activations(
    ctx: ProbeContext,
    *,
    bins: Annotated[int, Field(ge=2, le=1000)] = 50,
    limit: Annotated[float, Field(gt=0)] = 5.0,
    every: Annotated[int, Field(ge=1)] = 1,
) -> Any:
    """See :func:`ablab.probes.units.activations`."""
    from ablab.probes import units as implementation

    return implementation.activations(ctx, bins=bins, limit=limit, every=every)

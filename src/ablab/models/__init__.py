"""Models and activations: registered architectures, the spec they are built from, and
helpers probes use to find layers.

The registering modules (:mod:`.activations`, :mod:`.architectures`) and the plan check
(:mod:`.plan_check`) import no torch; the names below are imported from their modules on
first use (``ablab.lazy``), so ``import ablab.models.architectures`` does not load
:mod:`.core` and torch with it. ``ablab.registry.load_builtins`` fills ``MODELS`` and
``ACTIVATIONS``.
"""

from ablab.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), {
    "blocks": ("conv_block", "linear_block", "lrn_layer", "pool_layer"),
    "activation_module": ("Activation",),
    "core": ("activation_layers", "apply_init", "build_model",
             "count_parameters", "parameter_layers"),
    "spec": ("InputTooSmall", "ModelSpec", "input_requirement"),
    "plan_check": ("check_varied_options",),
})

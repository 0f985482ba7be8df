"""Models and activations: registered architectures, the spec they are built from, and
helpers probes use to find layers.

Importing this package fills the ``MODELS`` and ``ACTIVATIONS`` registries.
"""

from ablab.models import activations as _activations  # noqa: F401  (fills ACTIVATIONS)
from ablab.models import architectures as _architectures  # noqa: F401  (fills MODELS)
from ablab.models.blocks import conv_block, linear_block, lrn_layer, pool_layer
from ablab.models.core import (
    Activation,
    InputTooSmall,
    ModelSpec,
    activation_layers,
    apply_init,
    build_model,
    check_varied_options,
    count_parameters,
    input_requirement,
    parameter_layers,
)
from ablab.study import add_plan_check

add_plan_check(check_varied_options)  # a varied generic option must reach the model

__all__ = [
    "Activation",
    "InputTooSmall",
    "ModelSpec",
    "activation_layers",
    "apply_init",
    "build_model",
    "conv_block",
    "count_parameters",
    "input_requirement",
    "linear_block",
    "lrn_layer",
    "parameter_layers",
    "pool_layer",
]

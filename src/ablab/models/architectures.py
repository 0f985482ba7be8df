"""The architectures a study may choose (``model.name``), one registered function each.

Each takes the common :class:`~ablab.models.core.ModelSpec` (input shape, class count,
activation, dropout / batch-norm overrides) plus its own keyword-only options, and returns
an ``nn.Sequential(features=..., classifier=...)`` whose modules are registered in forward
order. ``min_hw`` in the registration is the smallest image side the layers accept;
``build_model`` checks it before building.

Architectures follow the source experiments:
source 000 (E1 ``simple_cnn``, E2 ``improved_cnn``), source 002 (``mnist_net`` = Model1/2,
``mnist_cnn3`` = Model3), source 003 (``vgg7``), source 004 (``keras_conv1``, ``keras_cnn3``).

``batch_norm=True`` on an architecture without batch norm adds ``BatchNorm2d`` after each
conv (before its activation; for ``mlp`` ``BatchNorm1d`` after each hidden linear);
``batch_norm=False`` removes every batch norm layer the architecture has by default.

No torch is imported here until a model is built: each builder imports torch and the
layer helpers of :mod:`ablab.models.blocks` itself, so ``ablab list`` and a study's plan
need neither. Each registration also declares what the builder does with the generic
options (``honours``: the ones it reads; ``defaults``: its own value of each), which the
plan check and ``ablab list models`` read instead of building the model;
``tests/test_light_cli.py`` builds every architecture to check them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from ablab.config import Fraction, PositiveInt
from ablab.models.spec import GENERIC_OPTIONS, ModelSpec, PoolKind
from ablab.registry import MODELS

if TYPE_CHECKING:
    from torch import nn

#: Every generic option: what a builder honours that reads all three.
ALL_GENERIC = tuple(GENERIC_OPTIONS)


def _mlp_honours(options: dict[str, Any]) -> tuple[str, ...]:
    """Without hidden layers an MLP has no activation to choose."""
    return ALL_GENERIC if options["hidden"] else ("dropout", "batch_norm")


def _mlp_flops(options: dict[str, Any], shape: tuple[int, ...], num_classes: int) -> float:
    """An MLP's forward FLOPs per example (as torch's flop counter counts them): 2 × in ×
    out of each linear layer (see :mod:`ablab.models.flops`)."""
    sizes = [math.prod(shape), *options["hidden"], num_classes]
    return float(sum(2 * a * b for a, b in zip(sizes, sizes[1:], strict=False)))


def _vgg7_honours(options: dict[str, Any]) -> tuple[str, ...]:
    """The ``gap`` head has no dropout (``gap_dropout`` adds it after convs)."""
    return ("activation", "batch_norm") if options["head"] == "gap" else ALL_GENERIC


@MODELS.register("mlp", "Multi-layer perceptron on flattened inputs", honours=_mlp_honours,
                 defaults={"dropout": 0.0, "batch_norm": False}, flops=_mlp_flops)
def mlp(spec: ModelSpec, *, hidden: list[PositiveInt] = [256, 128]) -> nn.Module:
    """``Flatten → (Linear → [BN] → act → [Dropout]) per hidden size → Linear(classes)``."""
    from torch import nn

    from ablab.models.blocks import linear_block, network

    bn, dropout = spec.batch_norm_or(False), spec.dropout_or(0.0)
    n_in = 1
    for d in spec.input_shape:
        n_in *= d
    features: list[nn.Module] = [nn.Flatten()]
    for fin, fout in zip([n_in, *hidden], hidden, strict=False):
        features += linear_block(spec, fin, fout, bn=bn, dropout=dropout)
    last = hidden[-1] if hidden else n_in
    return network(features, [nn.Linear(last, spec.num_classes)])


@MODELS.register("simple_cnn", "Two conv blocks + FC head (source 000 E1, CIFAR)", min_hw=4,
                 honours=ALL_GENERIC, defaults={"dropout": 0.5, "batch_norm": True})
def simple_cnn(spec: ModelSpec, *, pool: PoolKind = "max", lrn: bool = False) -> nn.Module:
    """``[Conv3 → BN → act → Pool] × (32, 64) → Linear(128) → act → Dropout(0.5) → Linear``."""
    from ablab.models.blocks import conv_block, with_fc_head

    bn = spec.batch_norm_or(True)
    features = [
        *conv_block(spec, spec.in_channels, 32, bn=bn, pool=pool, lrn=lrn),
        *conv_block(spec, 32, 64, bn=bn, pool=pool, lrn=lrn),
    ]
    return with_fc_head(spec, features, 128, spec.dropout_or(0.5))


@MODELS.register("improved_cnn", "Six conv layers in three pooled pairs (source 000 E2)", min_hw=8,
                 honours=ALL_GENERIC, defaults={"dropout": 0.5, "batch_norm": True})
def improved_cnn(spec: ModelSpec, *, pool: PoolKind = "max", lrn: bool = False) -> nn.Module:
    """``[Conv3 → BN → act, Conv3 → BN → act → Pool] × (32/64, 128/128, 256/256)
    → Linear(256) → act → Dropout(0.5) → Linear``."""
    from ablab.models.blocks import conv_block, with_fc_head

    bn = spec.batch_norm_or(True)
    features: list[nn.Module] = []
    cin = spec.in_channels
    for first, second in ((32, 64), (128, 128), (256, 256)):
        features += conv_block(spec, cin, first, bn=bn, lrn=lrn)
        features += conv_block(spec, first, second, bn=bn, pool=pool, lrn=lrn)
        cin = second
    return with_fc_head(spec, features, 256, spec.dropout_or(0.5))


@MODELS.register("mnist_net", "PyTorch MNIST example net (source 002 Model1/Model2)", min_hw=16,
                 honours=ALL_GENERIC, defaults={"dropout": 0.0, "batch_norm": False})
def mnist_net(
    spec: ModelSpec,
    *,
    conv_dropout: Fraction = 0.0,
    pool: PoolKind = "max",
    lrn: bool = False,
) -> nn.Module:
    """``Conv5(10) → Pool → act → Conv5(20) → [Dropout2d] → Pool → act → Linear(50) → act
    → [Dropout] → Linear``. Model2 is ``conv_dropout = 0.5``."""
    from ablab.models.blocks import conv_block, with_fc_head

    bn = spec.batch_norm_or(False)
    common = dict(kernel=5, padding=0, bn=bn, pool=pool, pool_first=True, lrn=lrn)
    features = [
        *conv_block(spec, spec.in_channels, 10, **common),
        *conv_block(spec, 10, 20, dropout2d=conv_dropout, **common),
    ]
    return with_fc_head(spec, features, 50, spec.dropout_or(0.0))


@MODELS.register("mnist_cnn3", "Three padded conv blocks (source 002 Model3)", min_hw=8,
                 honours=ALL_GENERIC, defaults={"dropout": 0.0, "batch_norm": False})
def mnist_cnn3(spec: ModelSpec, *, pool: PoolKind = "max", lrn: bool = False) -> nn.Module:
    """``[Conv3 → [BN] → Pool → act] × (32, 64, 128) → Linear(128) → act → [Dropout]
    → Linear``."""
    from ablab.models.blocks import conv_block, with_fc_head

    bn = spec.batch_norm_or(False)
    features: list[nn.Module] = []
    cin = spec.in_channels
    for cout in (32, 64, 128):
        features += conv_block(spec, cin, cout, bn=bn, pool=pool, pool_first=True, lrn=lrn)
        cin = cout
    return with_fc_head(spec, features, 128, spec.dropout_or(0.0))


VGG7_PLAN = (16, 32, "P", 64, 128, "P", 128, "P", 256, 256, "P")
#: Convs (1-based) followed by Dropout in the source's ``gap_dropout`` model: conv4, conv5,
#: conv7, each after its activation and before its pool (notebook cell 13).
VGG7_DROPOUT_CONVS = (4, 5, 7)
VGG7_HEADS = ("fc", "gap", "gap_dropout", "gap_linear", "gap_dropout_linear")


@MODELS.register(
    "vgg7", "VGG-style 7-conv net with fc or global-average-pool heads (source 003)", min_hw=16,
    honours=_vgg7_honours, defaults={"dropout": 0.0, "batch_norm": False},
)
def vgg7(
    spec: ModelSpec,
    *,
    head: Literal["fc", "gap", "gap_dropout", "gap_linear", "gap_dropout_linear"] = "fc",
    pool: PoolKind = "max",
) -> nn.Module:
    """Conv3 stack ``16, 32, P, 64, 128, P, 128, P, 256, 256, P`` (act after each conv),
    then the head. The source's (github kasurashan/CIFAR-10-CNN-custom) three models:

    - ``fc``: ``Flatten(1024) → Linear(1024) → act → [Dropout] → Linear(classes)``;
    - ``gap``: global average pool of the 256-channel output used directly as the logits
      (no linear layer; see :class:`~ablab.models.blocks.ChannelLogits`);
    - ``gap_dropout``: as ``gap``, with ``Dropout(0.5)`` after the activation of conv4,
      conv5 and conv7, before their pools (``model.dropout`` overrides the 0.5).

    ablab's earlier heads, kept under their own names: ``gap_linear`` = ``GAP → Linear(256
    → classes)``; ``gap_dropout_linear`` = ``GAP → Dropout(0.5) → Linear``."""
    from torch import nn

    from ablab.models.blocks import (
        ChannelLogits,
        conv_block,
        dropout_layers,
        network,
        pool_layer,
        with_fc_head,
    )

    bn = spec.batch_norm_or(False)
    conv_dropout = spec.dropout_or(0.5) if head == "gap_dropout" else 0.0
    features: list[nn.Module] = []
    cin = spec.in_channels
    conv = 0
    for item in VGG7_PLAN:
        if item == "P":
            features.append(pool_layer(pool))
        else:
            conv += 1
            features += conv_block(spec, cin, item, bn=bn)
            if conv in VGG7_DROPOUT_CONVS:
                features += dropout_layers(conv_dropout)
            cin = item
    if head == "fc":
        return with_fc_head(spec, features, 1024, spec.dropout_or(0.0))
    gap = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if head in ("gap", "gap_dropout"):
        return network(features, [*gap, ChannelLogits(cin, spec.num_classes)])
    dropout = spec.dropout_or(0.5 if head == "gap_dropout_linear" else 0.0)
    return network(features, [*gap, *dropout_layers(dropout), nn.Linear(cin, spec.num_classes)])


@MODELS.register("keras_conv1", "One conv layer + dense head (source 004 baseline)", min_hw=2,
                 honours=ALL_GENERIC, defaults={"dropout": 0.5, "batch_norm": False})
def keras_conv1(spec: ModelSpec, *, pool: PoolKind = "max") -> nn.Module:
    """``Conv3(10, same) → act → Pool → Flatten → Dropout(0.5) → Dense(100) → act
    → Dense``."""
    from torch import nn

    from ablab.models.blocks import (
        conv_block,
        dropout_layers,
        flat_features,
        linear_block,
        network,
    )

    bn = spec.batch_norm_or(False)
    features = nn.Sequential(*conv_block(spec, spec.in_channels, 10, bn=bn, pool=pool))
    n = flat_features(features, spec.input_shape)
    classifier = [
        nn.Flatten(),
        *dropout_layers(spec.dropout_or(0.5)),
        *linear_block(spec, n, 100),
        nn.Linear(100, spec.num_classes),
    ]
    return network(features, classifier)


@MODELS.register(
    "keras_cnn3", "Three conv blocks with BN and dropout (source 004 improved)", min_hw=8,
    honours=ALL_GENERIC, defaults={"dropout": 0.5, "batch_norm": True},
)
def keras_cnn3(
    spec: ModelSpec, *, block_dropout: Fraction = 0.25, pool: PoolKind = "max"
) -> nn.Module:
    """``[Conv3(same) → act → BN → Pool → Dropout(0.25)] × (32, 64, 128) → Flatten
    → Dense(256) → act → BN → Dropout(0.5) → Dense``; batch norm with Keras's defaults."""
    from torch import nn

    from ablab.models.blocks import (
        dropout_layers,
        flat_features,
        keras_bn,
        network,
        pool_layer,
    )

    bn = spec.batch_norm_or(True)
    features: list[nn.Module] = []
    cin = spec.in_channels
    for cout in (32, 64, 128):
        features += [nn.Conv2d(cin, cout, 3, padding=1), spec.act()]
        features += [keras_bn(cout)] if bn else []
        features += [pool_layer(pool), *dropout_layers(block_dropout)]
        cin = cout
    feats = nn.Sequential(*features)
    n = flat_features(feats, spec.input_shape)
    classifier = [
        nn.Flatten(),
        nn.Linear(n, 256),
        spec.act(),
        *([keras_bn(256, dims=1)] if bn else []),
        *dropout_layers(spec.dropout_or(0.5)),
        nn.Linear(256, spec.num_classes),
    ]
    return network(feats, classifier)

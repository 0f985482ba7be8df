"""Layer helpers shared by the architectures. Each returns modules in forward order, so a
model built from them registers its layers in the order they run (probes rely on it)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ablab.models.spec import InputTooSmall, ModelSpec, PoolKind

_POOLS: dict[str, Callable[[], nn.Module]] = {
    "max": lambda: nn.MaxPool2d(2, stride=2),
    # AlexNet's overlapping pooling; same output size as "max" on even sizes.
    "overlap": lambda: nn.MaxPool2d(3, stride=2, padding=1),
    "avg": lambda: nn.AvgPool2d(2, stride=2),
}


def pool_layer(kind: PoolKind) -> nn.Module:
    """A 2× spatial down-sampling layer of the given kind."""
    return _POOLS[kind]()


def lrn_layer() -> nn.Module:
    """AlexNet's local response normalisation."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def keras_bn(num_features: int, dims: int = 2) -> nn.Module:
    """Batch norm with Keras defaults (epsilon 1e-3, momentum 0.99 = PyTorch's 0.01)."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(num_features, eps=1e-3, momentum=0.01)


def conv_block(
    spec: ModelSpec,
    cin: int,
    cout: int,
    *,
    kernel: int = 3,
    padding: int = 1,
    bn: bool = False,
    pool: PoolKind | None = None,
    pool_first: bool = False,
    lrn: bool = False,
    dropout2d: float = 0.0,
) -> list[nn.Module]:
    """``Conv → [BN] → [Dropout2d] → act → [LRN] → [Pool]``, or with ``pool_first``
    ``Conv → [BN] → [Dropout2d] → Pool → act → [LRN]`` (the PyTorch MNIST example's order)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=padding)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if dropout2d > 0:
        layers.append(nn.Dropout2d(dropout2d))
    post_act = [spec.act(), *([lrn_layer()] if lrn else [])]
    pooling = [pool_layer(pool)] if pool is not None else []
    layers += [*pooling, *post_act] if pool_first else [*post_act, *pooling]
    return layers


def linear_block(
    spec: ModelSpec, fin: int, fout: int, *, bn: bool = False, dropout: float = 0.0
) -> list[nn.Module]:
    """``Linear → [BatchNorm1d] → act → [Dropout]``."""
    layers: list[nn.Module] = [nn.Linear(fin, fout)]
    if bn:
        layers.append(nn.BatchNorm1d(fout))
    layers.append(spec.act())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def dropout_layers(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def output_shape(features: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape (without batch) of ``features`` applied to one input: a dry run in eval mode,
    so batch-norm statistics are untouched and no random numbers are drawn. Raises
    InputTooSmall when the input does not fit the layers."""
    device = None
    if torch.get_default_device().type == "meta" or any(
        t.is_meta for t in (*features.parameters(), *features.buffers())
    ):
        # A model built on the meta device only to learn what its builder reads: the dry
        # run goes to a CPU copy with uninitialised memory (values do not matter for a
        # shape). Meta-device ops run Python decompositions that import torch._dynamo:
        # ~3 s of `ablab list studies` and of loading any CNN study.
        features, device = copy.deepcopy(features).to_empty(device="cpu"), "cpu"
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape, device=device))
    except RuntimeError as exc:
        raise InputTooSmall(str(exc)) from None
    finally:
        features.train(was_training)
    if out.numel() == 0:
        raise InputTooSmall(f"output shape {tuple(out.shape)}")
    return tuple(out.shape[1:])


def flat_features(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Number of features ``features`` produces per input, once flattened."""
    n = 1
    for d in output_shape(features, input_shape):
        n *= d
    return n


def network(features: Iterable[nn.Module], classifier: Iterable[nn.Module]) -> nn.Sequential:
    """``Sequential(features=Sequential(...), classifier=Sequential(...))``."""
    feats = features if isinstance(features, nn.Sequential) else nn.Sequential(*features)
    return nn.Sequential(OrderedDict(features=feats, classifier=nn.Sequential(*classifier)))


def with_fc_head(
    spec: ModelSpec, features: list[nn.Module], hidden: int, dropout: float
) -> nn.Sequential:
    """``features → Flatten → Linear(n→hidden) → act → [Dropout] → Linear(hidden→classes)``,
    with ``n`` found by a dry run so any input size the features accept works."""
    feats = nn.Sequential(*features)
    n = flat_features(feats, spec.input_shape)
    head = [
        nn.Flatten(),
        *linear_block(spec, n, hidden, dropout=dropout),
        nn.Linear(hidden, spec.num_classes),
    ]
    return network(feats, head)


class ChannelLogits(nn.Module):
    """Pooled channels used directly as logits, with no linear layer (source report 003's
    GAP heads: the 256 averaged channels of the last conv go straight into the
    cross-entropy, so the 246 channels beyond the 10 classes are trained as "wrong class"
    logits too).

    It returns every channel, in training and in evaluation alike: the loss is the
    source's cross-entropy over all of them, and an argmax on a channel >= ``num_classes``
    is a wrong prediction, as in the source (see ``train.metrics.confusion_matrix``)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        if channels < num_classes:
            raise ValueError(
                f"{channels} channels cannot be the logits of {num_classes} classes"
            )
        self.channels = channels
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_classes={self.num_classes}"

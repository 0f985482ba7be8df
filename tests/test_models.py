"""Models and activations: shapes, one training step per activation, layer listings,
initialisation, options, input-shape errors and exact parameter counts."""

import math

import pytest
import torch
from torch import nn

from ablab.config import ModelConfig
from ablab.errors import ConfigError, FieldError
from ablab.models import (
    Activation,
    ModelSpec,
    activation_layers,
    apply_init,
    build_model,
    count_parameters,
    parameter_layers,
)
from ablab.registry import ACTIVATIONS, MODELS

CIFAR, FASHION, DIGITS_IMG, DIGITS_FLAT, MOONS = (3, 32, 32), (1, 28, 28), (1, 8, 8), (64,), (2,)

# The natural input of each registered model (what its source experiment trained on).
NATURAL_INPUT = {
    "mlp": DIGITS_FLAT,
    "simple_cnn": CIFAR,
    "improved_cnn": CIFAR,
    "mnist_net": FASHION,
    "mnist_cnn3": FASHION,
    "vgg7": CIFAR,
    "keras_conv1": FASHION,
    "keras_cnn3": CIFAR,
}
# Models whose layers cannot take an 8×8 image.
TOO_SMALL_FOR_8x8 = {"mnist_net", "vgg7"}

ALL_ACTIVATIONS = [
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "softplus",
    "mish",
]


def build(name, shape, classes=10, **kw):
    return build_model(ModelConfig(name=name, **kw), shape, classes)


def _built_in(registry) -> set[str]:
    # other test modules register their own models (test_no_silent_mistakes, test_user_data): only
    # ablab's own entries must be covered here, whatever order the tests run in
    return {n for n in registry.names() if registry.get(n).fn.__module__.startswith("ablab.")}


def test_every_model_and_activation_is_covered():
    assert _built_in(MODELS) == set(NATURAL_INPUT)
    assert _built_in(ACTIVATIONS) == set(ALL_ACTIVATIONS)


@pytest.mark.parametrize("shape", [CIFAR, FASHION, DIGITS_IMG], ids=["cifar", "fashion", "8x8"])
@pytest.mark.parametrize("name", sorted(NATURAL_INPUT))
def test_forward_shape(name, shape):
    if shape == DIGITS_IMG and name in TOO_SMALL_FOR_8x8:
        with pytest.raises(ConfigError, match=r"^model\.name: .*H, W >= 16.*\(1, 8, 8\)"):
            build(name, shape)
        return
    model = build(name, shape, classes=7)
    assert model(torch.randn(4, *shape)).shape == (4, 7)


def test_mlp_takes_flat_input():
    model = build("mlp", DIGITS_FLAT)
    assert model(torch.randn(4, 64)).shape == (4, 10)


@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
@pytest.mark.parametrize("name", sorted(NATURAL_INPUT))
def test_one_sgd_step(name, activation):
    torch.manual_seed(0)
    shape = NATURAL_INPUT[name]
    model = build(name, shape, activation=activation)
    acts = activation_layers(model)
    assert acts and all(a.name == activation for _, a in acts)
    layers = parameter_layers(model)
    first, last = layers[0][1].weight, layers[-1][1].weight
    before = (first.detach().clone(), last.detach().clone())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, *shape), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not torch.equal(before[0], first)
    assert not torch.equal(before[1], last)


def test_activation_options_reach_the_module():
    model = build(
        "mlp", DIGITS_FLAT, hidden=[8], activation={"name": "leaky_relu", "negative_slope": 0.2}
    )
    ((_, act),) = activation_layers(model)
    assert isinstance(act.fn, nn.LeakyReLU) and act.fn.negative_slope == 0.2


def test_spec_act_returns_new_modules():
    spec = ModelSpec(
        input_shape=(4,), num_classes=2, activation_name="elu", activation_options={"alpha": 0.5}
    )
    a, b = spec.act(), spec.act()
    assert a is not b and isinstance(a, Activation) and a.name == "elu" and a.fn.alpha == 0.5
    assert spec.dropout_or(0.3) == 0.3 and spec.batch_norm_or(True) is True
    spec2 = ModelSpec((4,), 2, "relu", {}, dropout=0.0, batch_norm=False)
    assert spec2.dropout_or(0.3) == 0.0 and spec2.batch_norm_or(True) is False


@pytest.mark.parametrize(
    "name,shape,count",
    [
        ("mlp", DIGITS_FLAT, 2),
        ("simple_cnn", CIFAR, 3),
        ("improved_cnn", CIFAR, 7),
        ("mnist_net", FASHION, 3),
        ("mnist_cnn3", FASHION, 4),
        ("vgg7", CIFAR, 8),
        ("keras_conv1", FASHION, 2),
        ("keras_cnn3", CIFAR, 4),
    ],
)
def test_activation_layers_count_and_forward_order(name, shape, count):
    model = build(name, shape, activation="tanh")
    acts = activation_layers(model)
    assert len(acts) == count
    assert all(isinstance(m, Activation) and m.name == "tanh" for _, m in acts)
    # Forward order: hooks fire in the same order as the listing.
    fired = []
    for qual, m in acts:
        m.register_forward_hook(lambda mod, i, o, qual=qual: fired.append(qual))
    model.eval()
    model(torch.randn(2, *shape))
    assert fired == [q for q, _ in acts]


def test_parameter_layers_in_forward_order():
    model = build("simple_cnn", CIFAR)
    kinds = [type(m).__name__ for _, m in parameter_layers(model)]
    assert kinds == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "Linear", "Linear"]


# ---------------------------------------------------------------- initialisation


def test_normal_init_std_and_zero_bias():
    torch.manual_seed(0)
    model = build("mlp", (1000,), hidden=[1000], init="normal(0, 0.01)")
    lin = parameter_layers(model)[0][1]
    assert abs(lin.weight.std().item() - 0.01) < 0.0005
    assert abs(lin.weight.mean().item()) < 0.0005
    assert torch.count_nonzero(lin.bias) == 0


def test_glorot_uniform_bounds():
    torch.manual_seed(0)
    model = build("mlp", (300,), hidden=[200], init="glorot_uniform")
    w = parameter_layers(model)[0][1].weight
    bound = math.sqrt(6 / (300 + 200))
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.98 * bound


def test_kaiming_normal_on_conv_leaves_bn_alone():
    torch.manual_seed(0)
    model = build("improved_cnn", CIFAR, init="kaiming_normal")
    convs = [m for _, m in parameter_layers(model) if isinstance(m, nn.Conv2d)]
    w = convs[-1].weight  # 256 × 256 × 3 × 3, fan_in 2304
    assert abs(w.std().item() - math.sqrt(2 / 2304)) < 0.002
    bns = [m for _, m in parameter_layers(model) if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_default_init_is_pytorchs():
    cfg = ModelConfig(name="simple_cnn")
    torch.manual_seed(3)
    built = build_model(cfg, CIFAR, 10)
    torch.manual_seed(3)
    raw = MODELS.get("simple_cnn").fn(ModelSpec.from_config(cfg, CIFAR, 10), **cfg.options)
    for (k, a), (_, b) in zip(built.state_dict().items(), raw.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert torch.count_nonzero(parameter_layers(built)[0][1].bias) > 0


def test_apply_init_rejects_unknown_spec():
    with pytest.raises(ConfigError, match=r"^model\.init:"):
        apply_init(nn.Linear(2, 2), "uniform")


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("name", ["simple_cnn", "improved_cnn", "mnist_net", "mnist_cnn3"])
def test_overlap_pool_and_lrn(name):
    shape = NATURAL_INPUT[name]
    model = build(name, shape, pool="overlap", lrn=True)
    assert any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    assert model(torch.randn(4, *shape)).shape == (4, 10)
    # Same flatten size as 2×2 max pooling on even sizes (CIFAR).
    if shape == CIFAR:
        assert count_parameters(model) == count_parameters(build(name, shape))


@pytest.mark.parametrize("name", sorted(set(NATURAL_INPUT) - {"mlp"}))
def test_avg_pool(name):
    shape = NATURAL_INPUT[name]
    model = build(name, shape, pool="avg")
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model(torch.randn(4, *shape)).shape == (4, 10)


def test_vgg7_heads():
    """Source report 003's heads: ``gap`` and ``gap_dropout`` have no linear layer (the
    256 pooled channels are the logits while training); ``gap_dropout`` puts Dropout(0.5)
    after the activations of conv4, conv5 and conv7, before their pools."""
    heads = ("fc", "gap", "gap_dropout", "gap_linear", "gap_dropout_linear")
    fc, gap, gap_do, gap_lin, gap_do_lin = (build("vgg7", CIFAR, head=h) for h in heads)
    convs = (3 * 16 + 16 * 32 + 32 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256) * 9
    convs += 16 + 32 + 64 + 128 + 128 + 256 + 256
    assert count_parameters(gap) == count_parameters(gap_do) == convs == 1_130_272
    assert count_parameters(fc) == convs + (1024 * 1024 + 1024) + (1024 * 10 + 10)
    assert count_parameters(gap_lin) == count_parameters(gap_do_lin) == convs + 256 * 10 + 10
    assert not any(isinstance(m, nn.Linear) for m in (*gap.modules(), *gap_do.modules()))
    x = torch.randn(2, *CIFAR)
    for m in (gap, gap_do):
        m.train()
        assert m(x).shape == (2, 256)  # cross-entropy over all 256 channels, as the source
        m.eval()
        assert m(x).shape == (2, 256)  # and argmax over all of them when tested, as the source
    for m in (fc, gap_lin, gap_do_lin):
        assert m(x).shape == (2, 10)
    assert not any(isinstance(m, nn.Dropout) for m in (*fc.modules(), *gap.modules()))
    assert [m.p for m in gap_do_lin.modules() if isinstance(m, nn.Dropout)] == [0.5]
    layers = list(gap_do.features)
    dropouts = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
    assert [layers[i].p for i in dropouts] == [0.5, 0.5, 0.5]
    for i in dropouts:  # conv -> act -> Dropout -> pool
        assert isinstance(layers[i - 1], Activation) and isinstance(layers[i + 1], nn.MaxPool2d)
    conv_index = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert [conv_index.index(i - 2) + 1 for i in dropouts] == [4, 5, 7]



def test_mnist_net_conv_dropout():
    plain = build("mnist_net", FASHION)
    model2 = build("mnist_net", FASHION, conv_dropout=0.5)
    assert not any(isinstance(m, nn.Dropout2d) for m in plain.modules())
    kinds = [type(m).__name__ for m in model2.features]
    assert kinds == [
        "Conv2d",
        "MaxPool2d",
        "Activation",
        "Conv2d",
        "Dropout2d",
        "MaxPool2d",
        "Activation",
    ]
    assert model2.features[4].p == 0.5


def test_batch_norm_override():
    def n_bn(model):
        return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

    assert n_bn(build("simple_cnn", CIFAR)) == 2
    assert n_bn(build("simple_cnn", CIFAR, batch_norm=False)) == 0
    assert n_bn(build("vgg7", CIFAR)) == 0
    assert n_bn(build("vgg7", CIFAR, batch_norm=True)) == 7
    assert n_bn(build("mlp", DIGITS_FLAT, batch_norm=True)) == 2
    keras = build("keras_cnn3", CIFAR)
    bns = [m for m in keras.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 4 and all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)
    assert n_bn(build("keras_cnn3", CIFAR, batch_norm=False)) == 0


def test_dropout_override():
    def ps(model):
        return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]

    assert ps(build("simple_cnn", CIFAR)) == [0.5]
    assert ps(build("simple_cnn", CIFAR, dropout=0.2)) == [0.2]
    assert ps(build("simple_cnn", CIFAR, dropout=0.0)) == []
    assert ps(build("keras_cnn3", CIFAR)) == [0.25, 0.25, 0.25, 0.5]
    assert ps(build("keras_cnn3", CIFAR, block_dropout=0.0, dropout=0.3)) == [0.3]
    assert ps(build("mlp", DIGITS_FLAT, dropout=0.1)) == [0.1, 0.1]


@pytest.mark.parametrize("name", sorted(set(NATURAL_INPUT) - {"mlp"}))
def test_cnn_on_flat_input_is_a_config_error(name):
    with pytest.raises(ConfigError) as exc:
        build(name, MOONS, classes=2)
    msg = str(exc.value)
    assert msg.startswith(f"model.name: {name!r} needs image input (C, H, W)")
    assert msg.endswith("the dataset gives shape (2,)") and "\n" not in msg


def test_vgg7_message():
    with pytest.raises(ConfigError, match=r"^model\.name: "):
        build("vgg7", MOONS, classes=2)


def test_option_validation_through_registry():
    with pytest.raises(FieldError) as exc:
        MODELS.get("vgg7").validate_options({"head": "bad"})
    assert exc.value.path == "head"
    with pytest.raises(FieldError, match="unknown option"):
        MODELS.get("vgg7").validate_options({"heads": "fc"})
    with pytest.raises(FieldError):
        MODELS.get("mnist_net").validate_options({"conv_dropout": 1.0})
    with pytest.raises(FieldError):
        MODELS.get("simple_cnn").validate_options({"pool": "median"})
    with pytest.raises(FieldError):
        ACTIVATIONS.get("leaky_relu").validate_options({"negative_slope": 1.5})
    assert MODELS.get("mlp").validate_options({}) == {"hidden": [256, 128]}


# ---------------------------------------------------------------- exact parameter counts


def test_simple_cnn_parameter_count():
    conv1 = 3 * 32 * 9 + 32
    bn1 = 2 * 32
    conv2 = 32 * 64 * 9 + 64
    bn2 = 2 * 64
    fc1 = 64 * 8 * 8 * 128 + 128
    fc2 = 128 * 10 + 10
    expected = conv1 + bn1 + conv2 + bn2 + fc1 + fc2
    assert count_parameters(build("simple_cnn", CIFAR)) == expected == 545_290


def test_simple_cnn_on_28x28():
    # 28 → 14 → 7: Linear(64·7·7 → 128).
    model = build("simple_cnn", FASHION)
    assert model.classifier[1].in_features == 64 * 7 * 7


def test_mnist_models_parameter_counts():
    # Model1: conv 1→10 (5×5), conv 10→20 (5×5), fc 320→50, fc 50→10.
    expected1 = (25 * 10 + 10) + (10 * 20 * 25 + 20) + (320 * 50 + 50) + (50 * 10 + 10)
    assert count_parameters(build("mnist_net", FASHION)) == expected1
    # Model3: 28 → 14 → 7 → 3, fc 128·3·3 → 128.
    expected3 = (
        (9 * 32 + 32)
        + (32 * 64 * 9 + 64)
        + (64 * 128 * 9 + 128)
        + (128 * 9 * 128 + 128)
        + (128 * 10 + 10)
    )
    assert count_parameters(build("mnist_cnn3", FASHION)) == expected3


def test_vgg7_flatten_is_1024_on_cifar():
    model = build("vgg7", CIFAR)
    assert model.classifier[1].in_features == 256 * 2 * 2

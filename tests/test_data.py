"""Tests of ablab.data: readers of the official formats, splits, normalization, batching,
augmentation, and missing-data errors. No network: every test that may touch the image
datasets sets ABLAB_DOWNLOAD=0 and ABLAB_DATA to a temporary folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import MARKERS, write_cifar10, write_mnist

from ablab.config import AugmentConfig, DatasetConfig
from ablab.data import (
    BatchLoader,
    DataBundle,
    Split,
    augment_batch,
    clear_cache,
    data_root,
    load_data,
    load_raw,
    read_idx,
    sources,
    split_indices,
)
from ablab.errors import DataMissingError, UserError
from ablab.registry import DATASETS


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path))
    monkeypatch.setenv("ABLAB_DOWNLOAD", "0")
    clear_cache()
    yield tmp_path
    clear_cache()


def cfg(name: str, **kw) -> DatasetConfig:
    return DatasetConfig(name=name, **kw)


# ---------------------------------------------------------------- registry


def test_registry_has_datasets_with_meta():
    expect = {
        "moons": False, "circles": False, "digits": False,
        "mnist": True, "fashion_mnist": True, "cifar10": True,
    }  # fmt: skip
    for name, official in expect.items():
        entry = DATASETS.get(name)
        assert entry.meta["official_test"] is official
        assert entry.summary
    assert DATASETS.get("moons").option_defaults() == {
        "n_samples": 1000, "noise": 0.3, "random_state": 0,
    }  # fmt: skip
    assert DATASETS.get("circles").option_defaults()["factor"] == 0.5
    with pytest.raises(Exception, match="n_samples"):
        cfg("moons", n_samples=0)
    with pytest.raises(Exception, match="unknown option"):
        cfg("cifar10", bogus=1)


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("ABLAB_DATA", raising=False)
    assert data_root() == Path.home() / ".cache" / "ablab"
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path))
    assert data_root() == tmp_path


# ---------------------------------------------------------------- official formats


def test_cifar10_fixture_round_trip(data_dir):
    wrote = write_cifar10(data_dir, n_per_batch=6, n_test=8)
    raw = load_raw("cifar10")
    assert raw.x.dtype == np.uint8 and raw.x.shape == (30, 3, 32, 32)
    assert raw.x_test.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(raw.x, wrote["x"])
    np.testing.assert_array_equal(raw.y, wrote["y"])
    np.testing.assert_array_equal(raw.x_test, wrote["x_test"])
    np.testing.assert_array_equal(raw.y_test, wrote["y_test"])
    assert raw.y.dtype == np.int64
    assert raw.class_names[0] == "airplane" and raw.class_names[9] == "truck"
    # channel order and row-major planes: R at flat index 2*32+5, G at +1024, B at +2048
    for (c, i, j), v in MARKERS["cifar10"].items():
        assert raw.x[0, c, i, j] == v
    b = load_data(cfg("cifar10", val_fraction=0.0), seed=0)
    assert b.input_shape == (3, 32, 32) and b.num_classes == 10
    assert b.train.x.dtype == torch.uint8 and b.scale == pytest.approx(1 / 255)
    assert b.sizes() == {"train": 30, "val": 0, "test": 8}
    assert b.val is None
    np.testing.assert_array_equal(b.test.x.numpy(), wrote["x_test"])


@pytest.mark.parametrize("folder,name", [("MNIST", "mnist"), ("FashionMNIST", "fashion_mnist")])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_fixture_round_trip(data_dir, folder, name, gz):
    wrote = write_mnist(data_dir, folder=folder, n_train=30, n_test=12, gz=gz)
    raw = load_raw(name)
    assert raw.x.shape == (30, 1, 28, 28) and raw.x.dtype == np.uint8
    assert raw.x_test.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(raw.x, wrote["x"])
    np.testing.assert_array_equal(raw.y, wrote["y"])
    np.testing.assert_array_equal(raw.x_test, wrote["x_test"])
    np.testing.assert_array_equal(raw.y_test, wrote["y_test"])
    for (c, i, j), v in MARKERS["mnist"].items():
        assert raw.x[0, c, i, j] == v
    assert len(raw.class_names) == 10
    if name == "fashion_mnist":
        assert raw.class_names[0] == "T-shirt/top"


def test_read_idx_header(tmp_path):
    write_mnist(tmp_path, n_train=3, n_test=2)
    labels = read_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz")
    assert labels.tolist() == [0, 1, 2]
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError):
        read_idx(bad)


def test_real_fashion_mnist(data_dir):
    from fixtures_data import require_dataset

    require_dataset("fashion_mnist")  # the system copy (data_dir hides ~/.cache/ablab)
    b = load_data(cfg("fashion_mnist", val_fraction=0.1), seed=0)
    assert b.train.x.dtype == torch.uint8
    assert len(b.train) + len(b.val) == 60000
    assert len(b.test) == 10000 and b.test.x.shape == (10000, 1, 28, 28)
    assert b.num_classes == 10 and b.class_names[9] == "Ankle boot"
    assert b.input_shape == (1, 28, 28) and b.normalize_mode == "unit"
    assert sorted(torch.bincount(b.test.y).tolist()) == [1000] * 10
    assert int(b.train.x.max()) == 255


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    "name,folder",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("mnist", "MNIST/raw"),
        ("fashion_mnist", "FashionMNIST/raw"),
    ],
)
def test_missing_data_one_line(data_dir, monkeypatch, name, folder):
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", data_dir / "nowhere")
    with pytest.raises(DataMissingError) as exc:
        load_data(cfg(name), seed=0)
    msg = str(exc.value)
    assert isinstance(exc.value, UserError)
    assert "\n" not in msg
    assert str(data_dir / folder) in msg
    assert "ABLAB_DOWNLOAD=0" in msg and "ABLAB_DATA" in msg


# ---------------------------------------------------------------- splits


def _within_one(y_all: np.ndarray, part: np.ndarray) -> None:
    counts = Counter(y_all[part].tolist())
    for k, total in Counter(y_all.tolist()).items():
        expected = total * len(part) / len(y_all)
        assert abs(counts.get(k, 0) - expected) <= 1.0 + 1e-9, (k, counts.get(k), expected)


def test_split_indices_stratified_disjoint_sizes():
    y = load_raw("digits").y
    ids = split_indices(
        y, has_test=False, val_fraction=0.2, test_fraction=0.25, subset=None, seed=3
    )
    tr, va, te = ids["train"], ids["val"], ids["test"]
    assert len(te) == round(0.25 * len(y)) or abs(len(te) - 0.25 * len(y)) <= 1
    assert abs(len(va) - 0.2 * (len(y) - len(te))) <= 1
    assert len(tr) + len(va) + len(te) == len(y)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    for part in (tr, va, te):
        _within_one(y, part)
    sub = split_indices(y, has_test=False, val_fraction=0.2, test_fraction=0.25, subset=300, seed=3)
    assert len(sub["train"]) == 300 and set(sub["train"]) <= set(tr)
    np.testing.assert_array_equal(sub["val"], va)  # subset does not move val/test
    _within_one(y, sub["train"])


def _rows(split: Split) -> set:
    return {tuple(r) for r in split.x.reshape(len(split), -1).tolist()}


def test_load_data_split_determinism_and_seeds():
    a = load_data(cfg("moons", val_fraction=0.2, test_fraction=0.25), seed=1)
    b = load_data(cfg("moons", val_fraction=0.2, test_fraction=0.25), seed=1)
    c = load_data(cfg("moons", val_fraction=0.2, test_fraction=0.25), seed=2)
    assert a.sizes() == {"train": 600, "val": 150, "test": 250}
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert not (_rows(a.train) & _rows(a.val)) and not (_rows(a.train) & _rows(a.test))
    assert not (_rows(a.val) & _rows(a.test))
    for s in (a.train, a.val, a.test):
        assert abs(int(s.y.sum()) - len(s) / 2) <= 1  # moons: 500 / 500
    # split_seed overrides the run seed
    d = load_data(cfg("moons", split_seed=7), seed=1)
    e = load_data(cfg("moons", split_seed=7), seed=2)
    f = load_data(cfg("moons"), seed=7)
    assert torch.equal(d.train.x, e.train.x) and torch.equal(d.train.x, f.train.x)


def test_subset_and_no_val():
    b = load_data(cfg("digits", subset=100, val_fraction=0.0), seed=0)
    assert b.val is None
    assert b.sizes()["train"] == 100 and b.sizes()["val"] == 0
    counts = torch.bincount(b.train.y, minlength=10)
    assert int(counts.min()) >= 9 and int(counts.max()) <= 11
    assert b.train.x.shape == (100, 1, 8, 8) and b.train.x.dtype == torch.float32
    assert float(b.train.x.max()) <= 1.0
    big = load_data(cfg("digits", subset=100000), seed=0)  # larger than the split: no cap
    assert len(big.train) == load_data(cfg("digits"), seed=0).sizes()["train"]


def test_official_test_and_validate_on_test(data_dir):
    write_cifar10(data_dir, n_per_batch=10, n_test=7)
    b = load_data(cfg("cifar10", val_fraction=0.2), seed=0)
    assert b.sizes() == {"train": 40, "val": 10, "test": 7}
    assert torch.bincount(b.val.y, minlength=10).tolist() == [1] * 10
    t = load_data(cfg("cifar10", val_fraction=0.2, validate_on="test"), seed=0)
    assert t.val is t.test and len(t.train) == 50 and t.validate_on == "test"
    assert t.sizes() == {"train": 50, "val": 7, "test": 7}
    moved = t.to("cpu")
    assert moved.val is moved.test


# ---------------------------------------------------------------- normalization


def test_normalize_modes_images(data_dir):
    write_cifar10(data_dir, n_per_batch=20)
    std = load_data(cfg("cifar10", normalize="standard", val_fraction=0.2), seed=0)
    z = std.normalize(std.train.x)
    assert z.dtype == torch.float32 and std.mean.shape == (1, 3, 1, 1)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    # statistics come from the training split only
    manual = std.train.x.double().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(std.mean.flatten().double(), manual, atol=1e-6)

    half = load_data(cfg("cifar10", normalize="half"), seed=0)
    h = half.normalize(
        torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2).expand(1, 3, 1, 2)
    )
    assert torch.allclose(h[..., 0], torch.full((1, 3, 1), -1.0))
    assert torch.allclose(h[..., 1], torch.full((1, 3, 1), 1.0))
    hx = half.normalize(half.train.x)
    assert float(hx.min()) >= -1.0 and float(hx.max()) <= 1.0

    unit = load_data(cfg("cifar10"), seed=0)
    assert unit.normalize_mode == "unit"
    u = unit.normalize(unit.train.x)
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    assert torch.allclose(u, unit.train.x.float() / 255)

    none = load_data(cfg("cifar10", normalize="none"), seed=0)
    assert torch.equal(none.normalize(none.train.x), none.train.x.float())


def test_normalize_tabular_and_defaults():
    b = load_data(cfg("moons"), seed=0)
    assert b.normalize_mode == "standard" and b.mean.shape == (1, 2) and b.scale == 1.0
    z = b.normalize(b.train.x)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert not torch.allclose(b.normalize(b.test.x).mean(0), torch.zeros(2), atol=1e-5)
    d = load_data(cfg("digits"), seed=0)
    assert d.normalize_mode == "unit" and torch.equal(d.normalize(d.train.x), d.train.x)
    h = load_data(cfg("digits", normalize="half"), seed=0).normalize(d.train.x)
    assert float(h.min()) == -1.0 and float(h.max()) == 1.0
    s = load_data(cfg("digits", normalize="standard"), seed=0)
    assert torch.isfinite(s.normalize(s.train.x)).all()
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    c = load_data(cfg("circles", n_samples=200), seed=0)
    assert c.sizes()["train"] + c.sizes()["val"] + c.sizes()["test"] == 200


# ---------------------------------------------------------------- loader


def _bundle() -> DataBundle:
    return load_data(cfg("moons", n_samples=103, val_fraction=0.0, test_fraction=0.03), seed=0)


def test_loader_covers_each_index_once():
    b = _bundle()
    n = len(b.train)
    key = b.train.x[:, 0] * 1000 + b.train.x[:, 1]  # rows of moons are distinct
    g = torch.Generator().manual_seed(0)
    loader = BatchLoader(b.train, b, 16, shuffle=True, augment=None, generator=g)
    assert len(loader) == -(-n // 16)
    seen_orders = []
    for _ in range(2):
        xs, ys = zip(*loader, strict=True)
        assert len(xs) == len(loader) and len(xs[-1]) == n - 16 * (len(loader) - 1)
        x = torch.cat(xs)
        raw = x * b.std + b.mean  # undo normalization
        k = raw[:, 0] * 1000 + raw[:, 1]
        assert torch.allclose(k.sort().values, key.sort().values, atol=1e-2)
        assert x.dtype == torch.float32 and torch.cat(ys).sum() == b.train.y.sum()
        seen_orders.append(torch.cat(ys))
    assert len(seen_orders[0]) == n


def test_loader_full_batch_and_determinism():
    b = _bundle()
    full = BatchLoader(b.train, b, None, shuffle=False, augment=None, generator=None)
    assert len(full) == 1
    ((x, y),) = list(full)
    assert torch.equal(x, b.normalize(b.train.x)) and torch.equal(y, b.train.y)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        ld = BatchLoader(b.train, b, 10, shuffle=True, augment=None, generator=g)
        return torch.cat([yy for _, yy in ld]), torch.cat([xx for xx, _ in ld])

    assert torch.equal(run(5)[1], run(5)[1])
    assert not torch.equal(run(5)[1], run(6)[1])
    in_order = BatchLoader(b.train, b, 10, shuffle=False, augment=None, generator=None)
    assert torch.equal(torch.cat([yy for _, yy in in_order]), b.train.y)


def test_loader_with_augment(data_dir):
    write_cifar10(data_dir, n_per_batch=4)
    b = load_data(cfg("cifar10", val_fraction=0.0), seed=0)
    aug = AugmentConfig(flip=True, crop_padding=2, cutout=4)
    ld = BatchLoader(b.train, b, 8, shuffle=True, augment=aug, generator=torch.Generator())
    xs = [x for x, _ in ld]
    assert len(xs) == 3 and xs[0].shape == (8, 3, 32, 32) and xs[0].dtype == torch.float32
    assert float(torch.cat(xs).min()) >= 0.0 and float(torch.cat(xs).max()) <= 1.0
    tab = _bundle()
    with pytest.raises(ValueError, match="tabular"):
        BatchLoader(tab.train, tab, 8, shuffle=True, augment=aug, generator=torch.Generator())


# ---------------------------------------------------------------- augmentation


def _images(n=64, c=3, h=8, w=8, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_flip_flips_exactly_the_chosen_samples():
    x = _images()
    out = augment_batch(x, AugmentConfig(flip=True), torch.Generator().manual_seed(3))
    chosen = torch.rand(64, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 0 < int(chosen.sum()) < 64
    assert torch.equal(out[chosen], x[chosen].flip(-1))
    assert torch.equal(out[~chosen], x[~chosen])
    assert out.dtype == torch.uint8


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = img[i + dy, j + dx], zero outside."""
    _, h, w = img.shape
    out = torch.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = img[:, i + dy, j + dx]
    return out


@pytest.mark.parametrize("field", ["crop_padding", "translate"])
def test_crop_and_translate_are_zero_filled_shifts(field):
    h = w = 8
    base = (torch.arange(h * w).reshape(1, 1, h, w) + 1).to(torch.uint8)
    x = base.expand(40, 2, h, w).clone()
    x[:, 1] += 100  # channels differ
    out = augment_batch(x, AugmentConfig(**{field: 2}), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = set()
    for n in range(len(x)):
        match = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[n], _shifted(x[n], dy, dx))
        ]
        assert len(match) == 1, n
        shifts.add(match[0])
    assert len(shifts) > 5  # samples get their own offsets


def test_cutout_zeroes_one_square_per_sample():
    x = torch.ones(50, 3, 16, 16, dtype=torch.uint8)
    out = augment_batch(x, AugmentConfig(cutout=4), torch.Generator().manual_seed(1))
    zeros = out == 0
    assert (zeros.sum(dim=(2, 3)) == 16).all()
    assert torch.equal(zeros[:, 0], zeros[:, 2])  # same square in every channel
    for n in range(len(x)):
        rows = zeros[n, 0].any(1).nonzero().flatten()
        cols = zeros[n, 0].any(0).nonzero().flatten()
        assert len(rows) == 4 and len(cols) == 4
        assert int(rows[-1] - rows[0]) == 3 and int(cols[-1] - cols[0]) == 3
    big = augment_batch(x, AugmentConfig(cutout=99), torch.Generator())
    assert int(big.sum()) == 0


def test_augment_deterministic_and_float_images():
    x = _images(seed=2)
    aug = AugmentConfig(flip=True, crop_padding=2, translate=1, cutout=3)
    a = augment_batch(x, aug, torch.Generator().manual_seed(9))
    b = augment_batch(x, aug, torch.Generator().manual_seed(9))
    c = augment_batch(x, aug, torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment_batch(x, AugmentConfig(), None), x)
    xf = x.float() / 255
    assert augment_batch(xf, aug, torch.Generator()).dtype == torch.float32


def test_augment_tabular_raises():
    with pytest.raises(ValueError, match="tabular"):
        augment_batch(torch.zeros(4, 2), AugmentConfig(flip=True), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bundle_loader_and_augment(data_dir):
    write_cifar10(data_dir, n_per_batch=8)
    b = load_data(cfg("cifar10", normalize="standard", validate_on="test"), seed=0, device="cuda")
    for t in (b.train.x, b.train.y, b.test.x, b.mean, b.std):
        assert t.device.type == "cuda"
    assert b.val is b.test
    g = torch.Generator(device="cuda").manual_seed(0)
    aug = AugmentConfig(flip=True, crop_padding=4, translate=2, cutout=8)
    ld = BatchLoader(b.train, b, 16, shuffle=True, augment=aug, generator=g)
    batches = list(ld)
    assert len(batches) == 3 and batches[0][0].device.type == "cuda"
    assert sum(len(y) for _, y in batches) == 40
    with pytest.raises(ValueError, match="generator"):
        BatchLoader(b.train, b, 16, shuffle=True, generator=torch.Generator())


# ---------------------------------------------------------------- where the data is


def test_system_data_folder_is_overridable(data_dir, monkeypatch):
    """ABLAB_SYSTEM_DATA replaces /usr/share/datasets: an empty folder hides Debian's
    Fashion-MNIST (a fresh machine), a folder holding fashion-mnist/ provides it."""
    monkeypatch.setenv("ABLAB_SYSTEM_DATA", str(data_dir / "empty"))
    where = sources.locate("fashion_mnist")
    assert where.found is None and data_dir / "empty" / "fashion-mnist" in where.searched
    assert not sources.available("fashion_mnist")
    with pytest.raises(DataMissingError, match="fashion-mnist"):
        load_raw("fashion_mnist")
    system = data_dir / "system"
    write_mnist(system, folder="fm", n_train=10, n_test=10)
    (system / "fm" / "raw").rename(system / "fashion-mnist")
    monkeypatch.setenv("ABLAB_SYSTEM_DATA", str(system))
    assert sources.locate("fashion_mnist").found == system / "fashion-mnist"
    assert load_raw("fashion_mnist").x.shape == (10, 1, 28, 28)


def test_ablab_data_lists_every_dataset(data_dir, monkeypatch, capsys):
    import sys

    import ablab.cli

    monkeypatch.setenv("ABLAB_SYSTEM_DATA", str(data_dir / "empty"))
    write_mnist(data_dir, folder="MNIST", n_train=10, n_test=10)
    monkeypatch.setattr(sys, "argv", ["ablab", "data"])
    with pytest.raises(SystemExit) as exc:
        ablab.cli.main()
    assert exc.value.code == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == set(DATASETS.names())
    assert lines["mnist"] == f"found in {data_dir / 'MNIST' / 'raw'}"
    assert lines["moons"].startswith("no files needed")
    fashion = lines["fashion_mnist"]
    assert fashion.startswith("missing; needs train-images-idx3-ubyte.gz")
    assert str(data_dir / "FashionMNIST" / "raw") in fashion
    assert "fashion-mnist.s3-website" in fashion and "ablab data fetch fashion_mnist" in fashion
    assert f"in {data_dir / 'cifar-10-batches-py'} from https://www.cs.toronto.edu" \
        in lines["cifar10"]


@pytest.mark.parametrize("name,expect", [
    ("cifar10", "download is off: ABLAB_DOWNLOAD=0"),
    ("moons", "nothing to download"),
    ("no_such_set", "unknown dataset 'no_such_set'"),
])
def test_ablab_data_fetch_fails_in_one_line(data_dir, monkeypatch, capsys, name, expect):
    import sys

    import ablab.cli

    monkeypatch.setattr(sys, "argv", ["ablab", "data", "fetch", name])
    with pytest.raises(SystemExit) as exc:
        ablab.cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and expect in err[0], err

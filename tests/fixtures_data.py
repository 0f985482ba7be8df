"""Writers of tiny datasets in the official on-disk formats, for tests.

Use with ``monkeypatch.setenv("ABLAB_DATA", str(tmp_path))`` and
``monkeypatch.setenv("ABLAB_DOWNLOAD", "0")`` so ablab finds them (and never tries the
network)::

    from fixtures_data import write_cifar10, write_mnist
    arrays = write_cifar10(tmp_path, n_per_batch=6)
    write_mnist(tmp_path, folder="FashionMNIST")

Each writer returns the arrays it wrote (``x`` N×C×H×W uint8, ``y`` int64, ``x_test``,
``y_test``, ``class_names``) so tests can compare what ablab reads. Pixel values are
random (seeded) except the marker pixels listed in ``MARKERS``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# Marker pixels: image 0 of the training data, (channel, row, col) -> value.
MARKERS = {
    "cifar10": {(0, 2, 5): 200, (1, 2, 5): 100, (2, 2, 5): 50, (2, 31, 0): 7},
    "mnist": {(0, 3, 7): 255, (0, 27, 0): 9},
}


def write_cifar10(
    root: str | Path, n_per_batch: int = 10, n_test: int | None = None, seed: int = 0
) -> dict:
    """Write ``root/cifar-10-batches-py`` as the official python pickles: ``data_batch_1``
    .. ``data_batch_5`` and ``test_batch`` (dict with b"data": uint8 (N, 3072), each row the
    R, G, B 32×32 planes row-major, b"labels": list of int, b"batch_label", b"filenames")
    and ``batches.meta`` (b"label_names"). Labels cycle through the 10 classes.
    Returns the arrays written (train = the five batches concatenated)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    n_test = n_per_batch if n_test is None else n_test
    rng = np.random.default_rng(seed)
    xs, ys = [], []

    def write(name: str, n: int, label_offset: int, batch_label: str) -> None:
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = (np.arange(n) + label_offset) % 10
        if name == "data_batch_1":
            for (c, i, j), v in MARKERS["cifar10"].items():
                x[0, c, i, j] = v
        d = {
            b"batch_label": batch_label.encode(),
            b"labels": [int(v) for v in y],
            b"data": x.reshape(n, 3072),
            b"filenames": [f"img_{k}.png".encode() for k in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
        xs.append(x)
        ys.append(y.astype(np.int64))

    for b in range(1, 6):
        write(f"data_batch_{b}", n_per_batch, b, f"training batch {b} of 5")
    write("test_batch", n_test, 0, "testing batch 1 of 1")
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return {
        "x": np.concatenate(xs[:5]),
        "y": np.concatenate(ys[:5]),
        "x_test": xs[5],
        "y_test": ys[5],
        "class_names": list(CIFAR10_NAMES),
    }


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(
    root: str | Path,
    folder: str = "MNIST",
    n_train: int = 40,
    n_test: int = 20,
    gz: bool = True,
    seed: int = 0,
) -> dict:
    """Write MNIST-format IDX files in torchvision's layout, ``root/<folder>/raw/``
    (``folder`` "MNIST" or "FashionMNIST"): ``train-images-idx3-ubyte``, magic 2051, dims
    N, 28, 28 big-endian; ``train-labels-idx1-ubyte``, magic 2049; and the ``t10k-`` pair.
    ``gz`` writes them gzip-compressed with a ``.gz`` suffix (as distributed).
    Labels cycle through 0..9. Returns the arrays written (images as N×1×28×28)."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    for (_, i, j), v in MARKERS["mnist"].items():
        x[0, i, j] = v
    y = (np.arange(n_train) % 10).astype(np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_test = ((np.arange(n_test) + 3) % 10).astype(np.uint8)
    _write_idx(raw / "train-images-idx3-ubyte", x, gz)
    _write_idx(raw / "train-labels-idx1-ubyte", y, gz)
    _write_idx(raw / "t10k-images-idx3-ubyte", x_test, gz)
    _write_idx(raw / "t10k-labels-idx1-ubyte", y_test, gz)
    return {
        "x": x[:, None],
        "y": y.astype(np.int64),
        "x_test": x_test[:, None],
        "y_test": y_test.astype(np.int64),
    }


def require_dataset(name: str) -> None:
    """Skip the calling test, with a reason, when dataset ``name``'s real files are not
    on this machine (never downloads). ``ABLAB_DATA`` / ``ABLAB_SYSTEM_DATA`` pointed at
    empty folders act as a fresh machine."""
    import pytest

    from ablab.data.sources import locate

    where = locate(name)
    if where is not None and where.found is None:
        looked = ", ".join(str(p) for p in where.searched)
        pytest.skip(f"needs the real {name} data (not in {looked}; `ablab data fetch {name}`)")

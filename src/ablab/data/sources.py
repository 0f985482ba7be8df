"""The built-in datasets and the readers of their official file formats.

Image datasets are looked for under ``data_root()`` (``$ABLAB_DATA``, default
``~/.cache/ablab``) in torchvision's layout, then in known system folders
(``system_data_root()``: ``$ABLAB_SYSTEM_DATA``, default Debian's ``/usr/share/datasets``),
and downloaded through torchvision (which checks MD5 sums) unless ``ABLAB_DOWNLOAD=0``.
When no copy can be had, ``DataMissingError`` says, in one line, where to put the files.

Each file dataset's registry entry carries ``locate`` (where a copy is, or what is
needed: files, folder, URL; never downloads) and ``fetch`` (download and verify), which
``ablab data`` and the tests' "skip when absent" use.
"""

from __future__ import annotations

import gzip
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ablab.data.base import RawData
from ablab.errors import DataMissingError
from ablab.lazy import LazyModule
from ablab.registry import DATASETS

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
OpenUnit = Annotated[float, Field(gt=0.0, lt=1.0)]
RandomState = Annotated[int, Field(ge=0, lt=2**32)]  # what scikit-learn's generators take

DOWNLOAD_TIMEOUT_S = 60.0


def data_root() -> Path:
    """Where datasets live: ``$ABLAB_DATA``, default ``~/.cache/ablab``."""
    env = os.environ.get("ABLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ablab"


def system_data_root() -> Path:
    """Where system packages put datasets: ``$ABLAB_SYSTEM_DATA``, default
    ``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist``). Point it at an empty
    folder to hide system copies (tests do, to act as a fresh machine)."""
    env = os.environ.get("ABLAB_SYSTEM_DATA")
    return Path(env).expanduser() if env else Path("/usr/share/datasets")


@dataclass
class DataLocation:
    """Where a file dataset's copy is (``found``), or what it needs: ``files`` in
    ``folder`` from ``url``; ``searched`` lists every folder looked in."""

    name: str
    found: Path | None
    folder: Path
    files: list[str]
    url: str
    searched: list[Path]


def download_allowed() -> bool:
    return os.environ.get("ABLAB_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _download(name: str, fn) -> str | None:
    """Run ``fn()`` (a torchvision download); return None on success, else a reason."""
    if not download_allowed():
        return "download is off: ABLAB_DOWNLOAD=0"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fn()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure becomes a one-line user error
        return f"download failed: {_one_line(exc)}"
    finally:
        socket.setdefaulttimeout(old)


# ---------------------------------------------------------------- toy and tabular


@DATASETS.register(
    "moons",
    "two interleaving half-moons, 2 features, 2 classes (scikit-learn)",
    official_test=False,
    shape=(2,),
    size="n_samples",
    classes=2,
)
def moons(
    *, n_samples: PositiveInt = 1000, noise: NonNegFloat = 0.3, random_state: RandomState = 0
) -> RawData:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=random_state)
    return RawData(x.astype(np.float32), y.astype(np.int64), ["0", "1"], "standard")


@DATASETS.register(
    "circles",
    "a circle inside a circle, 2 features, 2 classes (scikit-learn)",
    official_test=False,
    shape=(2,),
    size="n_samples",
    classes=2,
)
def circles(
    *,
    n_samples: PositiveInt = 1000,
    noise: NonNegFloat = 0.2,
    factor: OpenUnit = 0.5,
    random_state: RandomState = 0,
) -> RawData:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=random_state)
    return RawData(x.astype(np.float32), y.astype(np.int64), ["outer", "inner"], "standard")


@DATASETS.register(
    "digits",
    "8x8 handwritten digits, 1797 images, 10 classes (scikit-learn)",
    official_test=False,
    shape=(1, 8, 8),
    size=1797,
    classes=10,
)
def digits() -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return RawData(x, d.target.astype(np.int64), [str(i) for i in range(10)], "unit")


# ---------------------------------------------------------------- MNIST family (IDX)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain), e.g. MNIST's, as a numpy array.

    Magic: two zero bytes, a type byte (0x08 = uint8), the number of dims; then the dims as
    big-endian uint32, then the data (big-endian)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    ty, nd = data[2], data[3]
    if ty not in types:
        raise ValueError(f"{path}: unknown IDX type 0x{ty:02x}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    arr = np.frombuffer(data, dtype=types[ty], offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: IDX size mismatch ({arr.size} values for dims {dims})")
    return arr.reshape(dims).astype(types[ty].replace(">", "="), copy=False)


_IDX_FILES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_idx(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, stem in _IDX_FILES.items():
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def _load_idx_set(files: dict[str, Path], class_names: list[str]) -> RawData:
    arr = {k: read_idx(p) for k, p in files.items()}
    x, x_test = arr["x"], arr["x_test"]
    return RawData(
        x=np.ascontiguousarray(x.reshape(x.shape[0], 1, *x.shape[1:]).astype(np.uint8)),
        y=arr["y"].astype(np.int64),
        x_test=np.ascontiguousarray(
            x_test.reshape(x_test.shape[0], 1, *x_test.shape[1:]).astype(np.uint8)
        ),
        y_test=arr["y_test"].astype(np.int64),
        class_names=class_names,
        default_normalize="unit",
    )


def _mnist_locate(
    name: str, tv_name: str, extra_dirs: list[Path], source_url: str
) -> DataLocation:
    folder = data_root() / tv_name / "raw"
    searched = [folder, *extra_dirs]
    found = next((d for d in searched if _find_idx(d) is not None), None)
    files = [f"{s}.gz" for s in _IDX_FILES.values()]
    return DataLocation(name, found, folder, files, source_url, searched)


def _mnist_fetch(tv_name: str) -> None:
    import torchvision.datasets as tvd

    getattr(tvd, tv_name)(str(data_root()), train=True, download=True)


def _mnist_like(name: str, tv_name: str, extra_dirs: list[Path], source_url: str) -> RawData:
    import torchvision.datasets as tvd

    classes = [str(c) for c in getattr(tvd, tv_name).classes]
    where = _mnist_locate(name, tv_name, extra_dirs, source_url)
    if where.found is not None:
        return _load_idx_set(_find_idx(where.found), classes)
    reason = _download(name, lambda: _mnist_fetch(tv_name))
    if reason is None:
        files = _find_idx(where.folder)
        if files is not None:
            return _load_idx_set(files, classes)
        reason = "download finished but the files are not there"
    places = " or ".join(str(p) for p in where.searched)
    raise DataMissingError(
        f"dataset {name}: no copy found in {places} and {reason}; "
        f"put {', '.join(where.files)} from {source_url} in {where.folder}, or set ABLAB_DATA"
    )


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


@DATASETS.register(
    "mnist",
    "handwritten digits, 28x28 grey, 60k train / 10k official test, 10 classes",
    official_test=True,
    shape=(1, 28, 28),
    size=60000,
    classes=10,
    test_size=10000,
    locate=lambda: _mnist_locate("mnist", "MNIST", [], MNIST_URL),
    fetch=lambda: _mnist_fetch("MNIST"),
)
def mnist() -> RawData:
    return _mnist_like("mnist", "MNIST", [], MNIST_URL)


FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def fashion_system_dir() -> Path:
    """Debian's copy: ``$ABLAB_SYSTEM_DATA/fashion-mnist`` when that is set."""
    if os.environ.get("ABLAB_SYSTEM_DATA"):
        return system_data_root() / "fashion-mnist"
    return FASHION_SYSTEM_DIR


@DATASETS.register(
    "fashion_mnist",
    "Zalando clothing images, 28x28 grey, 60k train / 10k official test, 10 classes",
    official_test=True,
    shape=(1, 28, 28),
    size=60000,
    classes=10,
    test_size=10000,
    locate=lambda: _mnist_locate(
        "fashion_mnist", "FashionMNIST", [fashion_system_dir()], FASHION_URL
    ),
    fetch=lambda: _mnist_fetch("FashionMNIST"),
)
def fashion_mnist() -> RawData:
    return _mnist_like("fashion_mnist", "FashionMNIST", [fashion_system_dir()], FASHION_URL)


# ---------------------------------------------------------------- CIFAR-10 (pickles)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR-10 batches (dicts, lists, bytes, numpy arrays) and nothing else:
    a file dropped into the data folder cannot make loading it run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _load_pickle(path: Path):
    with open(path, "rb") as f:
        return _ArraysOnly(f, encoding="bytes").load()


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    data = np.asarray(d[b"data"], dtype=np.uint8)
    labels = np.asarray(d.get(b"labels", d.get(b"fine_labels")), dtype=np.int64)
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(folder: Path) -> RawData:
    """Read the python-pickle CIFAR-10 batches in ``folder`` (no checksum check)."""
    parts = [_cifar_batch(folder / n) for n in CIFAR10_TRAIN]
    x_test, y_test = _cifar_batch(folder / "test_batch")
    meta = _load_pickle(folder / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    return RawData(
        x=np.ascontiguousarray(np.concatenate([p[0] for p in parts])),
        y=np.concatenate([p[1] for p in parts]),
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        class_names=names,
        default_normalize="unit",
    )


CIFAR10_FILES = [*CIFAR10_TRAIN, "test_batch", "batches.meta"]


def _cifar_present(folder: Path) -> bool:
    return all((folder / n).is_file() for n in CIFAR10_FILES)


def _cifar_locate() -> DataLocation:
    folder = data_root() / CIFAR10_FOLDER
    found = folder if _cifar_present(folder) else None
    return DataLocation("cifar10", found, folder, list(CIFAR10_FILES), CIFAR10_URL, [folder])


def _cifar_fetch() -> None:
    import torchvision.datasets as tvd

    tvd.CIFAR10(str(data_root()), train=True, download=True)


@DATASETS.register(
    "cifar10",
    "32x32 colour photos, 50k train / 10k official test, 10 classes",
    official_test=True,
    shape=(3, 32, 32),
    size=50000,
    classes=10,
    test_size=10000,
    locate=_cifar_locate,
    fetch=_cifar_fetch,
)
def cifar10() -> RawData:
    root = data_root()
    folder = root / CIFAR10_FOLDER
    if _cifar_present(folder):
        return read_cifar10(folder)
    reason = _download("cifar10", _cifar_fetch)
    if reason is None and _cifar_present(folder):
        return read_cifar10(folder)
    reason = reason or "download finished but the files are not there"
    raise DataMissingError(
        f"dataset cifar10: no copy found in {folder} and {reason}; put the extracted "
        f"'{CIFAR10_FOLDER}' folder from {CIFAR10_URL} in {root}, or set ABLAB_DATA"
    )


# ---------------------------------------------------------------- where the data is


def locate(name: str) -> DataLocation | None:
    """Where dataset ``name``'s files are, or what it needs; None for a dataset that
    needs no files (generated, or shipped with a library) or that does not say (a
    plugin dataset). Never downloads."""
    locator = DATASETS.get(name).meta.get("locate")
    return locator() if locator is not None else None


def available(name: str) -> bool:
    """Whether dataset ``name`` can be loaded without a download."""
    where = locate(name)
    return where is None or where.found is not None


def fetch(name: str) -> DataLocation:
    """Download dataset ``name`` through torchvision (which checks MD5 sums) and check
    its files are where ablab reads them; one-line ``DataMissingError`` otherwise."""
    entry = DATASETS.get(name)
    fetcher = entry.meta.get("fetch")
    if fetcher is None:
        raise DataMissingError(f"dataset {name}: nothing to download (it needs no files)")
    reason = _download(name, fetcher)
    where = locate(name)
    if reason is None and (where is None or where.found is None):
        reason = "download finished but the files are not there"
    if reason is not None:
        raise DataMissingError(
            f"dataset {name}: {reason}; put {', '.join(where.files)} from {where.url} "
            f"in {where.folder}, or set ABLAB_DATA"
        )
    return where

"""Image datasets from the user's disk: ``image_folder`` (torchvision's ImageFolder
layout) and ``torchvision`` (a torchvision dataset whose files are already there, never
downloaded). Images are decoded with Pillow when a run or a plan check reads them; torch
and torchvision are imported only by the ``torchvision`` dataset when it loads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from ablab.data.base import RawData
from ablab.data.sources import data_root
from ablab.data.user_files import (
    IMAGE_SUFFIXES,
    ImageSize,
    UserDataError,
    _class_dirs,
    _visible,
    file_sha256,
    files_of,
)
from ablab.lazy import LazyModule
from ablab.registry import DATASETS

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

# ---------------------------------------------------------------- image folders


def _scan_folder(option: str, root: Path) -> list[tuple[str, list[Path]]]:
    if not root.exists():
        raise UserDataError(option, f"{root}: no such folder")
    if not root.is_dir():
        raise UserDataError(option, f"{root}: not a folder; image_folder wants one folder per "
                                    "class (torchvision ImageFolder layout)")
    classes = []
    for d in _class_dirs(root):
        files = sorted(f for f in d.rglob("*") if f.is_file() and _visible(f))
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        others = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            raise UserDataError(option, f"{others[0]}: unsupported file type "
                                        f"{others[0].suffix or '(none)'!r}; allowed: "
                                        f"{', '.join(IMAGE_SUFFIXES)}")
        if not images:
            raise UserDataError(option, f"{d}: empty class folder (no images)")
        classes.append((d.name, images))
    if not classes:
        raise UserDataError(option, f"{root}: empty folder; image_folder wants one subfolder "
                                    "of images per class (torchvision ImageFolder layout)")
    return classes


def _decode(option: str, root: Path, classes: list[tuple[str, list[Path]]],
            size: list[int] | None, channels: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    opened = []
    for label, (_, files) in enumerate(classes):
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    opened.append((label, f, im.copy()))
            except Exception as exc:  # noqa: BLE001 - a broken image is the user's file
                raise UserDataError(option, f"{f}: cannot read as an image "
                                            f"({exc.__class__.__name__})") from None
    if channels is None:
        grey = all(im.mode in ("1", "L", "I", "I;16", "F") for _, _, im in opened)
        channels = 1 if grey else 3
    mode = "L" if channels == 1 else "RGB"
    if size is None:
        sizes = {im.size for _, _, im in opened}
        if len(sizes) > 1:
            (w0, h0), (w1, h1) = sorted(sizes)[:2]
            raise UserDataError("size", f"{root}: images of different sizes ({h0}x{w0}, "
                                        f"{h1}x{w1}, ...); set size = [HEIGHT, WIDTH] to "
                                        "resize them")
    x = []
    for _, _, im in opened:
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        x.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    y = np.array([label for label, _, _ in opened], dtype=np.int64)
    return np.ascontiguousarray(np.stack(x)), y


def _cached_images(option: str, root: Path, size: list[int] | None,
                   channels: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The folder's images as uint8 N×C×H×W, decoded once and cached under
    ``data_root()/user-images`` by the content of every file."""
    classes = _scan_folder(option, root)
    digest = hashlib.sha256(repr((size, channels)).encode())
    for name, files in classes:
        for f in files:
            digest.update(f"{name}/{f.relative_to(root / name)}:{file_sha256(f)}\n".encode())
    cache = data_root() / "user-images" / f"{digest.hexdigest()[:32]}.npz"
    names = [name for name, _ in classes]
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                return f["x"], f["y"], names
        except Exception:  # noqa: BLE001 - a torn cache file is decoded again
            pass
    x, y = _decode(option, root, classes, size, channels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cache)
    return x, y, names


@DATASETS.register(
    "image_folder",
    "images of yours, one subfolder per class (torchvision ImageFolder layout)",
    official_test=False,
    paths=("path", "test_path"),
    files=lambda options: files_of("image_folder", options),
    size=1000,
)
def image_folder(
    *,
    path: str,
    size: ImageSize | None = None,
    channels: Literal[1, 3] | None = None,
    test_path: str | None = None,
) -> RawData:
    """``size = [HEIGHT, WIDTH]`` resizes every image (needed when sizes differ);
    ``channels``: 1 (grey) or 3 (RGB), default 1 when every image is grey. Class names are
    the folder names, sorted. ``test_path``: a second folder, same classes, as the test
    set."""
    x, y, names = _cached_images("path", Path(path), size, channels)
    if channels is None:
        channels = int(x.shape[1])
    raw = RawData(x, y, names, "unit")
    if test_path is not None:
        shape = list(x.shape[2:])
        tx, ty, tnames = _cached_images("test_path", Path(test_path), size or shape, channels)
        if tx.shape[1:] != x.shape[1:]:
            raise UserDataError("test_path", f"{test_path}: images are {tx.shape[1:]}, the "
                                             f"training images {x.shape[1:]}; set size")
        lookup = {n: i for i, n in enumerate(names)}
        extra = [n for n in tnames if n not in lookup]
        if extra:
            raise UserDataError("test_path", f"{test_path}: class folders {extra[:5]} are not "
                                             f"in {path}")
        raw.x_test = tx
        raw.y_test = np.array([lookup[tnames[i]] for i in ty], dtype=np.int64)
    return raw


# ---------------------------------------------------------------- torchvision, on disk


def _tv_class(option: str, dataset: str):
    import difflib

    import torchvision.datasets as tvd

    names = sorted(n for n in tvd.__all__ if n[0].isupper())
    if dataset not in names:
        close = difflib.get_close_matches(dataset, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserDataError(option, f"unknown torchvision dataset {dataset!r}{hint}; "
                                    f"e.g. {', '.join(n for n in names if 'MNIST' in n)}")
    return getattr(tvd, dataset)


def _tv_root(root: str | None) -> Path:
    return Path(root) if root is not None else data_root()


def _tv_files(options: dict[str, Any]) -> list[Path]:
    """The files under ROOT/DATASET (torchvision's usual layout), when that folder exists."""
    folder = _tv_root(options.get("root")) / str(options.get("dataset"))
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.rglob("*") if f.is_file())


def _tv_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """A torchvision dataset (no transform) as uint8 N×C×H×W and int64 labels."""
    import torch

    data = getattr(ds, "data", None)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = getattr(ds, "labels", None)
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    if isinstance(data, np.ndarray) and targets is not None and data.dtype == np.uint8:
        x = data
    else:  # one item at a time (PIL images)
        items = [ds[i] for i in range(len(ds))]
        x = np.stack([np.asarray(img, dtype=np.uint8) for img, _ in items])
        targets = [t for _, t in items]
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # N×H×W×C (CIFAR) -> N×C×H×W
    y = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets)
    return np.ascontiguousarray(x), y.astype(np.int64)


def _tv_load(cls: Any, root: Path, dataset: str, train: bool, extra: dict[str, Any]):
    import inspect

    params = inspect.signature(cls).parameters
    kwargs = {"root": str(root), "download": False, **extra}
    if "train" in params or "kwargs" in params and "split" in params:
        kwargs["train"] = train
    elif "split" in params and "split" not in extra:
        kwargs["split"] = "train" if train else "test"
    try:
        return cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - not there, or options it does not take
        text = " ".join(str(exc).split())[:120]
        raise UserDataError("root", f"torchvision {dataset}: cannot load from {root} ({text}); "
                                    "ablab does not download it: put its files there in "
                                    f"torchvision's layout (torchvision.datasets.{dataset}"
                                    "(root, download=True) does)") from None


@DATASETS.register(
    "torchvision",
    "a torchvision dataset by name whose files are already on disk (never downloaded)",
    official_test=True,
    paths=("root",),
    files=_tv_files,
    size=60000,
)
def torchvision_dataset(
    *, dataset: str, root: str | None = None, options: dict[str, Any] = {}  # noqa: B006
) -> RawData:
    """``dataset``: a class of ``torchvision.datasets`` (KMNIST, CIFAR100, SVHN, ...);
    ``root``: the folder torchvision would download to (default ``$ABLAB_DATA``); its
    train and test splits become the training data and the official test set;
    ``options``: further arguments, e.g. ``{ split = "balanced" }`` for EMNIST."""
    cls = _tv_class("dataset", dataset)
    where = _tv_root(root)
    x, y = _tv_arrays(_tv_load(cls, where, dataset, True, dict(options)))
    tx, ty = _tv_arrays(_tv_load(cls, where, dataset, False, dict(options)))
    classes = getattr(cls, "classes", None) or sorted(set(y.tolist()))
    names = [str(c) for c in classes]
    if len(names) < int(max(y.max(), ty.max())) + 1:
        names = [str(i) for i in range(int(max(y.max(), ty.max())) + 1)]
    return RawData(x, y, names, "unit", x_test=tx, y_test=ty)

"""Datasets read from the user's own files: ``csv`` (and Parquet), ``npz`` and
``image_folder``, registered like the built-ins, so they take the same split,
normalize, subset, eval_subset and val_fraction options::

    dataset = { name = "csv", path = "data/points.csv", target = "label" }
    dataset = { name = "npz", path = "data/arrays.npz" }            # arrays x and y
    dataset = { name = "image_folder", path = "data/shapes", size = [32, 32] }

Paths: a relative path is read from the dataset's ``base_dir``, which the study loader
sets to the study file's folder (the current directory for a config built in Python), so
a study runs the same from any directory. ``base_dir`` is not part of a run's identity
(the path as written is), so a moved project keeps its run ids; what the files hold is
checked by the data fingerprints (see :mod:`ablab.data.fingerprint`, ``--rerun-changed``).

Each loader raises :class:`UserDataError` (one line, naming the file and the option) for
a missing file or column, a non-numeric feature, a single class, images of mixed sizes
without ``size``, an empty folder or an unsupported file type. :func:`check_study_data`
runs at plan time (a study check), so these come out before any worker starts.

Datasets of torchvision whose files are already on disk (never downloaded)::

    dataset = { name = "torchvision", dataset = "KMNIST", root = "data" }

Regression: ``task = "regression"`` keeps the target (``target`` column, ``y`` array) as
float32 in its own units; the model gets one output, the losses are ``mse`` / ``mae`` /
``huber`` and the metrics RMSE, MAE, R² and MSE. With ``standardize_target`` (default on)
the model trains on the target standardised with the training split's mean and std;
metrics are still in the target's units. ``task = "classification"`` (integer or string
labels) is what a table with few distinct label values gets when ``task`` is left out; a
fractional target, or more distinct integers than a classification plausibly has (see
:func:`looks_continuous`), without ``task`` is refused with one line naming the column and
both ways on. Class names a file gives (string labels; an npz ``classes`` array) are the
names the report's confusion matrices and per-class figures show.

A separate test set: ``test_path`` (csv, image_folder) or the arrays ``x_test`` / ``y_test``
in the ``.npz`` file; it is then the official test set (``test_fraction`` is not used).

Image folders are decoded once and cached as arrays under ``data_root()/user-images``
(``$ABLAB_DATA``, default ``~/.cache/ablab``), keyed by the SHA-256 of every image file
plus ``size`` and ``channels``: editing, adding or removing an image makes a new cache.

The datasets themselves are registered in :mod:`ablab.data.user_tables` (csv, npz) and
:mod:`ablab.data.user_images` (image_folder, torchvision); this module holds what they
share: their error, their paths and files, and how labels and targets are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ablab.errors import UserError
from ablab.lazy import LazyModule
from ablab.registry import DATASETS

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

PositiveInt = Annotated[int, Field(gt=0)]
ImageSize = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")


class UserDataError(UserError):
    """A user's data file cannot be used; ``option`` names the dataset option at fault."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option
        self.message = message


# ---------------------------------------------------------------- paths


def path_options(name: str) -> tuple[str, ...]:
    """The options of dataset ``name`` that are file paths (its registry meta ``paths``)."""
    return tuple(DATASETS.get(name).meta.get("paths", ()))


def resolve_paths(name: str, options: dict[str, Any], base_dir: str | None) -> dict[str, Any]:
    """``options`` with each path option made absolute: ``~`` expanded, a relative path
    joined to ``base_dir`` (the study file's folder; the current directory when None)."""
    out = dict(options)
    base = Path(base_dir) if base_dir else Path.cwd()
    for key in path_options(name):
        value = out.get(key)
        if isinstance(value, str):
            p = Path(value).expanduser()
            out[key] = str(p if p.is_absolute() else (base / p).absolute())
    return out


def files_of(name: str, options: dict[str, Any]) -> list[Path]:
    """The files dataset ``name`` reads with (resolved) ``options``: what the data
    fingerprints hash. A missing path is listed as is, so it is reported missing."""
    out: list[Path] = []
    for key in path_options(name):
        value = options.get(key)
        if not isinstance(value, str):
            continue
        p = Path(value)
        out += _image_files(p) if p.is_dir() else [p]
    return out


def file_stamp(name: str, options: dict[str, Any]) -> tuple:
    """(path, size, mtime) of every file read: part of the in-process cache key, so an
    edited file is read again."""
    stamp = []
    declared = DATASETS.get(name).meta.get("files")
    for p in declared(options) if callable(declared) else []:
        try:
            st = p.stat()
            stamp.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((str(p), -1, -1))
    return tuple(stamp)


def _need_file(option: str, path: Path) -> Path:
    if not path.exists():
        raise UserDataError(option, f"{path}: no such file")
    if path.is_dir():
        raise UserDataError(option, f"{path}: is a folder; give a file")
    return path


# ---------------------------------------------------------------- labels


def _labels(option: str, where: str, values: np.ndarray,
            classes: list[Any] | None = None) -> tuple[np.ndarray, list[Any]]:
    """Labels as int64 0..K-1 and the class values in that order. Integer labels keep
    their order (names "0", "1", ...); strings are sorted. ``classes``: the training
    set's classes, which a test set must use."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise UserDataError(option, f"{where}: labels must be one value per example, got "
                                    f"shape {values.shape}")
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            raise UserDataError(option, f"{where}: missing labels (NaN)")
        if not np.all(values == np.round(values)):
            raise UserDataError(option, f"{where}: labels are fractional numbers; classes "
                                        "are integers or strings; for a number to "
                                        "predict set task = 'regression'")
        values = values.astype(np.int64)
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    if values.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
            raise UserDataError(option, f"{where}: missing labels")
        values = values.astype(str)
    if values.dtype.kind not in "iuU":
        raise UserDataError(option, f"{where}: labels of type {values.dtype} are not classes; "
                                    "use integers or strings")
    if classes is None:
        classes = sorted(np.unique(values).tolist())
        if len(classes) < 2:
            raise UserDataError(option, f"{where}: only one class ({classes[0]!r}) in the "
                                        "labels; a classifier needs at least two")
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({v for v in np.unique(values).tolist() if v not in lookup})
    if unknown:
        raise UserDataError(option, f"{where}: classes {unknown[:5]} are not in the training "
                                    f"set's classes {classes[:10]}")
    return np.array([lookup[v] for v in values.tolist()], dtype=np.int64), classes


def _names(classes: list[Any]) -> list[str]:
    return [str(c) for c in classes]


Task = Literal["classification", "regression"]
#: A target with more distinct values than this is not taken for classes unless
#: ``task = "classification"`` says so (nor with more than ``n / CLASS_RATIO`` distinct
#: values once there are more than ``MIN_FOR_RATIO`` of them).
MAX_INFERRED_CLASSES = 50
CLASS_RATIO = 5
MIN_FOR_RATIO = 10


def looks_continuous(values: np.ndarray) -> str | None:
    """Why a target given without ``task`` cannot be taken for class labels (None when it
    can): fractional numbers, or more distinct numbers than a classification sensibly has
    (over 50, or over n/5 once there are more than 10). Strings are always classes."""
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        return None
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.dtype.kind == "f" and not np.all(finite == np.round(finite)):
        return "holds fractional numbers"
    distinct = len(np.unique(finite))
    if distinct > MAX_INFERRED_CLASSES or (distinct > MIN_FOR_RATIO
                                           and distinct > len(values) / CLASS_RATIO):
        return f"has {distinct} distinct values in {len(values)} rows"
    return None


def _check_task(option: str, where: str, values: np.ndarray, task: str | None) -> str:
    """The task of a target: ``task`` when given, else classification unless the values
    look continuous (then one line naming the column and both ways on)."""
    if task is not None:
        return task
    why = looks_continuous(values)
    if why is not None:
        raise UserDataError(option, f"{where} {why}: is it a number to predict or classes? "
                                    "set task = 'regression' or 'classification'")
    return "classification"


def _regression_target(option: str, where: str, values: np.ndarray) -> np.ndarray:
    """A regression target as float32, one value per example (N or N×1), all finite."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise UserDataError(option, f"{where}: a regression target is one number per "
                                    f"example (shape N or N×1), got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        bad = next((v for v in values.tolist() if not _is_number(v)), values[0])
        raise UserDataError(option, f"{where}: task = 'regression' needs numbers, got "
                                    f"{bad!r}; use task = 'classification' for classes")
    y = values.astype(np.float32)
    if not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise UserDataError(option, f"{where}: missing or infinite target values (first at "
                                    f"row {row + 1})")
    if len(np.unique(y)) < 2:
        raise UserDataError(option, f"{where}: the target is constant ({y[0]!r}); nothing "
                                    "to predict")
    return np.ascontiguousarray(y)


def _target(option: str, where: str, values: np.ndarray, task: str,
            classes: list[Any] | None = None) -> tuple[np.ndarray, list[Any]]:
    """(y, classes): labels 0..K-1 and their classes, or a float32 target and no classes."""
    if task == "regression":
        return _regression_target(option, where, values), []
    return _labels(option, where, values, classes)


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- files read


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and _visible(d))


def _image_files(root: Path) -> list[Path]:
    """Every image file in the class folders of ``root``, in a fixed order."""
    out = []
    for d in _class_dirs(root):
        out += sorted(f for f in d.rglob("*")
                      if f.is_file() and _visible(f) and f.suffix.lower() in IMAGE_SUFFIXES)
    return out


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

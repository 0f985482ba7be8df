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
"""

# No `from __future__ import annotations` here: the registry reads the option annotations
# of these functions at runtime (pydantic), so they must be real objects.

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ablab.data.base import RawData
from ablab.data.sources import data_root
from ablab.errors import UserError
from ablab.registry import DATASETS

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


# ---------------------------------------------------------------- csv / parquet


def _read_table(option: str, path: Path):
    import pandas as pd

    _need_file(option, path)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UserDataError(option, f"{path}: unsupported file type {path.suffix!r}; allowed: "
                                    f"{', '.join(TABLE_SUFFIXES)}")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        text = " ".join(str(exc).split())[:120]
        raise UserDataError(option, f"{path}: cannot read as {kind}: {text}") from None


def _table_arrays(option: str, path: Path, frame, target: str,
                  features: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise UserDataError("target", f"{path}: no column {target!r}; columns: "
                                      f"{', '.join(columns[:20])}")
    chosen = features if features is not None else [c for c in columns if c != target]
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise UserDataError("features", f"{path}: no column {missing[0]!r}; columns: "
                                        f"{', '.join(columns[:20])}")
    if target in chosen:
        raise UserDataError("features", f"{path}: the target column {target!r} cannot also "
                                        "be a feature")
    if not chosen:
        raise UserDataError("features", f"{path}: no feature columns besides {target!r}")
    for col in chosen:
        series = frame[col]
        if series.dtype.kind not in "biuf":
            bad = next((v for v in series.tolist() if not _is_number(v)), series.iloc[0])
            raise UserDataError(
                "features", f"{path}: column {col!r} is not numeric (e.g. {bad!r}); encode it "
                "as numbers or leave it out with features = [...]")
        if series.isna().any():
            row = int(np.flatnonzero(series.isna().to_numpy())[0])
            raise UserDataError("features", f"{path}: column {col!r} has missing values "
                                            f"(first at data row {row + 1})")
    x = frame[chosen].to_numpy(dtype=np.float32)
    return np.ascontiguousarray(x), frame[target].to_numpy()


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


@DATASETS.register(
    "csv",
    "a table of yours (.csv, .tsv, .parquet): numeric feature columns and a label column",
    official_test=False,
    paths=("path", "test_path"),
    files=lambda options: files_of("csv", options),
    tabular=True,
    size=1000,
)
def csv_table(
    *,
    path: str,
    target: str = "label",
    features: list[str] | None = None,
    test_path: str | None = None,
    task: Task | None = None,
    standardize_target: bool = True,
) -> RawData:
    """Feature columns: ``features`` or every column but ``target``; string labels become
    classes (sorted), keeping their names. ``task``: "classification" or "regression"
    (None: classification, refused when the target looks continuous);
    ``standardize_target`` (regression): train on the standardised target."""
    p = Path(path)
    frame = _read_table("path", p)
    x, labels = _table_arrays("path", p, frame, target, features)
    where = f"{p}: column {target!r}"
    task = _check_task("target", where, labels, task)
    y, classes = _target("target", where, labels, task)
    raw = RawData(x, y, _names(classes), "standard", task=task,
                  standardize_target=standardize_target and task == "regression")
    if test_path is not None:
        tp = Path(test_path)
        tx, tlabels = _table_arrays("test_path", tp, _read_table("test_path", tp), target,
                                    features if features is not None else
                                    [c for c in map(str, frame.columns) if c != target])
        raw.x_test = tx
        raw.y_test, _ = _target("test_path", f"{tp}: column {target!r}", tlabels, task,
                                classes)
    return raw


# ---------------------------------------------------------------- npz


def _npz_x(where: str, x: np.ndarray) -> np.ndarray:
    """2-D: tabular; 3-D: N×H×W grey images; 4-D: N×C×H×W images."""
    if x.dtype.kind not in "biuf":
        raise UserDataError("x_key", f"{where}: holds {x.dtype} values; features must be "
                                     "numbers")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise UserDataError("x_key", f"{where}: shape {x.shape}; allowed: N×F (tabular), "
                                     "N×H×W or N×C×H×W (images)")
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise UserDataError("x_key", f"{where}: holds NaN or infinite values")
    return np.ascontiguousarray(x)


@DATASETS.register(
    "npz",
    "arrays of yours in an .npz file: x (N×F, N×H×W or N×C×H×W) and y (labels or, with "
    "task = 'regression', numbers)",
    official_test=False,
    paths=("path",),
    files=lambda options: files_of("npz", options),
    size=1000,
)
def npz_arrays(
    *,
    path: str,
    x_key: str = "x",
    y_key: str = "y",
    x_test_key: str = "x_test",
    y_test_key: str = "y_test",
    task: Task | None = None,
    standardize_target: bool = True,
) -> RawData:
    """uint8 images are scaled to [0, 1] (normalize "unit" by default); float data is
    standardized per feature / channel by default. When the file also holds the arrays
    ``x_test_key`` and ``y_test_key``, they are the official test set. An array
    ``classes`` (one name per label 0..K-1) names integer labels' classes. ``task`` and
    ``standardize_target``: as for ``csv``."""
    p = _need_file("path", Path(path))
    if p.suffix.lower() != ".npz":
        raise UserDataError("path", f"{p}: unsupported file type {p.suffix!r}; allowed: .npz "
                                    "(numpy.savez)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - a bad or pickled file
        text = " ".join(str(exc).split())[:120]
        raise UserDataError("path", f"{p}: cannot read as .npz: {text}") from None
    for option, key in (("x_key", x_key), ("y_key", y_key)):
        if key not in arrays:
            raise UserDataError(option, f"{p}: no array {key!r}; arrays: "
                                        f"{', '.join(arrays) or 'none'}")
    x = _npz_x(f"{p}: array {x_key!r}", arrays[x_key])
    where = f"{p}: array {y_key!r}"
    values = arrays[y_key]
    if task is None and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    task = _check_task("y_key", where, values, task)
    y, classes = _target("y_key", where, values, task)
    if len(x) != len(y):
        raise UserDataError("y_key", f"{p}: {x_key!r} has {len(x)} examples but {y_key!r} "
                                     f"has {len(y)}")
    default = "unit" if x.dtype == np.uint8 else "standard"
    names = _npz_class_names(p, arrays.get("classes"), classes) if classes else []
    raw = RawData(x, y, names, default, task=task,
                  standardize_target=standardize_target and task == "regression")
    has = [k in arrays for k in (x_test_key, y_test_key)]
    if any(has) and not all(has):
        missing = x_test_key if not has[0] else y_test_key
        raise UserDataError("x_test_key", f"{p}: has a test array but not {missing!r}; give "
                                          "both or neither")
    if all(has):
        tx = _npz_x(f"{p}: array {x_test_key!r}", arrays[x_test_key])
        if tx.shape[1:] != x.shape[1:] or tx.dtype != x.dtype:
            raise UserDataError("x_test_key", f"{p}: {x_test_key!r} is {tx.dtype} "
                                              f"{tx.shape[1:]} per example, {x_key!r} is "
                                              f"{x.dtype} {x.shape[1:]}")
        ty, _ = _target("y_test_key", f"{p}: array {y_test_key!r}", arrays[y_test_key], task,
                        classes)
        raw.x_test, raw.y_test = tx, ty
    return raw


def _npz_class_names(p: Path, given: np.ndarray | None, classes: list[Any]) -> list[str]:
    """The class names: the file's ``classes`` array (one name per integer label 0..K-1),
    else the label values themselves."""
    if given is None:
        return _names(classes)
    names = [str(c) for c in np.asarray(given).reshape(-1).tolist()]
    ints = all(isinstance(c, int) for c in classes)
    if not ints or min(classes) < 0 or max(classes) >= len(names):
        raise UserDataError("y_key", f"{p}: array 'classes' has {len(names)} names; the "
                                     f"labels must be integers 0..{len(names) - 1} to use "
                                     f"them, got {classes[:10]}")
    return [names[c] for c in classes]


# ---------------------------------------------------------------- image folders


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


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

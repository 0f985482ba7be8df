"""The user's tables and arrays as datasets: ``csv`` (also TSV and Parquet) and ``npz``
(see :mod:`ablab.data.user_files` for paths, labels and targets). No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablab.data.base import RawData
from ablab.data.user_files import (
    TABLE_SUFFIXES,
    Task,
    UserDataError,
    _check_task,
    _is_number,
    _names,
    _need_file,
    _target,
    files_of,
)
from ablab.lazy import LazyModule
from ablab.registry import DATASETS

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

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

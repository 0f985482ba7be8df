"""A dataset's arrays as its registry function returns them (cached in-process) and the
stratified splits of them: numpy and scikit-learn only, no torch, so the plan checks
(:mod:`ablab.data.plan_check`) split the user's data exactly as a run will without loading
torch. :mod:`ablab.data.loading` puts the splits on a device.

Splitting (all stratified, deterministic from ``split_seed``, else the run seed; a
regression target is stratified on its quantile bins, see :func:`strata`):

1. test: the official test set when the dataset has one, else ``test_fraction`` held out;
2. validation: ``val_fraction`` of what remains (none when ``validate_on == "test"``: then
   ``val`` is the test split and all the remaining data trains);
3. ``subset`` caps the training split.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ablab.config import DatasetConfig
from ablab.data.base import RawData
from ablab.data.sources import data_root
from ablab.data.user_files import file_stamp, path_options, resolve_paths
from ablab.lazy import LazyModule
from ablab.registry import DATASETS

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

NORMALIZE_MODES = ("unit", "half", "standard", "per_feature", "none")


@functools.lru_cache(maxsize=8)
def _load_raw_cached(name: str, options_json: str, root: str, stamp: tuple = ()) -> RawData:
    raw = DATASETS.get(name).fn(**json.loads(options_json))
    for arr in (raw.x, raw.y, raw.x_test, raw.y_test):
        if arr is not None:
            arr.setflags(write=False)  # shared by every run in this process
    return raw


def load_raw(name: str, options: dict[str, Any] | None = None) -> RawData:
    """The registry function's result, cached in-process on (name, options, data root), so
    a worker running many runs reads the files once. The arrays are read-only. For a
    dataset read from the user's files (``csv``, ``npz``, ``image_folder``), ``options``
    hold absolute paths (see :func:`dataset_options`), and the files' sizes and times are
    part of the key, so an edited file is read again."""
    options = options or {}
    stamp = file_stamp(name, options) if path_options(name) else ()
    return _load_raw_cached(name, json.dumps(options, sort_keys=True), str(data_root()), stamp)


def dataset_options(cfg: DatasetConfig) -> dict[str, Any]:
    """The registry function's options of ``cfg``, relative paths joined to its
    ``base_dir`` (the study file's folder)."""
    if not path_options(cfg.name):
        return cfg.options
    return resolve_paths(cfg.name, cfg.options, cfg.base_dir)


def clear_cache() -> None:
    _load_raw_cached.cache_clear()


def _split(
    idx: np.ndarray, y: np.ndarray, keep: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``idx`` into (kept, rest), ``keep`` a count or a fraction of
    ``idx``. Falls back to an unstratified split when a class is too small to stratify."""
    from sklearn.model_selection import train_test_split  # 1-5 s: loaded when a run needs it

    rs = seed % (2**32)
    try:
        a, b = train_test_split(idx, train_size=keep, stratify=y[idx], random_state=rs)
    except ValueError:
        a, b = train_test_split(idx, train_size=keep, random_state=rs)
    return np.sort(a), np.sort(b)


#: A regression target is split stratified on this many quantile bins (fewer when the
#: data are too few to put two examples of every bin in every split).
TARGET_BINS = 5


def strata(y: np.ndarray) -> np.ndarray:
    """What splits are stratified on: class labels as they are; a float (regression)
    target's quantile bin (``TARGET_BINS`` bins of equal count), so every split spans the
    target's range. (``_split`` falls back to an unstratified split where a bin is too
    small.)"""
    if y.dtype.kind != "f":
        return y
    edges = np.quantile(y, np.linspace(0, 1, TARGET_BINS + 1)[1:-1])
    return np.searchsorted(edges, y, side="right")


def split_indices(
    y: np.ndarray,
    *,
    has_test: bool,
    val_fraction: float,
    test_fraction: float,
    subset: int | None,
    seed: int,
    validate_on: str = "holdout",
) -> dict[str, np.ndarray | None]:
    """Index arrays into ``y`` for train / val / test (test is None when the dataset has
    an official test set; val is None when there is no hold-out). A float ``y`` (a
    regression target) is stratified on its quantile bins."""
    y = strata(y)
    idx = np.arange(len(y))
    test = None
    if not has_test:
        idx, test = _split(idx, y, 1.0 - test_fraction, seed)
    val = None
    if validate_on == "holdout" and val_fraction > 0:
        idx, val = _split(idx, y, 1.0 - val_fraction, seed + 1)
    if subset is not None and subset < len(idx):
        idx, _ = _split(idx, y, subset, seed + 2)
    return {"train": idx, "val": val, "test": test}


def _cap(idx: np.ndarray, y: np.ndarray, cap: int | None) -> np.ndarray:
    """At most ``cap`` of ``idx``, stratified, always the same ones (quick runs only)."""
    if cap is None or cap >= len(idx):
        return idx
    return _split(idx, strata(y), cap, 0)[0]

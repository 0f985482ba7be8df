"""Data checks made when a study is planned (and before ``ablab train``), before any
worker starts; each failure is one line naming the study file and the field.

Datasets read from the user's files (``csv``, ``npz``, ``image_folder``) are read once
(and kept in this process's cache), so a missing file or column, a non-numeric feature, a
single class or images of mixed sizes is refused here. The model must take the data's
shape, which built-in datasets declare in their registry entry but a user's files only
tell when read.

Every dataset must be big enough for its split (:func:`check_split_sizes`): the train,
validation and test splits are stratified, so each must hold at least one example of
every class. A dataset whose labels are read here (the user's files) is split exactly as
a run splits it, for each split seed, and each split's classes are compared with the
dataset's; a built-in dataset is checked from the size and class count its registry entry
declares (``size``: a number or the option that gives it, ``classes``), the sizes computed
as the split computes them (scikit-learn's ``floor(train_size * n)``). A batch size larger
than the training split is allowed: the split is then one batch (``BatchLoader``)."""

from __future__ import annotations

import math
from typing import Any

from ablab.data.raw import _cap, dataset_options, load_raw, split_indices
from ablab.data.user_files import UserDataError, path_options
from ablab.errors import ConfigError
from ablab.lazy import LazyModule
from ablab.registry import DATASETS, MODELS
from ablab.study import add_plan_check

np = LazyModule("numpy")  # imported where data is read: listing and planning need none


def _where(study: Any, option: str) -> str:
    """Where the user wrote ``dataset.OPTION``: base.dataset.OPTION or vary[i]."KEY"."""
    path = f"dataset.{option}"
    for i, factor in enumerate(study.factors):
        for key in factor:
            if key in (path, "dataset", "dataset.name"):
                return f'vary[{i}]."{key}"'
    return f"base.{path}"


def _dataset_where(study: Any) -> str:
    """Where the study sets its dataset: the first varied dataset key, else base.dataset."""
    for i, factor in enumerate(study.factors):
        for key in factor:
            if key == "dataset" or key.startswith("dataset."):
                return f'vary[{i}]."{key}"'
    return "base.dataset"


def check_study_data(study: Any) -> None:
    """Raise ConfigError (one line) when a run's data files cannot be used, or a run's
    dataset is too small for its split."""
    _check_files(study)
    seen: set[str] = set()
    for run in study.runs:
        cfg = run.config.dataset
        if cfg is None:  # a trainer that takes no dataset of ablab's
            continue
        key = repr((cfg.model_dump(mode="json"), run.config.split_seed))
        if key not in seen:
            seen.add(key)
            check_split_sizes(cfg, run.config.split_seed, f"{study.source}: "
                              f"{_dataset_where(study)}")


def check_run_data(config: Any, source: str) -> None:
    """The same checks for one run (``ablab train``): its data files and its split."""
    cfg = config.dataset
    if cfg is None:  # a trainer that takes no dataset of ablab's
        return
    if path_options(cfg.name):
        try:
            load_raw(cfg.name, dataset_options(cfg))
        except UserDataError as exc:
            raise ConfigError(f"{source}: dataset.{exc.option}: {exc.message}") from None
    check_split_sizes(cfg, config.split_seed, f"{source}: dataset")


def _check_files(study: Any) -> None:
    seen: set[str] = set()
    for run in study.runs:
        cfg = run.config.dataset
        if cfg is None or not path_options(cfg.name):  # a trainer may read no dataset
            continue
        options = dataset_options(cfg)
        model = run.config.model  # None: a trainer that builds its own model
        key = repr((cfg.name, sorted(options.items()), model and model.name))
        if key in seen:
            continue
        seen.add(key)
        try:
            raw = load_raw(cfg.name, options)
        except UserDataError as exc:
            raise ConfigError(f"{study.source}: {_where(study, exc.option)}: {exc.message}") \
                from None
        shape = tuple(int(d) for d in raw.x.shape[1:])
        min_hw = None if model is None else MODELS.get(model.name).meta.get("min_hw")
        if min_hw is not None and (len(shape) != 3 or min(shape[1:]) < min_hw):
            raise ConfigError(
                f"{study.source}: model.name: {run.config.model.name!r} needs image input "
                f"(C, H, W) with H, W >= {min_hw}; dataset {cfg.name!r} ({cfg.options['path']}) "
                f"gives shape {shape}"
            )
        if cfg.augment.enabled and len(shape) != 3:
            raise ConfigError(
                f"{study.source}: base.dataset.augment: augmentation needs image data; "
                f"dataset {cfg.name!r} gives shape {shape}; turn dataset.augment off"
            )


# ---------------------------------------------------------------- split sizes


def _fractions(cfg: Any, has_test: bool) -> str:
    """The options that size the splits, as the user wrote them."""
    parts = [] if has_test else [f"test_fraction = {cfg.test_fraction:g}"]
    if cfg.validate_on == "holdout":
        parts.append(f"val_fraction = {cfg.val_fraction:g}")
    else:
        parts.append('validate_on = "test"')
    for option in ("subset", "eval_subset"):
        if getattr(cfg, option) is not None:
            parts.append(f"{option} = {getattr(cfg, option)}")
    return ", ".join(parts)


def planned_sizes(cfg: Any, n: int, has_test: bool, n_test: int | None = None
                  ) -> dict[str, int]:
    """The train / val / test sizes a run of ``cfg`` gets from ``n`` examples, computed as
    :func:`ablab.data.loading.split_indices` splits (scikit-learn keeps
    ``floor(train_size * n)``). With an official test set (``has_test``) the test size is
    ``n_test``, left out when not known."""
    pool = n
    test: int | None = n_test
    if not has_test:
        pool = math.floor((1.0 - cfg.test_fraction) * n)
        test = n - pool
    train, val = pool, None
    if cfg.validate_on == "holdout" and cfg.val_fraction > 0:
        train = math.floor((1.0 - cfg.val_fraction) * pool)
        val = pool - train
    if cfg.subset is not None:
        train = min(train, cfg.subset)
    cap = cfg.eval_subset
    if cap is not None:
        val = None if val is None else min(val, cap)
        test = cap if test is None else min(test, cap)
    sizes = {"train": train, "val": val, "test": test}
    return {k: v for k, v in sizes.items() if v is not None}


def _too_small(cfg: Any, where: str, n: int, classes: int | None, sizes: dict[str, int],
               has_test: bool, what: str) -> ConfigError:
    counts = " / ".join(str(v) for v in sizes.values())
    of = f" of {classes} classes" if classes else ""
    need = "every class" if classes else "one example"
    return ConfigError(
        f"{where}: dataset {cfg.name!r} has {n} examples{of}; with {_fractions(cfg, has_test)} "
        f"its {' / '.join(sizes)} splits hold {counts}: {what}; each split needs at least "
        f"one example of {need} (use more examples or larger fractions)"
    )


def check_split_sizes(cfg: Any, split_seed: int, where: str) -> None:
    """Raise ConfigError (one line) when a split of ``cfg``'s dataset would lack a class
    (or be empty): checked on the labels for the user's files, else on the size and class
    count the dataset's registry entry declares (nothing to check when it declares none)."""
    entry = DATASETS.get(cfg.name)
    if path_options(cfg.name):
        _check_labels(cfg, split_seed, where)
        return
    size = entry.meta.get("size")
    n = cfg.options.get(size) if isinstance(size, str) else size
    classes = entry.meta.get("classes")
    if not isinstance(n, int) or not isinstance(classes, int):
        return
    has_test = bool(entry.meta.get("official_test"))
    sizes = planned_sizes(cfg, n, has_test, entry.meta.get("test_size"))
    short = [k for k, v in sizes.items() if v < classes]
    if short:
        what = f"the {short[0]} split cannot hold one of each of the {classes} classes"
        raise _too_small(cfg, where, n, classes, sizes, has_test, what)


def _check_labels(cfg: Any, split_seed: int, where: str) -> None:
    """Split the labels exactly as a run does and look at what each split holds."""
    raw = load_raw(cfg.name, dataset_options(cfg))
    y = np.asarray(raw.y)
    has_test = raw.y_test is not None
    ids = split_indices(y, has_test=has_test, val_fraction=cfg.val_fraction,
                        test_fraction=cfg.test_fraction, subset=cfg.subset, seed=split_seed,
                        validate_on=cfg.validate_on)
    labels = {"train": y[ids["train"]]}
    if ids["val"] is not None:
        labels["val"] = y[_cap(ids["val"], y, cfg.eval_subset)]
    if has_test:
        y_test = np.asarray(raw.y_test)
        labels["test"] = y_test[_cap(np.arange(len(y_test)), y_test, cfg.eval_subset)]
    else:
        labels["test"] = y[_cap(ids["test"], y, cfg.eval_subset)]
    sizes = {k: len(v) for k, v in labels.items()}
    regression = np.issubdtype(y.dtype, np.floating)  # a target to fit: no classes
    # the classes the split is stratified on: those the examples hold
    classes = None if regression else np.unique(y).tolist()
    for split, held in labels.items():
        if regression or split == "test" and has_test:
            missing = [] if len(held) else ["any"]
        else:
            missing = sorted(set(classes) - set(np.unique(held).tolist()))
        if missing:
            if regression or missing == ["any"]:
                what = f"the {split} split is empty"
            else:
                names = ", ".join(repr(raw.class_names[c]) for c in missing[:3])
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                what = f"the {split} split has no example of class {names}{more}"
            raise _too_small(cfg, where, len(y), None if regression else len(classes),
                             sizes, has_test, what)


add_plan_check(check_study_data)  # the user's data files are read when a study is planned

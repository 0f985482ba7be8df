"""The study check for datasets read from the user's files (``csv``, ``npz``,
``image_folder``): each is read once when the study is planned (and kept in this
process's cache), so a missing file or column, a non-numeric feature, a single class or
images of mixed sizes is one line naming the study file and the option, before any
worker starts. It also checks the model can take the data's shape, which built-in
datasets declare in their registry entry but a user's files only tell when read."""

from __future__ import annotations

from typing import Any

from ablab.data.loading import dataset_options, load_raw
from ablab.data.user_files import UserDataError, path_options
from ablab.errors import ConfigError
from ablab.registry import MODELS


def _where(study: Any, option: str) -> str:
    """Where the user wrote ``dataset.OPTION``: base.dataset.OPTION or vary[i]."KEY"."""
    path = f"dataset.{option}"
    for i, factor in enumerate(study.factors):
        for key in factor:
            if key in (path, "dataset", "dataset.name"):
                return f'vary[{i}]."{key}"'
    return f"base.{path}"


def check_study_data(study: Any) -> None:
    """Raise ConfigError (one line) when a run's data files cannot be used."""
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

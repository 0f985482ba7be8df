"""Datasets, splits, normalization, batching and augmentation.

Importing this package registers the built-in datasets (moons, circles, digits, mnist,
fashion_mnist, cifar10, and csv, npz, image_folder for the user's own files, see
:mod:`ablab.data.user_files`) in ``ablab.registry.DATASETS``. ``load_data(cfg, seed, device)``
gives a ``DataBundle`` whose splits live on ``device``; ``BatchLoader`` iterates batches of
one split, normalized (and augmented, before normalization) on that device.
"""

from ablab.data.augment import augment_batch
from ablab.data.base import DataBundle, RawData, Split
from ablab.data.loading import BatchLoader, clear_cache, load_data, load_raw, split_indices
from ablab.data.plan_check import check_study_data
from ablab.data.sources import data_root, read_cifar10, read_idx
from ablab.data.user_files import UserDataError
from ablab.study import add_plan_check

add_plan_check(check_study_data)  # the user's data files are read when a study is planned

__all__ = [
    "BatchLoader",
    "DataBundle",
    "RawData",
    "Split",
    "UserDataError",
    "augment_batch",
    "clear_cache",
    "data_root",
    "load_data",
    "load_raw",
    "read_cifar10",
    "read_idx",
    "split_indices",
]

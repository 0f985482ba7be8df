"""Datasets, splits, normalization, batching and augmentation.

Importing this package registers the built-in datasets (moons, circles, digits, mnist,
fashion_mnist, cifar10) in ``ablab.registry.DATASETS``. ``load_data(cfg, seed, device)``
gives a ``DataBundle`` whose splits live on ``device``; ``BatchLoader`` iterates batches of
one split, normalized (and augmented, before normalization) on that device.
"""

from ablab.data.augment import augment_batch
from ablab.data.base import DataBundle, RawData, Split
from ablab.data.loading import BatchLoader, clear_cache, load_data, load_raw, split_indices
from ablab.data.sources import data_root, read_cifar10, read_idx

__all__ = [
    "BatchLoader",
    "DataBundle",
    "RawData",
    "Split",
    "augment_batch",
    "clear_cache",
    "data_root",
    "load_data",
    "load_raw",
    "read_cifar10",
    "read_idx",
    "split_indices",
]

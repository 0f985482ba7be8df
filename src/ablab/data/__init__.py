"""Datasets, splits, normalization, batching and augmentation.

The built-in datasets (moons, circles, digits, mnist, fashion_mnist, cifar10, and csv,
npz, image_folder, torchvision for the user's own files, see :mod:`ablab.data.user_files`)
register in ``ablab.registry.DATASETS`` when their modules load
(``ablab.registry.load_builtins``), torch-free; so does the plan check that reads the
user's data files (:mod:`ablab.data.plan_check`). ``load_data(cfg, seed, device)`` gives a
``DataBundle`` whose splits live on ``device``; ``BatchLoader`` iterates batches of one
split, normalized (and augmented, before normalization) on that device. The names below
are imported from their modules on first use (``ablab.lazy``): only those that put data
on a device import torch.
"""

from ablab.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(__name__, globals(), {
    "augment": ("augment_batch",),
    "base": ("DataBundle", "RawData", "Split"),
    "loading": ("BatchLoader", "load_data"),
    "raw": ("clear_cache", "load_raw", "split_indices"),
    "plan_check": ("check_study_data",),
    "sources": ("data_root", "read_cifar10", "read_idx"),
    "user_files": ("UserDataError",),
})

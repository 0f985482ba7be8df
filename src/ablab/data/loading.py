"""From a ``DatasetConfig`` to a ``DataBundle`` on a device, and batches out of it.

Splitting (all stratified, deterministic from ``split_seed``, else the run seed; a
regression target is stratified on its quantile bins, see :func:`strata`):

1. test: the official test set when the dataset has one, else ``test_fraction`` held out;
2. validation: ``val_fraction`` of what remains (none when ``validate_on == "test"``: then
   ``val`` is the test split and all the remaining data trains);
3. ``subset`` caps the training split.

The official test set is never used for selection unless ``validate_on == "test"``.
"""

from __future__ import annotations

import numpy as np
import torch

from ablab.config import AugmentConfig, DatasetConfig
from ablab.data.augment import augment_batch
from ablab.data.base import DataBundle, RawData, Split
from ablab.data.raw import (  # noqa: F401  (the splits, read from here by earlier callers)
    NORMALIZE_MODES,
    _cap,
    _split,
    clear_cache,
    dataset_options,
    load_raw,
    split_indices,
    strata,
)


def _moments(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (images) / per-feature (tabular) mean and std of ``x * scale``, in
    float64 and chunked so big uint8 splits are not expanded at once."""
    if x.dtype == torch.uint8 and x.dim() == 4:
        # exact and fast: a 256-bin histogram per channel
        vals = torch.arange(256, dtype=torch.float64) * scale
        hist = torch.stack(
            [torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])]
        ).to(torch.float64)
        count = hist.sum(1)
        mean = (hist * vals).sum(1) / count
        var = ((hist * vals * vals).sum(1) / count - mean * mean).clamp_min(0)
        std = var.sqrt()
        return mean, torch.where(std < 1e-6, torch.ones_like(std), std)
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    total = torch.zeros((), dtype=torch.float64)
    s = s2 = None
    for chunk in torch.split(x, 8192):
        c = chunk.to(torch.float64) * scale
        cs, cs2 = c.sum(dim=dims), (c * c).sum(dim=dims)
        s = cs if s is None else s + cs
        s2 = cs2 if s2 is None else s2 + cs2
        total = total + c.numel() / cs.numel()
    mean = s / total
    var = (s2 / total - mean * mean).clamp_min(0)
    std = var.sqrt()
    std = torch.where(std < 1e-6, torch.ones_like(std), std)  # constant features
    return mean, std


def per_feature_moments(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of every input value position (each pixel of each channel, each
    feature) of ``x * scale`` over the examples: scikit-learn ``StandardScaler``'s
    semantics (population std, ddof 0; a constant position keeps scale 1). Float64,
    chunked; shaped like one example."""
    total = 0
    s = s2 = None
    for chunk in torch.split(x, 8192):
        c = chunk.to(torch.float64) * scale
        cs, cs2 = c.sum(dim=0), (c * c).sum(dim=0)
        s = cs if s is None else s + cs
        s2 = cs2 if s2 is None else s2 + cs2
        total += c.shape[0]
    mean = s / total
    var = (s2 / total - mean * mean).clamp_min(0)
    std = var.sqrt()
    return mean, torch.where(std < 1e-6, torch.ones_like(std), std)


def _norm_stats(
    mode: str, train_x: torch.Tensor, scale: float
) -> tuple[float, torch.Tensor, torch.Tensor]:
    image = train_x.dim() == 4
    n_ch = train_x.shape[1]
    shape = (1, n_ch, 1, 1) if image else (1, n_ch)
    if mode == "per_feature":
        mean, std = per_feature_moments(train_x, scale)
        shape = (1, *train_x.shape[1:])
    elif mode == "none":
        scale = 1.0
        mean, std = torch.zeros(n_ch), torch.ones(n_ch)
    elif mode == "unit":
        mean, std = torch.zeros(n_ch), torch.ones(n_ch)
    elif mode == "half":
        mean, std = torch.full((n_ch,), 0.5), torch.full((n_ch,), 0.5)
    elif mode == "standard":
        mean, std = _moments(train_x, scale)
    else:
        raise ValueError(f"unknown normalize mode {mode!r}; allowed: {', '.join(NORMALIZE_MODES)}")
    return (
        scale,
        mean.to(torch.float32).reshape(shape).contiguous(),
        std.to(torch.float32).reshape(shape).contiguous(),
    )


def _to_split(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None, device) -> Split:
    if idx is not None:
        x, y = x[idx], y[idx]  # fancy indexing copies
    else:
        x, y = x.copy(), y.copy()  # the cached arrays are read-only
    xt = torch.from_numpy(np.ascontiguousarray(x))
    ytype = np.float32 if y.dtype.kind == "f" else np.int64  # a regression target stays float
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=ytype))
    return Split(xt.to(device), yt.to(device))


def _all_examples(raw: RawData) -> torch.Tensor:
    """Every example the dataset holds (the official test set too), before any split: what
    ``normalize_fit_on = "all"`` fits the moments on."""
    parts = [raw.x] if raw.x_test is None else [raw.x, raw.x_test]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts)))


def load_data(cfg: DatasetConfig, seed: int, device: str | torch.device = "cpu") -> DataBundle:
    """Load, split, and put on ``device`` the data a run's config asks for."""
    raw = load_raw(cfg.name, dataset_options(cfg))
    has_test = raw.x_test is not None
    split_seed = cfg.split_seed if cfg.split_seed is not None else seed
    ids = split_indices(
        raw.y,
        has_test=has_test,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        subset=cfg.subset,
        seed=split_seed,
        validate_on=cfg.validate_on,
    )
    device = torch.device(device)
    cpu = torch.device("cpu")
    train = _to_split(raw.x, raw.y, ids["train"], cpu)
    cap = cfg.eval_subset
    if has_test:
        test_ids = None if cap is None else _cap(np.arange(len(raw.y_test)), raw.y_test, cap)
        test = _to_split(raw.x_test, raw.y_test, test_ids, cpu)
    else:
        test = _to_split(raw.x, raw.y, _cap(ids["test"], raw.y, cap), cpu)
    if cfg.validate_on == "test":
        val = test
    elif ids["val"] is not None:
        val = _to_split(raw.x, raw.y, _cap(ids["val"], raw.y, cap), cpu)
    else:
        val = None

    mode = cfg.normalize or raw.default_normalize
    base_scale = 1.0 / 255.0 if raw.x.dtype == np.uint8 else 1.0
    fit_x = train.x if cfg.normalize_fit_on == "train" else _all_examples(raw)
    scale, mean, std = _norm_stats(mode, fit_x, base_scale)
    target_mean, target_std = _target_moments(raw, train)
    bundle = DataBundle(
        name=cfg.name,
        train=train,
        val=val,
        test=test,
        input_shape=tuple(int(s) for s in raw.x.shape[1:]),
        num_classes=1 if raw.is_regression else len(raw.class_names),
        class_names=list(raw.class_names),
        normalize_mode=mode,
        scale=scale,
        mean=mean,
        std=std,
        validate_on=cfg.validate_on,
        meta={
            "official_test": has_test,
            "split_seed": split_seed,
            "normalize_fit_on": cfg.normalize_fit_on,
        },
        task=raw.task,
        target_mean=target_mean,
        target_std=target_std,
    )
    # built and measured on the host, then moved to the device once
    return bundle if device.type == "cpu" else bundle.to(device)


def _target_moments(raw: RawData, train: Split) -> tuple[float, float]:
    """The regression target's mean and std (ddof 0) on the training split, when the
    dataset standardises it for training; (0, 1) otherwise."""
    if not (raw.is_regression and raw.standardize_target):
        return 0.0, 1.0
    y = train.y.to(torch.float64)
    std = float(y.std(unbiased=False))
    return float(y.mean()), std if std > 1e-12 else 1.0


class BatchLoader:
    """Batches of a split as ``(x, y)``, x normalized float32 and y the training target
    (``DataBundle.training_target``: labels, or a standardised regression target), on the
    split's device.

    Each epoch (each ``iter``) draws one permutation with ``generator`` on the data's
    device (when ``shuffle``) and yields index slices of it; the last partial batch is
    kept. ``batch_size=None`` gives one full batch. ``augment`` is applied to the stored
    batch before normalization. ``memory_format=torch.channels_last`` lays image batches
    out channels-last (for a model converted likewise: the stored uint8 batch is reordered,
    a quarter of the bytes of the float batch the model would otherwise reorder)."""

    def __init__(
        self,
        split: Split,
        bundle: DataBundle,
        batch_size: int | None = None,
        *,
        shuffle: bool = False,
        augment: AugmentConfig | None = None,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        n = len(split)
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split = split
        self.bundle = bundle
        self.batch_size = n if batch_size is None else min(batch_size, max(n, 1))
        self.shuffle = shuffle
        self.augment = augment if augment is not None and augment.enabled else None
        self.generator = generator
        self.channels_last = memory_format == torch.channels_last and split.x.dim() == 4
        if (shuffle or self.augment is not None) and generator is None:
            raise ValueError("BatchLoader needs a generator to shuffle or augment")
        if self.augment is not None and split.x.dim() != 4:
            raise ValueError(
                "augmentation needs image data; turn dataset.augment off for tabular data"
            )
        if generator is not None and generator.device.type != split.x.device.type:
            raise ValueError(
                f"generator is on {generator.device}, data on {split.x.device}; "
                "create the generator on the data's device"
            )

    def __len__(self) -> int:
        n = len(self.split)
        return 0 if n == 0 else -(-n // self.batch_size)

    def __iter__(self):
        x, y = self.split.x, self.split.y
        n = len(self.split)
        if n == 0:
            return
        full = not self.shuffle and self.batch_size >= n
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=x.device)
        for start in range(0, n, self.batch_size):
            if full:
                xb, yb = x, y
            elif order is None:
                xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb, yb = x[idx], y[idx]
            if self.augment is not None:
                xb = augment_batch(xb, self.augment, self.generator)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield self.bundle.normalize(xb), self.bundle.training_target(yb)

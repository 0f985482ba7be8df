"""Batched per-sample augmentation of image tensors (N×C×H×W), no per-sample loops.

Every random draw comes from the given ``torch.Generator`` on the batch's device, so the
same generator state gives the same result."""

from __future__ import annotations

import torch

from ablab.config import AugmentConfig


def _randint(high: int, n: int, g: torch.Generator | None, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=g, device=device)


def random_flip(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Flip each sample left-right with probability 0.5."""
    chosen = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
    return torch.where(chosen[:, None, None, None], x.flip(-1), x)


def shift_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample window of the zero-padded batch: output[n, :, i, j] =
    padded[n, :, dy[n] + i, dx[n] + j], where ``padded`` is ``x`` padded by ``pad`` on every
    side and ``dy``/``dx`` are in [0, 2·pad]. ``dy = dx = pad`` is the identity."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # N×H
    cols = dx[:, None] + torch.arange(w, device=x.device)  # N×W
    # gather rows, then columns (two cheap gathers instead of one 4-D fancy index)
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, idx_c)


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator | None) -> torch.Tensor:
    """Like torchvision ``RandomCrop(size, padding=pad)`` (zero fill), each sample its own
    offset."""
    if pad <= 0:
        return x
    n = x.shape[0]
    dy = _randint(2 * pad + 1, n, g, x.device)
    dx = _randint(2 * pad + 1, n, g, x.device)
    return shift_crop(x, dy, dx, pad)


def random_cutout(x: torch.Tensor, size: int, g: torch.Generator | None) -> torch.Tensor:
    """Zero one ``size``×``size`` square per sample, placed uniformly fully inside the image
    (the whole image when ``size`` is at least its side)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    sh, sw = min(size, h), min(size, w)
    y0 = _randint(h - sh + 1, n, g, x.device)
    x0 = _randint(w - sw + 1, n, g, x.device)
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_r = (r >= y0[:, None]) & (r < y0[:, None] + sh)  # N×H
    in_c = (c >= x0[:, None]) & (c < x0[:, None] + sw)  # N×W
    mask = in_r[:, :, None] & in_c[:, None, :]  # N×H×W
    return x.masked_fill(mask[:, None], 0)


def augment_batch(
    x: torch.Tensor, aug: AugmentConfig | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Apply ``aug`` to a stored-dtype image batch, before normalization: flip (p=0.5),
    random crop after zero padding by ``crop_padding``, random translate by up to
    ``translate`` px (zero fill), then cutout. Returns a new tensor of x's dtype/shape."""
    if aug is None or not aug.enabled:
        return x
    if x.dim() != 4:
        raise ValueError(
            f"augmentation needs image batches (N, C, H, W); got shape {tuple(x.shape)}: "
            "turn dataset.augment off for tabular data"
        )
    if aug.flip:
        x = random_flip(x, generator)
    if aug.crop_padding > 0:
        x = random_crop(x, aug.crop_padding, generator)
    if aug.translate > 0:
        # a shift by up to t pixels with zero fill is a crop after padding by t
        x = random_crop(x, aug.translate, generator)
    if aug.cutout > 0:
        x = random_cutout(x, aug.cutout, generator)
    return x

"""Batches from a split held as one uint8 tensor, shuffled and augmented a whole batch at a time.

No torch DataLoader and no per-sample Python: an epoch is a seeded permutation, each batch is an
index into the resident tensor, and all augmentations are tensor ops on the batch. The same code
runs on CPU or CUDA tensors. All randomness comes from one generator seeded per epoch, so an
epoch's batches depend only on (seed, epoch) and a resumed run replays them exactly.

In data-parallel training every process draws the same permutation and the same augmentation
parameters for the whole global batch, then keeps a contiguous share of its rows: the images each
sample sees, and how each is augmented, do not depend on the number of processes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer.emotions import IMAGE_SIZE
from fer.models.inputs import normalize


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _affine_thetas(n: int, augment: dict[str, Any], g: torch.Generator, device: torch.device) -> torch.Tensor:
    """One 2x3 sampling matrix per image: crop (as scale + shift), rotation and mirror in one warp."""
    scale = torch.ones(n, device=device)
    shift = torch.zeros(n, 2, device=device)
    if augment["crop"] == "pad":
        # An integer-pixel shift sampled at pixel centres equals a crop from a padded image.
        pad = augment["crop_padding"]
        pixels = torch.randint(-pad, pad + 1, (n, 2), generator=g, device=device).float()
        shift = pixels * (2.0 / IMAGE_SIZE)
    elif augment["crop"] == "resized":
        scale = _uniform(n, augment["resized_scale_min"], 1.0, g, device).sqrt()
        shift = (torch.rand(n, 2, generator=g, device=device) * 2 - 1) * (1 - scale).unsqueeze(1)
    if augment["translate"] > 0:
        shift = shift + (torch.rand(n, 2, generator=g, device=device) * 2 - 1) * 2 * augment["translate"]
    angle = _uniform(n, -1.0, 1.0, g, device) * math.radians(augment["rotate_degrees"])
    mirror = torch.ones(n, device=device)
    if augment["flip"]:
        mirror = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos() * scale, angle.sin() * scale
    return torch.stack([
        torch.stack([cos * mirror, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * mirror, cos, shift[:, 1]], dim=1),
    ], dim=1)


@functools.cache
def _base_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, H*W, 3): every output pixel centre as (x, y, 1) in grid_sample's [-1, 1] coordinates."""
    identity = torch.eye(2, 3, device=device).unsqueeze(0)
    xy = F.affine_grid(identity, [1, 1, height, width], align_corners=False).reshape(1, height * width, 2)
    return torch.cat([xy, torch.ones_like(xy[..., :1])], dim=2)


def _sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, align_corners=False), bit for bit, without rebuilding the base grid
    on every call, which took two thirds of affine_grid's time on a CPU batch of 128."""
    grid = torch.matmul(_base_grid(height, width, theta.device), theta.transpose(1, 2))
    return grid.view(theta.shape[0], height, width, 2)


def _erase(x: torch.Tensor, probability: float, g: torch.Generator, rows: slice, n: int) -> torch.Tensor:
    """Random erasing, in place: zero (the dataset mean after normalisation) one rectangle in chosen images.

    `x` holds rows `rows` of a batch of `n`: the rectangles are drawn for all `n`, as in `augment_batch`."""
    device = x.device
    area = _uniform(n, 0.02, 0.25, g, device) * IMAGE_SIZE * IMAGE_SIZE
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g, device))
    height = (area * aspect).sqrt().clamp(1, IMAGE_SIZE)
    width = (area / aspect).sqrt().clamp(1, IMAGE_SIZE)
    top = torch.rand(n, generator=g, device=device) * (IMAGE_SIZE - height)
    left = torch.rand(n, generator=g, device=device) * (IMAGE_SIZE - width)
    chosen = torch.rand(n, generator=g, device=device) < probability
    coords = torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32)
    inside = (coords >= top[:, None]) & (coords < (top + height)[:, None]) & chosen[:, None]
    cols = (coords >= left[:, None]) & (coords < (left + width)[:, None])
    return x.masked_fill_((inside[:, :, None] & cols[:, None, :])[rows].unsqueeze(1), 0.0)


def augment_batch(x: torch.Tensor, augment: dict[str, Any], g: torch.Generator,
                  rows: slice = slice(None), total: int | None = None) -> torch.Tensor:
    """Apply the configured augmentations to a normalised (B,1,48,48) batch, which may be overwritten.

    `x` may be rows `rows` of a global batch of `total` images (one process's share): the parameters
    are drawn for all `total` and sliced, so an image's augmentation does not depend on the share."""
    total = x.shape[0] if total is None else total
    identity = (augment["crop"] == "none" and not augment["flip"]
                and augment["rotate_degrees"] == 0 and augment["translate"] == 0)
    if not identity:
        theta = _affine_thetas(total, augment, g, x.device)[rows]
        grid = _sampling_grid(theta, x.shape[2], x.shape[3])
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if augment["erase_prob"] > 0:
        x = _erase(x, augment["erase_prob"], g, rows, total)
    return x


def mix_batch(x: torch.Tensor, y: torch.Tensor, mix: str, alpha: float, classes: int, g: torch.Generator,
              rows: slice = slice(None), total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (a weighted average of two images) or CutMix (a rectangle of one pasted into the other)
    of each image with a partner from the same batch; the targets become the same mixture of the two
    labels (one-hot, or FER+ vote distributions). One weight per batch, drawn from Beta(alpha, alpha).

    The draws are made for the global batch of `total`, so every process consumes the same random
    numbers; partners are taken within this process's share `rows`."""
    total = x.shape[0] if total is None else total
    # Beta draws need numpy; its seed comes from `g`, so the epoch still replays from its seed.
    beta_seed = int(torch.randint(2**31, (1,), generator=g, device=x.device))
    weight = float(np.random.default_rng(beta_seed).beta(alpha, alpha))
    partner = torch.rand(total, generator=g, device=x.device)[rows].argsort()
    targets = y.float() if y.ndim == 2 else F.one_hot(y, classes).float()
    if mix == "mixup":
        x = weight * x + (1 - weight) * x[partner]
    else:
        side = IMAGE_SIZE * math.sqrt(1 - weight)
        centre = torch.randint(IMAGE_SIZE, (2,), generator=g, device=x.device).tolist()
        top, bottom = (max(0, min(IMAGE_SIZE, round(centre[0] + sign * side / 2))) for sign in (-1, 1))
        left, right = (max(0, min(IMAGE_SIZE, round(centre[1] + sign * side / 2))) for sign in (-1, 1))
        x[:, :, top:bottom, left:right] = x[partner, :, top:bottom, left:right]
        weight = 1 - (bottom - top) * (right - left) / IMAGE_SIZE**2  # what was pasted, after clipping
    return x, weight * targets + (1 - weight) * targets[partner]


def share(count: int, rank: int, processes: int) -> slice:
    """Rank `rank`'s contiguous rows of a batch of `count`, split as torch.tensor_split does: the first
    `count % processes` ranks take one more, so rank 0 is never empty and the sizes differ by at most one."""
    base, extra = divmod(count, processes)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class BatchLoader:
    """Iterate one split in batches; the images stay resident on the device as uint8.

    `labels` are class indices (N,) or label distributions (N, classes), yielded batch by batch alike.
    With `processes` > 1, `batch_size` is the global batch and each batch holds this `rank`'s share of it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device, batch_size: int,
                 mean: float, std: float, channels_last: bool = True,
                 augment: dict[str, Any] | None = None, shuffle: bool = False,
                 rank: int = 0, processes: int = 1, mix: str = "none", mix_alpha: float = 1.0,
                 classes: int = 0) -> None:
        self.images = torch.from_numpy(images).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.device = device
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.channels_last = channels_last
        self.augment = augment
        self.shuffle = shuffle
        self.rank, self.processes = rank, processes
        self.mix, self.mix_alpha, self.classes = mix, mix_alpha, classes

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def global_size(self, step: int) -> int:
        """The number of images in global batch `step` (from 0), over all processes."""
        return min(self.batch_size, len(self.images) - step * self.batch_size)

    def batches(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        count = len(self.images)
        order = (torch.randperm(count, generator=generator, device=self.device) if self.shuffle
                 else torch.arange(count, device=self.device))
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            rows = share(len(index), self.rank, self.processes)
            x = normalize(self.images[index[rows]], self.mean, self.std, channels_last=False)
            if self.augment is not None:
                x = augment_batch(x, self.augment, generator, rows, len(index))
            y = self.labels[index[rows]]
            if self.mix != "none":
                x, y = mix_batch(x, y, self.mix, self.mix_alpha, self.classes, generator, rows, len(index))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

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

from ferkit.emotions import IMAGE_SIZE
from ferkit.models.inputs import normalize


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
    if augment.get("scale", 0):
        # The face larger or smaller in its frame, as detectors' crops vary: a factor in [1/(1+s), 1+s].
        spread = math.log1p(augment["scale"])
        scale = scale * _uniform(n, -spread, spread, g, device).exp()
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
                and augment["rotate_degrees"] == 0 and augment["translate"] == 0 and not augment.get("scale", 0))
    if not identity:
        theta = _affine_thetas(total, augment, g, x.device)[rows]
        grid = _sampling_grid(theta, x.shape[2], x.shape[3])
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if augment["erase_prob"] > 0:
        x = _erase(x, augment["erase_prob"], g, rows, total)
    return x


# Real photos differ from FER-2013's crops in light, focus, resolution and compression. The photo
# augmentations imitate those, on whole batches in pixel space ([0, 1]); each draws its random
# numbers only when it is on, so a recipe without them replays exactly as before they existed.
PHOTO_KEYS = ("brightness", "contrast", "gamma", "blur_prob", "low_res_prob", "jpeg_prob")
BLUR_SIGMA = (0.5, 1.5)  # Gaussian blur, in pixels of the 48x48 face
LOW_RES_SIDES = (16, 20, 24, 32)  # a face seen this small, enlarged back to 48
JPEG_QUALITY = (10, 60)
# The JPEG standard's luminance table (quality 50), which libjpeg scales for other qualities.
_JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)


def _dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II basis, rows are frequencies: blocks -> D @ block @ D.T."""
    k = torch.arange(size, dtype=torch.float32)
    basis = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size)) * math.sqrt(2 / size)
    basis[0] /= math.sqrt(2)
    return basis


def _chosen(n: int, probability: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < probability


def _blur(p: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image blurred by a Gaussian of its own sigma: one grouped, separable convolution."""
    n, _, height, width = p.shape
    offsets = torch.arange(-3, 4, device=p.device, dtype=p.dtype)
    kernel = torch.exp(-offsets[None, :] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(p.dtype)
    flat = p.reshape(1, n, height, width)
    flat = F.conv2d(F.pad(flat, (3, 3, 0, 0), mode="reflect"), kernel.view(n, 1, 1, 7), groups=n)
    flat = F.conv2d(F.pad(flat, (0, 0, 3, 3), mode="reflect"), kernel.view(n, 1, 7, 1), groups=n)
    return flat.reshape(n, 1, height, width)


def _jpeg(p: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step on each image at its own quality: 8x8 block DCT, quantised with the
    standard luminance table scaled as libjpeg scales it, and back."""
    n, _, height, width = p.shape
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality) / 100
    table = (_JPEG_LUMA.to(p.device)[None] * scale[:, None, None]).round().clamp(min=1)[:, None, None]
    dct = _dct_matrix().to(p.device)
    blocks = (p.reshape(n, height // 8, 8, width // 8, 8).transpose(2, 3) * 255 - 128)
    coefficients = dct @ blocks @ dct.T
    blocks = dct.T @ ((coefficients / table).round() * table) @ dct
    return ((blocks + 128) / 255).transpose(2, 3).reshape(n, 1, height, width)


def degrade_batch(x: torch.Tensor, augment: dict[str, Any], g: torch.Generator, mean: float, std: float,
                  rows: slice = slice(None), total: int | None = None) -> torch.Tensor:
    """The photo augmentations of `augment` (light, blur, low resolution, JPEG) on a normalised batch.

    As in `augment_batch`, `x` may be rows `rows` of a global batch of `total`; every draw is made
    for all `total` images and sliced."""
    if not any(augment.get(key, 0) for key in PHOTO_KEYS):
        return x
    total = x.shape[0] if total is None else total
    device = x.device
    p = (x * std + mean).clamp_(0.0, 1.0)
    if augment.get("brightness", 0):
        p = p + _uniform(total, -augment["brightness"], augment["brightness"], g, device)[rows].view(-1, 1, 1, 1)
    if augment.get("contrast", 0):
        spread = math.log1p(augment["contrast"])
        factor = _uniform(total, -spread, spread, g, device).exp()[rows].view(-1, 1, 1, 1)
        centre = p.mean(dim=(1, 2, 3), keepdim=True)
        p = (p - centre) * factor + centre
    if augment.get("gamma", 0):
        exponent = _uniform(total, -augment["gamma"], augment["gamma"], g, device).exp()[rows].view(-1, 1, 1, 1)
        p = p.clamp(0.0, 1.0) ** exponent
    if augment.get("blur_prob", 0):
        chosen = _chosen(total, augment["blur_prob"], g, device)[rows]
        sigma = _uniform(total, *BLUR_SIGMA, g, device)[rows]
        p = torch.where(chosen.view(-1, 1, 1, 1), _blur(p, sigma), p)
    if augment.get("low_res_prob", 0):
        chosen = _chosen(total, augment["low_res_prob"], g, device)[rows]
        side = torch.randint(len(LOW_RES_SIDES), (total,), generator=g, device=device)[rows]
        for index, size in enumerate(LOW_RES_SIDES):
            picked = chosen & (side == index)
            if picked.any():
                small = F.interpolate(p[picked], size=(size, size), mode="area")
                p[picked] = F.interpolate(small, size=p.shape[2:], mode="bilinear", align_corners=False)
    if augment.get("jpeg_prob", 0):
        chosen = _chosen(total, augment["jpeg_prob"], g, device)[rows]
        quality = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (total,), generator=g, device=device)[rows]
        p = torch.where(chosen.view(-1, 1, 1, 1), _jpeg(p.clamp(0.0, 1.0), quality.float()), p)
    return (p.clamp_(0.0, 1.0) - mean) / std


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
                x = degrade_batch(x, self.augment, generator, self.mean, self.std, rows, len(index))
            y = self.labels[index[rows]]
            if self.mix != "none":
                x, y = mix_batch(x, y, self.mix, self.mix_alpha, self.classes, generator, rows, len(index))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

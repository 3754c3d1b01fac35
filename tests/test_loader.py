"""The resident-tensor loader: epochs, seeding and what each batched augmentation does to a face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferkit.models.inputs import normalize
from ferkit.training.loader import BatchLoader, _sampling_grid, augment_batch, mix_batch

NONE = {"crop": "none", "crop_padding": 4, "resized_scale_min": 0.8, "flip": False, "rotate_degrees": 0,
        "translate": 0.0, "erase_prob": 0.0}
CPU = torch.device("cpu")


def random_batch(count: int, seed: int = 0) -> torch.Tensor:
    """Noise images: every shift or mirror of one is distinguishable from every other."""
    images = np.random.default_rng(seed).integers(0, 256, (count, 48, 48)).astype(np.uint8)
    return normalize(torch.from_numpy(images), 0.5, 0.25, channels_last=False)


def test_sampling_grid_is_affine_grid_bit_for_bit() -> None:
    theta = torch.randn(64, 2, 3, generator=torch.Generator().manual_seed(1))
    for height, width in ((48, 48), (17, 30)):
        expected = F.affine_grid(theta, [64, 1, height, width], align_corners=False)
        assert torch.equal(_sampling_grid(theta, height, width), expected)


def test_no_augmentation_leaves_the_batch_alone() -> None:
    x = random_batch(8)
    assert torch.equal(augment_batch(x.clone(), NONE, torch.Generator()), x)


def test_pad_crop_is_an_integer_shift_within_the_padding() -> None:
    x = random_batch(32)
    out = augment_batch(x.clone(), {**NONE, "crop": "pad"}, torch.Generator().manual_seed(0))
    shifts = set()
    for source, shifted in zip(x[:, 0], out[:, 0]):
        # Compare away from the border, where reflection padding stands in for the padded frame.
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.allclose(shifted[8:40, 8:40], source[8 + dy:40 + dy, 8 + dx:40 + dx], atol=1e-4)]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 10  # the shifts really are random


def test_flip_mirrors_about_half_the_images() -> None:
    x = random_batch(400)
    out = augment_batch(x.clone(), {**NONE, "flip": True}, torch.Generator().manual_seed(0))
    mirrored = [torch.allclose(o, s.flip(-1), atol=1e-4) for o, s in zip(out, x)]
    kept = [torch.allclose(o, s, atol=1e-4) for o, s in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))
    assert 150 < sum(mirrored) < 250


def test_erasing_zeroes_one_rectangle_in_the_chosen_share() -> None:
    x = random_batch(400) + 10.0  # nothing is zero before erasing
    out = augment_batch(x.clone(), {**NONE, "erase_prob": 0.25}, torch.Generator().manual_seed(0))
    erased = 0
    for before, after in zip(x[:, 0], out[:, 0]):
        zero = after == 0
        if not zero.any():
            assert torch.equal(before, after)
            continue
        erased += 1
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        box = zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all() and zero.sum() == box.numel()  # one solid rectangle
        assert 0.02 * 2304 - 48 <= box.numel() <= 0.25 * 2304 + 96
        assert torch.equal(after[~zero], before[~zero])
    assert 60 < erased < 140


def make_loader(count: int, shuffle: bool, augment: dict | None = None) -> BatchLoader:
    labels = np.arange(count) % 7
    images = np.zeros((count, 48, 48), np.uint8)
    images[:, 0, :2] = np.stack([np.arange(count) // 256, np.arange(count) % 256], axis=1)
    return BatchLoader(images, labels, CPU, 32, 0.0, 1.0, channels_last=True, augment=augment, shuffle=shuffle)


def image_ids(loader: BatchLoader, seed: int) -> list[int]:
    ids = []
    for x, _ in loader.batches(seed):
        assert x.shape[1:] == (1, 48, 48) and x.is_contiguous(memory_format=torch.channels_last)
        codes = (x[:, 0, 0, :2] * 255).round().long()
        ids += (codes[:, 0] * 256 + codes[:, 1]).tolist()
    return ids


def test_an_epoch_visits_every_image_once_in_a_seeded_order() -> None:
    loader = make_loader(100, shuffle=True)
    assert len(loader) == 4
    order = image_ids(loader, seed=5)
    assert sorted(order) == list(range(100)) and order != list(range(100))
    assert image_ids(loader, seed=5) == order
    assert image_ids(loader, seed=6) != order
    assert image_ids(make_loader(100, shuffle=False), seed=5) == list(range(100))


@pytest.mark.parametrize("crop", ["pad", "resized"])
def test_augmented_epochs_replay_exactly_from_their_seed(crop: str) -> None:
    augment = {**NONE, "crop": crop, "flip": True, "rotate_degrees": 10, "translate": 0.05, "erase_prob": 0.5}
    images = np.random.default_rng(0).integers(0, 256, (70, 48, 48)).astype(np.uint8)
    loader = BatchLoader(images, np.zeros(70, np.int64), CPU, 32, 0.5, 0.25, augment=augment, shuffle=True)
    first, again, other = (torch.cat([x for x, _ in loader.batches(seed)]) for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixing_blends_images_and_labels_by_the_same_weight(mix: str) -> None:
    # Image i is the constant i and has label i, so an output's mean pixel is its label mixture's mean label.
    x = torch.arange(7, dtype=torch.float32).view(7, 1, 1, 1).expand(7, 1, 48, 48).clone()
    y = torch.arange(7)
    mixed, targets = mix_batch(x.clone(), y, mix, 1.0, 7, torch.Generator().manual_seed(3))
    assert targets.shape == (7, 7) and torch.allclose(targets.sum(dim=1), torch.ones(7))
    assert (targets.max(dim=1).values < 0.99).any()  # some images were mixed
    assert torch.allclose(mixed.mean(dim=(1, 2, 3)), targets @ torch.arange(7.0), atol=1e-4)
    replay, again = mix_batch(x.clone(), y, mix, 1.0, 7, torch.Generator().manual_seed(3))
    assert torch.equal(replay, mixed) and torch.equal(again, targets)

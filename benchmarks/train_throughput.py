"""Training throughput: our loader + step against the bare model step and a seed-style DataLoader.

    python3 benchmarks/train_throughput.py [--models basic vgg] [--devices cpu cuda]
        [--images K] [--batch-size B] [--workers N] [--repeats R] [--data DIR] [--json FILE]

For each model and device (cpu always, cuda when torch sees one), in images per second:
  a  ours: `ferkit.training.train.train_one_epoch` over the first K images of a `BatchLoader` epoch,
     with params.yaml's augmentation, the model in channels_last and `_make_optimizer`'s SGD. The
     loader holds the whole training split, as in training, so batches are gathered from 66 MB
     rather than from a cache-sized subset.
  b  bare: forward + loss + backward + step repeated on one pre-made batch; the compute limit of a.
  c  seed style: a per-sample numpy/torch Dataset (4-px pad crop, flip, normalise) under
     `torch.utils.data.DataLoader(shuffle=True, num_workers=N, persistent_workers=True)`, fp32, NCHW.
a/b shows what the loader and augmentation cost (same precision on both sides); a/c what the
whole recipe gains. CPU runs a and b in fp32 and bf16 autocast, and a/c takes our best CPU setting
(bf16 + channels_last); CUDA runs a and b in bf16, with the data resident on the GPU.
Every pass is timed after a warm-up, and the variants take R short turns each (--repeats R), the
order reversed every other round (common.interleaved). The ratios are paired: in every round a
runs right next to its b and near c, and a/b and a/c are the medians of the per-round ratios, with
their range beside them; the img/s columns are per-variant medians. On the shared 2-core machines
identical passes vary by up to 2x within minutes (one run drifted from 390 to 250 img/s), so a
ratio of two figures taken apart in time measures the machine; passes next to each other share
most of that drift.
--json keeps every pass.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common import REPO, interleaved, machine
from ferkit.data.arrays import load_classes, load_split
from ferkit.errors import FerError
from ferkit.models.inputs import normalize, train_statistics
from ferkit.models.networks import build_model
from ferkit.params import model_params
from ferkit.runtime import set_cpu_threads
from ferkit.training.loader import BatchLoader
from ferkit.training.train import _make_optimizer, train_one_epoch

PARAMS = REPO / "params.yaml"
MODELS = ("basic", "vgg")
# Four batches of basic and one of vgg per pass, so a pass lasts one to three seconds and the default
# CPU run (both models, 15 rounds) about five minutes on two cores; basic trains at about 350 img/s
# in fp32 and 1,100 in bf16 there, vgg at about 55 and 130.
CPU_IMAGES = {"basic": 512, "vgg": 128}
CPU_WORKERS = 2
WARMUP_BATCHES = {"cpu": 2, "cuda": 10}
# Many short passes in turns rather than a few long ones: paired neighbours see the same machine.
DEFAULT_REPEATS = {"cpu": 15, "cuda": 5}
TARGET_A_OVER_B = {"cpu": 0.95, "cuda": 0.90}
TARGET_A_OVER_C_CPU = 1.5


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios, and their smallest and largest."""
    median: float
    low: float
    high: float

    @classmethod
    def paired(cls, numerators: list[float], denominators: list[float]) -> Ratio:
        ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
        return cls(statistics.median(ratios), min(ratios), max(ratios))

    def __str__(self) -> str:
        return f"{self.median:5.2f} ({self.low:.2f}-{self.high:.2f})"


@dataclass
class Row:
    """One model/device/precision line of the table: median img/s per variant, paired ratios."""
    model: str
    device: str
    precision: str
    images: int
    batch_size: int
    ours: float
    bare: float
    a_over_b: Ratio
    seed_style: float | None = None
    a_over_c: Ratio | None = None


# --- what ran where ---------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    """common.machine() plus what decides training speed here: torch's CPU threads and the GPU."""
    return {**machine(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# --- timing -----------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], int]) -> float:
    """Images per second of `work`, which returns how many images it trained on."""
    synchronize(device)
    started = time.perf_counter()
    images = work()
    synchronize(device)  # CUDA work is queued; the clock must wait for it
    return images / (time.perf_counter() - started)


# --- the three set-ups ------------------------------------------------------------------------
# Each `prepare_*` builds its model and loader, runs the warm-up and returns a function that times
# one pass, so the passes of all variants can take turns and share whatever load the machine has.

TimedPass = Callable[[], float]


@dataclass
class Setup:
    """What every measurement of one model on one device shares."""
    model_name: str
    params: dict[str, Any]
    device: torch.device
    images: np.ndarray  # the first K training images
    labels: np.ndarray
    split_images: np.ndarray  # the whole training split, for our loader
    split_labels: np.ndarray
    mean: float
    std: float
    batch_size: int
    classes: int  # the number of classes in the data's label set

    def fresh_model(self, channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        # Same seed every time, so each variant starts from identical weights.
        torch.manual_seed(0)
        model = build_model(self.model_name, self.classes, dropout=self.params["dropout"]).to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        return model, _make_optimizer(model, self.params, self.device)

    def criterion(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.params["label_smoothing"])

    def our_loader(self, count: int) -> ShortEpoch:
        loader = BatchLoader(self.split_images, self.split_labels, self.device, self.batch_size,
                             self.mean, self.std, channels_last=True, augment=self.params["augment"], shuffle=True)
        return ShortEpoch(loader, count)


class ShortEpoch:
    """The first batches, about `count` images, of a whole-split BatchLoader's shuffled epoch, for
    train_one_epoch: each batch is gathered as in training, yet a pass stays short."""

    def __init__(self, loader: BatchLoader, count: int) -> None:
        self.loader, self.device = loader, loader.device
        self.batch_count = min(math.ceil(count / loader.batch_size), len(loader))
        self.image_count = min(self.batch_count * loader.batch_size, len(loader.images))

    def batches(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return itertools.islice(self.loader.batches(seed), self.batch_count)

    def global_size(self, step: int) -> int:
        return self.loader.global_size(step)


def prepare_ours(setup: Setup, precision: str) -> TimedPass:
    """(a): the real training epoch, loader and augmentation included."""
    model, optimizer = setup.fresh_model(channels_last=True)
    criterion = setup.criterion()

    def epoch(loader: ShortEpoch, seed: int) -> int:
        train_one_epoch(model, loader, optimizer, criterion, seed, precision, tqdm(disable=True))
        return loader.image_count

    loader = setup.our_loader(len(setup.images))
    epoch(loader, seed=0)  # the warm-up meets every batch shape that the timed pass will
    return lambda: timed(setup.device, lambda: epoch(loader, seed=1))


def prepare_bare(setup: Setup, precision: str) -> TimedPass:
    """(b): the same step with no loader at all, on one batch made once."""
    model, optimizer = setup.fresh_model(channels_last=True)
    criterion = setup.criterion()
    count = min(setup.batch_size, len(setup.images))
    x = normalize(torch.from_numpy(setup.images[:count]).to(setup.device), setup.mean, setup.std,
                  channels_last=True)
    y = torch.from_numpy(setup.labels[:count]).to(setup.device)

    def steps(n: int) -> int:
        for _ in range(n):
            with torch.autocast(setup.device.type, torch.bfloat16, enabled=precision == "bf16"):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return n * count

    steps(WARMUP_BATCHES[setup.device.type])
    timed_steps = max(1, len(setup.images) // count)
    return lambda: timed(setup.device, lambda: steps(timed_steps))


def prepare_loader_alone(setup: Setup) -> TimedPass:
    """Our loader with augmentation and no model: the cost that a/b falls short by."""
    def drain(loader: ShortEpoch) -> int:
        for _ in loader.batches(seed=1):
            pass
        return loader.image_count

    loader = setup.our_loader(len(setup.images))
    drain(loader)
    return lambda: timed(setup.device, lambda: drain(loader))


class SeedStyleDataset(Dataset):
    """The usual per-sample recipe, without torchvision: pad-and-crop, flip, to float, normalise."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float, padding: int) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std, self.padding = mean, std, padding

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        side = self.images.shape[1]
        # Black padding before normalising, as torchvision's RandomCrop(padding=4) on a PIL image.
        padded = np.pad(self.images[index], self.padding)
        # torch's generator, as torchvision uses: DataLoader seeds it differently in every worker.
        top, left = torch.randint(0, 2 * self.padding + 1, (2,)).tolist()
        crop = padded[top:top + side, left:left + side]
        if torch.rand(()) < 0.5:
            crop = crop[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32) / 255.0).unsqueeze(0)
        return (x - self.mean) / self.std, int(self.labels[index])


def prepare_seed_style(setup: Setup, workers: int) -> TimedPass:
    """(c): fp32, NCHW, per-sample transforms in DataLoader workers, batches copied to the device."""
    model, optimizer = setup.fresh_model(channels_last=False)
    criterion = setup.criterion()
    padding = setup.params["augment"]["crop_padding"]

    dataset = SeedStyleDataset(setup.images, setup.labels, setup.mean, setup.std, padding)
    # Persistent workers, started during the warm-up: a per-epoch worker start-up would weigh far
    # more in these short passes than in a real 28,709-image epoch, and flatter a/c.
    loader = DataLoader(dataset, batch_size=setup.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)

    def epoch() -> int:
        # The loss is summed on the device as in ours, so c differs from a only in loader and settings.
        loss_sum = torch.zeros((), device=setup.device)
        for x, y in loader:
            x, y = x.to(setup.device), y.to(setup.device)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
        loss_sum.item()
        return len(dataset)

    epoch()
    return lambda: timed(setup.device, epoch)


# --- running it -------------------------------------------------------------------------------

def precisions_for(device: torch.device) -> list[str]:
    return ["fp32", "bf16"] if device.type == "cpu" else ["bf16"]


def default_images(model: str, device: torch.device, available: int) -> int:
    # A GPU goes through the whole split in seconds; two CPU cores need a subset.
    return CPU_IMAGES[model] if device.type == "cpu" else available


def default_workers(device: torch.device) -> int:
    return CPU_WORKERS if device.type == "cpu" else min(8, len(os.sched_getaffinity(0)))


def benchmark(setup: Setup, workers: int, repeats: int) -> tuple[list[Row], dict[str, list[float]]]:
    """All rows of one model on one device, plus every pass's img/s by variant."""
    tag = f"{setup.model_name}/{setup.device.type}"
    log(f"{tag}: building and warming up every variant")
    # In this order each ours/bare pair runs back to back, and seed next to the last pair.
    passes: dict[str, TimedPass] = {"loader": prepare_loader_alone(setup)}
    for precision in precisions_for(setup.device):
        passes[f"ours {precision}"] = prepare_ours(setup, precision)
        passes[f"bare {precision}"] = prepare_bare(setup, precision)
    passes["seed"] = prepare_seed_style(setup, workers)
    samples = interleaved(passes, repeats, lambda round_number, name, speed: log(
        f"{tag}: round {round_number}/{repeats}, {name}: {speed:.0f} img/s"))
    rows = []
    for precision in precisions_for(setup.device):
        ours, bare = samples[f"ours {precision}"], samples[f"bare {precision}"]
        with_seed = precision == "bf16"
        rows.append(Row(setup.model_name, setup.device.type, precision, len(setup.images), setup.batch_size,
                        statistics.median(ours), statistics.median(bare), Ratio.paired(ours, bare),
                        statistics.median(samples["seed"]) if with_seed else None,
                        Ratio.paired(ours, samples["seed"]) if with_seed else None))
    return rows, samples


def verdict(ratio: Ratio, target: float) -> str:
    return f">= {target:.2f} {'PASS' if ratio.median >= target else 'FAIL'}"


def table(rows: list[Row], loader_alone: list[float], workers: int, repeats: int) -> list[str]:
    header = (f"{'model':<6} {'device':<6} {'prec':<5} {'K':>6} {'a ours':>7} {'b bare':>7} {'c seed':>7}"
              f"  {'a/b (range)':<17} {'target':<12}  {'a/c (range)':<17} {'target':<12}")
    lines = [header, "-" * len(header)]
    for row in rows:
        seed = f"{row.seed_style:7.0f}" if row.seed_style else f"{'':>7}"
        a_over_c, c_target = "", ""
        if row.a_over_c:
            a_over_c = str(row.a_over_c)
            c_target = verdict(row.a_over_c, TARGET_A_OVER_C_CPU) if row.device == "cpu" else "(no target)"
        lines.append(f"{row.model:<6} {row.device:<6} {row.precision:<5} {row.images:>6} {row.ours:7.0f} "
                     f"{row.bare:7.0f} {seed}  {str(row.a_over_b):<17} "
                     f"{verdict(row.a_over_b, TARGET_A_OVER_B[row.device]):<12}  {a_over_c:<17} {c_target:<12}")
    alone = statistics.median(loader_alone)
    lines.append(f"  loader alone (BatchLoader + augment_batch, no model): {alone:.0f} img/s; "
                 f"c uses num_workers={workers}; {repeats} round(s) after a warm-up")
    return lines


def legend(about: dict[str, Any], data: Path, train_size: int) -> list[str]:
    gpu = about["gpu"] or "none"
    return [
        f"machine: {about['cpu']}; {about['cores']} logical cores, {about['usable_cores']} usable,"
        f" torch threads {about['torch_threads']}; GPU: {gpu}",
        f"torch {about['torch']}, python {about['python']}, git {about['commit']}",
        f"data: {data} ({train_size} training images; each run uses the first K)",
        "a = ours: ferkit.training.train.train_one_epoch over the first K images of an epoch of a whole-split"
        " BatchLoader, params.yaml's augmentation, channels_last",
        "b = bare: the same model/optimizer/precision/channels_last step repeated on one pre-made batch",
        "c = seed style: per-sample Dataset (pad-4 crop, flip, normalise) + DataLoader(shuffle=True,"
        " num_workers=N, persistent), fp32, NCHW; lighter augmentation than ours (no rotation, no erasing)",
        "img/s: median pass of each variant; a/b, a/c: median (and range) of the per-round ratios",
        "a/b compares a and b at the row's precision; a/c compares the bf16 row's a (bf16 + channels_last)"
        " with c (fp32, NCHW)",
    ]


def log(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"),
                        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--images", type=int, default=None, metavar="K",
                        help=f"training images per pass (default: CPU {CPU_IMAGES}, CUDA the whole split)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: params.yaml's batch_size")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"DataLoader workers for c (default: {CPU_WORKERS} on CPU, min(8, cores) on CUDA)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed passes (rounds) per variant; medians count (default: {DEFAULT_REPEATS})")
    parser.add_argument("--data", type=Path, default=Path("data/processed"),
                        help="folder with train_images.npy and train_labels.npy (default: data/processed)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: torch sees no CUDA GPU")
    for name in ("images", "batch_size", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def load_train(data: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        return load_split(data, "train")
    except FerError as error:
        sys.exit(f"train_throughput: {error}\n  (point --data at a folder holding train_images.npy and "
                 f"train_labels.npy, e.g. the output of `fer preprocess`)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_cpu_threads(0)
    images, labels = load_train(args.data)
    # The statistics of the whole split, as `ferkit.training.train.run` computes them.
    mean, std = train_statistics(images)
    about = machine_info()
    results: list[dict[str, Any]] = []
    lines = legend(about, args.data, len(images))
    print("\n".join(lines), flush=True)
    for device_name in args.devices:
        device = torch.device(device_name)
        workers = args.workers if args.workers is not None else default_workers(device)
        repeats = args.repeats or DEFAULT_REPEATS[device.type]
        for model in args.models:
            params = model_params(model, PARAMS)
            count = min(args.images or default_images(model, device, len(images)), len(images))
            setup = Setup(model, params, device, images[:count], labels[:count], images, labels, mean, std,
                          args.batch_size or params["batch_size"], len(load_classes(args.data)[1]))
            rows, samples = benchmark(setup, workers, repeats)
            block = table(rows, samples["loader"], workers, repeats)
            print("\n" + "\n".join(block), flush=True)
            lines += ["", *block]
            results += [{**asdict(row), "loader_alone": statistics.median(samples["loader"]), "workers": workers,
                         "repeats": repeats, "passes": samples} for row in rows]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": about, "results": results, "report": lines}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

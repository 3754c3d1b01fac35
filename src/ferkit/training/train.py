"""The training stage: SGD with momentum under ExponentialLR (or warm-up + cosine), one model at a time.

Every epoch appends a row to the curves CSV and atomically rewrites `last.pt`; `best.pt` is the
epoch with the highest validation (PublicTest) accuracy. The test split is never read here.
Each epoch's randomness (shuffle, augmentation, dropout) is seeded from (seed, epoch), so a run
killed and started again resumes from `last.pt` and ends exactly where an uninterrupted run would.

Under torchrun, or with `train.processes` > 1, the same code trains data-parallel (see
ferkit.training.distributed): `batch_size` stays the global batch, and rank 0 alone validates and writes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import ExponentialLR, LambdaLR, LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ferkit.atomic import atomic_path, write_json
from ferkit.data.arrays import load_classes, load_probabilities, load_split
from ferkit.errors import FerError
from ferkit.layout import DATA_DIR, RunPaths
from ferkit.models.checkpoint import Checkpoint, CheckpointHeader, load_checkpoint, member_of, save_checkpoint
from ferkit.models.inputs import train_statistics
from ferkit.models.networks import build_model
from ferkit.params import DEFAULT_PARAMS, model_params
from ferkit.pretrained import model_file
from ferkit.runtime import resolve_device, resolve_precision, set_cpu_threads
from ferkit.sources import code_files
from ferkit.training import distributed
from ferkit.training.distributed import ONE_PROCESS, World
from ferkit.training.loader import BatchLoader

CURVE_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def _fingerprint(params: dict[str, Any], arrays: list[np.ndarray]) -> str:
    """What a resumable last.pt must match: parameters, data and code. The epoch count is left out
    under the exponential schedule, whose rates do not depend on it, so a finished run can be extended;
    the process count always, as the global batch does not change with it: a run may resume on more or fewer."""
    digest = hashlib.sha256()
    left_out = {"processes"} | ({"epochs"} if params["schedule"] == "exponential" else set())
    digest.update(json.dumps({k: v for k, v in params.items() if k not in left_out}, sort_keys=True).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    for path in code_files(__name__):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _backward_loss(loss: torch.Tensor, logits: torch.Tensor, size: int, total: int, processes: int) -> torch.Tensor:
    """What this process back-propagates for its share of `size` images of a global batch of `total`.

    DDP averages the processes' gradients; weighting each share's mean loss by its size relative to
    an equal split makes that average the gradient of the global batch's mean loss, also when the
    shares differ (the last batch). An empty share still joins the all-reduce, with zero gradients."""
    if processes == 1:
        return loss
    if size == 0:
        return logits.sum() * 0.0
    return loss * (size * processes / total)


def train_one_epoch(model: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, seed: int, precision: str, progress: tqdm, *,
                    step_scheduler: LRScheduler | None = None,
                    ema: AveragedModel | None = None, world: World = ONE_PROCESS) -> tuple[float, float]:
    """One pass over the shuffled, augmented training split; returns (mean loss, accuracy).

    `step_scheduler` is stepped after every batch and `ema` averaged after every batch, when given.
    With several processes, `loader` yields this rank's shares and the results cover all ranks."""
    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    started = time.perf_counter()
    for step, (x, y) in enumerate(loader.batches(seed), start=1):
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        _backward_loss(loss, logits, len(y), loader.global_size(step - 1), world.size).backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        # Accumulate on the device: reading a value here would stall a GPU every step.
        if len(y):  # an empty share's mean loss is NaN
            loss_sum += loss.detach().float() * len(y)
        # With soft targets, accuracy is against each distribution's top class, the majority label.
        correct += (logits.detach().argmax(dim=1) == (y if y.ndim == 1 else y.argmax(dim=1))).sum()
        seen += len(y)
        progress.update(1)
        if device.type == "cpu" and step % 10 == 0 and not progress.disable:
            progress.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                 img_s=f"{seen / (time.perf_counter() - started):.0f}")
    if world.size > 1:
        loss_sum, correct, total = distributed.sum_over_ranks(loss_sum, correct, torch.tensor(seen, device=device))
        seen = int(total.item())
    mean_loss, accuracy = loss_sum.item() / seen, correct.item() / seen  # the epoch's one sync
    progress.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{accuracy:.3f}",
                         img_s=f"{seen / (time.perf_counter() - started):.0f}")
    return mean_loss, accuracy


@torch.no_grad()
def validate(model: nn.Module, loader: BatchLoader, criterion: nn.Module, precision: str) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    for x, y in loader.batches():
        with torch.autocast(loader.device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss_sum += criterion(logits.float(), y) * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
    count = len(loader.images)
    return loss_sum.item() / count, correct.item() / count


def _write_curves(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV from the checkpointed history, so it always agrees with last.pt."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def _initial_weights(params: dict[str, Any], name: str, classes: list[str]) -> Checkpoint | None:
    """The network to fine-tune (`train.init`), checked against the one being trained; None from scratch."""
    init = params["init"]
    if init == "none":
        return None
    try:
        path = model_file(init)
    except FerError as problem:
        raise FerError(f"train.init: {problem}") from None
    start = member_of(load_checkpoint(path), params["init_member"], str(path))
    header = start.header
    for key, wanted in (("model", name), ("width", float(params["width"])), ("classes", tuple(classes))):
        if getattr(header, key) != wanted:
            raise FerError(f"train.init: {path}: its {key} is {getattr(header, key)}; "
                           f"the model trained here has {wanted}")
    return start


def _resumable(paths: RunPaths, fingerprint: str, epochs: int) -> Checkpoint | None:
    if not paths.last.exists():
        return None
    if not paths.best.exists():
        tqdm.write(f"{paths.best}: missing beside {paths.last}; starting afresh")
        return None
    state = load_checkpoint(paths.last)
    if state.extra.get("fingerprint") != fingerprint or (state.header.epoch or 0) > epochs:
        tqdm.write(f"{paths.last}: parameters, data or code changed since it was written; starting afresh")
        return None
    tqdm.write(f"{paths.last}: resuming after epoch {state.header.epoch}")
    return state


def _make_optimizer(model: nn.Module, params: dict[str, Any], device: torch.device) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"],
                           nesterov=params["nesterov"] and params["momentum"] > 0,
                           weight_decay=params["weight_decay"], fused=device.type == "cuda")


def _make_scheduler(optimizer: torch.optim.Optimizer, params: dict[str, Any],
                    steps_per_epoch: int) -> tuple[LRScheduler, bool]:
    """The scheduler and whether it steps per batch (cosine) rather than per epoch (exponential)."""
    if params["schedule"] == "exponential":
        return ExponentialLR(optimizer, gamma=params["gamma"]), False
    warmup = round(params["warmup_epochs"] * steps_per_epoch)
    total = params["epochs"] * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return LambdaLR(optimizer, factor), True


def _make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    # Batch-norm statistics are averaged with the weights, so the average is a usable model as is.
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def run(name: str, params_path: Path = DEFAULT_PARAMS, data_dir: Path = DATA_DIR,
        paths: RunPaths | None = None) -> dict[str, Any]:
    """Train one model; returns the summary (an empty dict on ranks other than 0)."""
    params = model_params(name, params_path)
    if params["processes"] > 1 and not distributed.launched():
        # The stage command stays `fer train MODEL`: it starts its workers, which come back here.
        return distributed.launch(params["processes"], run, name, params_path, data_dir, paths)
    device = resolve_device(params["device"])
    world = ONE_PROCESS
    if distributed.launched():
        world, device = distributed.join(device)
    summary = _train(name, params, data_dir, paths or RunPaths.for_model(name), device, world)
    distributed.leave(world)
    return summary


def _train(name: str, params: dict[str, Any], data_dir: Path, paths: RunPaths, device: torch.device,
           world: World) -> dict[str, Any]:
    precision = resolve_precision(params["precision"], device)
    if device.type == "cpu":
        set_cpu_threads(distributed.cpu_threads(params["threads"], world))
    if params["batch_size"] < world.size:
        raise FerError(f"train.batch_size {params['batch_size']} is the global batch: it must be at least "
                       f"the number of processes ({world.size})")
    label_set, classes = load_classes(data_dir)
    train_images, train_labels = load_split(data_dir, "train")
    valid_images, valid_labels = load_split(data_dir, "valid")
    # Soft targets (FER+ vote distributions) train; validation always scores the majority label.
    train_targets = (load_probabilities(data_dir, train_labels) if params["targets"] == "probability"
                     else train_labels)
    start = _initial_weights(params, name, classes)
    # The normalisation statistics come from train alone and travel inside every checkpoint; a
    # fine-tuned network keeps the ones it was trained with.
    mean, std = train_statistics(train_images) if start is None else (start.header.mean, start.header.std)
    fingerprint = _fingerprint({**params, "classes": classes},
                               [train_images, train_targets, valid_images, valid_labels])

    train_loader = BatchLoader(train_images, train_targets, device, params["batch_size"], mean, std,
                               params["channels_last"], augment=params["augment"], shuffle=True,
                               rank=world.rank, processes=world.size, mix=params["mix"],
                               mix_alpha=params["mix_alpha"], classes=len(classes))
    valid_loader = BatchLoader(valid_images, valid_labels, device, params["eval_batch_size"], mean, std,
                               params["channels_last"])

    torch.manual_seed(params["seed"])
    model = build_model(name, len(classes), dropout=params["dropout"], width=params["width"])
    if start is not None:
        model.load_state_dict(start.state_dict)
    model = distributed.sync_batchnorm(model, world, params["sync_batchnorm"]).to(device)
    if params["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(model, params, device)
    scheduler, per_batch = _make_scheduler(optimizer, params, len(train_loader))
    ema = _make_ema(model, params["ema_decay"])
    criterion = nn.CrossEntropyLoss(label_smoothing=params["label_smoothing"])

    state = distributed.from_main(_resumable(paths, fingerprint, params["epochs"]) if world.main else None, world)
    history: list[dict[str, Any]] = []
    best = {"val_acc": -1.0, "epoch": 0}
    if state is not None:
        model.load_state_dict(state.state_dict)
        optimizer.load_state_dict(state.extra["optimizer"])
        scheduler.load_state_dict(state.extra["scheduler"])
        if ema is not None:
            ema.load_state_dict(state.extra["ema"])
        history, best = list(state.extra["history"]), dict(state.extra["best"])
    trained = distributed.wrap(model, world, device, params["sync_batchnorm"])
    step_model = torch.compile(trained) if params["compile"] and device.type == "cuda" else trained
    kept = model if ema is None else ema.module  # the weights that are validated and saved
    # Rank 0 validates alone, so outside DDP, whose forward would wait for the other ranks.
    evaluated = step_model if ema is None and not world.launched else kept

    header = CheckpointHeader(model=name, labels=label_set, classes=tuple(classes), dropout=float(params["dropout"]),
                              width=float(params["width"]), mean=mean, std=std)
    run_record = {"params": params, "fingerprint": fingerprint}
    for epoch in range(len(history) + 1, params["epochs"] + 1):
        started = time.perf_counter()
        # Dropout's randomness; a stream per rank, so that ranks do not repeat each other's masks.
        torch.manual_seed(_epoch_seed(params["seed"], epoch) * world.size + world.rank)
        lr = optimizer.param_groups[0]["lr"]
        with tqdm(total=len(train_loader), desc=f"{name} epoch {epoch}/{params['epochs']}",
                  leave=False, disable=None if world.main else True) as progress:
            train_loss, train_acc = train_one_epoch(
                step_model, train_loader, optimizer, criterion, _epoch_seed(params["seed"], epoch), precision,
                progress, step_scheduler=scheduler if per_batch else None, ema=ema, world=world)
        train_seconds = time.perf_counter() - started
        if world.main:
            val_loss, val_acc = validate(evaluated, valid_loader, criterion, precision)
        if not per_batch:
            scheduler.step()
        if not world.main:
            continue
        history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
                        "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6), "lr": float(f"{lr:.8g}"),
                        "seconds": round(time.perf_counter() - started, 3), "train_seconds": train_seconds})
        if val_acc > best["val_acc"]:
            best = {"val_acc": val_acc, "epoch": epoch}
            save_checkpoint(paths.best, Checkpoint(replace(header, epoch=epoch, val_acc=val_acc), kept.state_dict(),
                                                   run_record))
        resume = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  "history": history, "best": best, **({} if ema is None else {"ema": ema.state_dict()})}
        save_checkpoint(paths.last, Checkpoint(replace(header, epoch=epoch), model.state_dict(),
                                               {**run_record, **resume}))
        _write_curves(paths.curves, history)
        tqdm.write(f"{name} epoch {epoch:>3}/{params['epochs']}: train loss {train_loss:.4f} acc {train_acc:.4f}"
                   f" | val loss {val_loss:.4f} acc {val_acc:.4f} | lr {lr:.5f} | {history[-1]['seconds']:.1f}s "
                   f"({len(train_images) / train_seconds:.0f} img/s)")
    if not world.main:
        return {}
    _write_curves(paths.curves, history)  # also when a killed run had nothing left to train
    return _write_summary(paths, history, best, len(train_images), device, precision, world.size)


# The summary's numbers worth comparing across experiments; the rest (img/s among them) stays in the
# summary file, so that `dvc exp show` keeps to 40 metric columns with FER+'s eight classes too.
METRIC_KEYS = ("best_epoch", "wall_seconds")


def _write_summary(paths: RunPaths, history: list[dict[str, Any]], best: dict[str, Any], train_size: int,
                   device: torch.device, precision: str, processes: int) -> dict[str, Any]:
    train_seconds = sum(h["train_seconds"] for h in history)
    summary = {
        "best_epoch": best["epoch"],
        "best_val_acc": round(best["val_acc"], 6),
        "final_val_acc": history[-1]["val_acc"] if history else None,
        "epochs": len(history),
        "wall_seconds": round(sum(h["seconds"] for h in history), 2),
        "train_images_per_second": round(train_size * len(history) / train_seconds, 1) if train_seconds else None,
        "device": device.type,
        "precision": precision,
        "processes": processes,
    }
    write_json(paths.train_summary, summary)
    write_json(paths.train_metrics, {key: summary[key] for key in METRIC_KEYS})
    return summary

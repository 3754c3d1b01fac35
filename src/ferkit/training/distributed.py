"""Data-parallel training with torch.distributed: which process this is, and torchrun's launcher.

`fer train MODEL` runs unchanged under `torchrun --nproc-per-node N` (one or many nodes), and with
`train.processes: N` it starts its N workers itself through the same elastic launcher, with
torchrun's standalone (single-machine) rendezvous. Every worker holds the whole split and draws the
same seeded permutation and augmentation; each takes a contiguous share of every global batch
(`BatchLoader`), and DistributedDataParallel averages the gradients: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import run as torchrun
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import elastic_launch
from torch.nn.parallel import DistributedDataParallel

from ferkit.errors import FerError


@dataclass(frozen=True)
class World:
    """This process's place among the workers; the default is a plain run in one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launched: bool = False  # started by torchrun's elastic agent, so a process group exists

    @property
    def main(self) -> bool:
        """Rank 0 alone validates and writes checkpoints, curves and metrics."""
        return self.rank == 0


ONE_PROCESS = World()


def launched() -> bool:
    return dist.is_torchelastic_launched()


def join(device: torch.device) -> tuple[World, torch.device]:
    """Join the workers that torchrun started; returns this process's place and its device."""
    world = World(rank=int(os.environ["RANK"]), size=int(os.environ["WORLD_SIZE"]),
                  local_rank=int(os.environ["LOCAL_RANK"]), local_size=int(os.environ["LOCAL_WORLD_SIZE"]),
                  launched=True)
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise FerError(f"{world.local_size} processes on this machine, but only "
                           f"{torch.cuda.device_count()} CUDA GPUs: one process per GPU")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    return world, device


def leave(world: World) -> None:
    if world.launched:
        dist.barrier()  # the other ranks wait here for rank 0's last validation and writes
        dist.destroy_process_group()


def cpu_threads(threads: int, world: World) -> int:
    """`threads: 0` means one per core; the workers on one machine split its cores between them."""
    if threads or not world.launched:
        return threads
    return max(1, len(os.sched_getaffinity(0)) // world.local_size)


def wrap(model: nn.Module, world: World, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """The module that trains: DDP around `model` under torchrun, `model` itself otherwise."""
    if not world.launched:
        return model
    if sync_batchnorm and world.size > 1 and device.type != "cuda":
        # torch's SyncBatchNorm runs on GPUs only.
        raise FerError("train.sync_batchnorm needs CUDA; with device cpu set it to false")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_batchnorm(model: nn.Module, world: World, enabled: bool) -> nn.Module:
    """BatchNorm over the global batch rather than each process's share; before the optimizer sees the model."""
    if enabled and world.size > 1:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def from_main(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank (the resume state), so that nodes need not share a disk."""
    if world.size == 1:
        return value
    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(*values: torch.Tensor) -> list[torch.Tensor]:
    """The epoch's training sums over all ranks: one all-reduce for the whole epoch."""
    stacked = torch.stack([value.double() for value in values])
    dist.all_reduce(stacked)
    return list(stacked.unbind())


def launch(processes: int, entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Run `entrypoint(*args)` in `processes` local workers through torchrun's elastic launcher with the
    rendezvous `torchrun --standalone` sets up (a store on a free local port); returns rank 0's result."""
    options = torchrun.parse_args(["--nnodes=1", f"--nproc-per-node={processes}", "--rdzv-backend=c10d",
                                   "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}", "fer"])
    config, _, _ = torchrun.config_from_args(options)
    try:
        results = elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        raise FerError(f"training in {processes} processes failed: rank {rank} exited with "
                       f"{failure.exitcode} (its error is printed above)") from None
    except SignalException as error:  # the launcher has already stopped its workers
        raise FerError(f"training in {processes} processes stopped by {error.sigval.name}; "
                       "run it again to resume from last.pt") from None
    return results[0]

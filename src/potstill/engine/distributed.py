"""Data-parallel training under torchrun: one process per device, each on its part of every batch.

`torchrun --nproc_per_node N -m potstill distill RECIPE` starts N copies of the command and tells
each its RANK, LOCAL_RANK and WORLD_SIZE through the environment (torch.distributed.run). Every
rank reads the recipe, the data, the teacher and the checkpoints alike; rank 0 alone writes files
and prints. The pieces, each a no-op in one process:

    setup / teardown     the process group: gloo on CPU, NCCL on CUDA (one GPU per rank)
    broadcast_module     rank 0's weights to every rank as a stage starts
    average_gradients    after backward, every trained parameter's gradient summed over ranks,
                         each rank's weighted by its part of the batch (one all-reduce)
    add_up, everywhere   training metrics summed over ranks; a non-finite loss stops every rank
    sync_buffers         BatchNorm running statistics averaged at the end of each epoch, so every
                         rank holds the model rank 0 evaluates and saves
    random_states        every rank's RNG state, saved in rank 0's checkpoint (exact resume)
    on_main, barrier     rank 0 writes; the others wait for it, or stop with its error

The loader does the sharding (data/loader.py: each rank takes its slice of the global batch).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from potstill.errors import PotstillError

# what a collective raises when another rank is gone (torch builds without torch.distributed have none)
PEER_STOPPED: tuple[type[BaseException], ...] = (dist.DistError,) if hasattr(dist, "DistError") else ()


def launched_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun), read before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """A process group of two or more ranks is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0, the one that writes and prints; before the process group starts, torchrun's RANK says."""
    return rank() == 0 if active() else launched_rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once) and return this rank's device: on CUDA, GPU LOCAL_RANK
    with NCCL; on CPU, gloo. Outside torchrun (or with one process) nothing happens."""
    if launched_world_size() < 2:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # torch._dynamo (imported lazily, e.g. by the first optimizer) keeps references to a default group
        # that exists when it is imported: the group then outlives destroy_process_group, and its threads
        # abort the process at exit. Imported first, it holds none.
        importlib.import_module("torch._dynamo")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def on_main(action: Callable[[], Any]) -> Any:
    """Run `action` (which writes) on rank 0 only; the other ranks wait for it and, when it failed
    with a user error, stop with the same error (rank 0 prints it)."""
    if not active():
        return action()
    outcome: list[str | None] = [None]
    result = None
    if is_main():
        try:
            result = action()
        except PotstillError as error:
            outcome[0] = str(error)
            share_outcome(outcome)
            raise
        except Exception:  # (an interrupt reaches every rank by itself)
            outcome[0] = "rank 0 failed; its output says why"
            share_outcome(outcome)
            raise
    share_outcome(outcome)
    if outcome[0] is not None:
        raise PotstillError(outcome[0])
    return result


def share_outcome(outcome: list[str | None]) -> None:
    """Rank 0's message (or None) to every rank, as UTF-8 bytes in a tensor (nothing is pickled)."""
    device = collective_device()
    text = (outcome[0] or "").encode()
    length = torch.tensor([len(text)], device=device)
    dist.broadcast(length, 0)
    data = torch.zeros(int(length), dtype=torch.uint8, device=device)
    if is_main():
        data[:] = torch.tensor(list(text), dtype=torch.uint8, device=device)
    dist.broadcast(data, 0)
    outcome[0] = bytes(data.tolist()).decode() or None


def collective_device() -> torch.device:
    """Where tensors for collectives live: NCCL works on the rank's GPU only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Rank 0's parameters and buffers to every rank, as a stage starts: all ranks begin alike."""
    if active():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, 0)


@torch.no_grad()
def average_gradients(optimizer: torch.optim.Optimizer, share: float) -> None:
    """After backward: every rank's gradients, each weighted by its part of the batch (`share`,
    data/loader.py), summed over ranks, so each rank steps with the global batch's mean gradient.
    A parameter no rank used keeps no gradient (the optimizer skips it, as in one process); one
    used by some ranks only counts zero from the others. One all-reduce per dtype, after backward
    (DistributedDataParallel would overlap it with backward, but a step here trains several
    modules whose terms switch on and off, which DDP only follows with a traversal of the graph
    on every step)."""
    if not active():
        return
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    used = torch.tensor([parameter.grad is not None for parameter in parameters], dtype=torch.int32,
                        device=collective_device())
    dist.all_reduce(used, op=dist.ReduceOp.MAX)
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for parameter, flag in zip(parameters, used.tolist()):
        if flag:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            by_dtype.setdefault(parameter.grad.dtype, []).append(parameter)
    for group in by_dtype.values():
        flat = torch.cat([parameter.grad.reshape(-1) for parameter in group]) * (share / world_size())
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for parameter, part in zip(group, flat.split([parameter.numel() for parameter in group])):
            parameter.grad.copy_(part.view_as(parameter.grad))


@torch.no_grad()
def sync_buffers(module: nn.Module) -> None:
    """BatchNorm running means and variances averaged over ranks (each saw its own parts of the
    batches), every other buffer taken from rank 0: afterwards every rank holds the same module."""
    if not active():
        return
    averaged = {id(buffer) for layer in module.modules() if isinstance(layer, _BatchNorm)
                for buffer in (layer.running_mean, layer.running_var) if buffer is not None}
    for buffer in module.buffers():
        if id(buffer) in averaged:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world_size())
        else:
            dist.broadcast(buffer, 0)


def add_up(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each scalar summed over ranks (float64, so counts stay exact)."""
    if not active() or not values:
        return values
    packed = torch.stack([value.detach().double().to(collective_device()) for value in values])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return [total.to(value.device, value.dtype) for total, value in zip(packed, values)]


def everywhere(flag: bool) -> bool:
    """True when `flag` holds on every rank (one small all-reduce): all ranks decide alike."""
    if not active():
        return flag
    value = torch.tensor([int(flag)], device=collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def seed_rank(seed: int) -> None:
    """A fresh stage: rank r > 0 draws its own random numbers (dropout) from a stream of its own,
    so two ranks never share dropout masks; rank 0 keeps the one-process stream."""
    if active() and rank() > 0:
        torch.manual_seed(seed * 1_000_003 + 7919 * rank())


def random_states() -> dict[str, torch.Tensor]:
    """The RNG states a checkpoint keeps: this process's (rng.cpu, rng.cuda), and under torchrun
    every rank's as rng.cpu.rank<r> too, gathered on every rank (an all-gather: all ranks call it)."""
    own = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        own["rng.cuda"] = torch.cuda.get_rng_state()
    if not active():
        return own
    states = dict(own)
    device = collective_device()
    for name, state in own.items():
        gathered = [torch.empty_like(state, device=device) for _ in range(world_size())]
        dist.all_gather(gathered, state.to(device))
        states.update({f"{name}.rank{index}": part.cpu() for index, part in enumerate(gathered)})
    return states


"""Multi-process training under torchrun: process group, gradient and metric all-reduce.

Gradients are summed over ranks after the backward passes of an update (HAT trains its
SuperTransformer with `--ddp-backend no_c10d`, i.e. the same): a sampled SubTransformer
leaves many supernet weights without a gradient, which torch's DDP would have to search
for every step; summing every parameter's gradient (zeros where absent) keeps the ranks'
replicas identical without that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

BUCKET_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world, device=device)


def all_reduce_gradients(params: list[torch.nn.Parameter], world: DistInfo) -> None:
    """Sum every parameter's gradient over ranks (missing gradients count as zeros)."""
    if world.world_size == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce_bucket(bucket)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket)


def _reduce_bucket(grads: list[torch.Tensor]) -> None:
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=False):
        g.copy_(reduced)


def all_reduce_sum(values: list[float], world: DistInfo) -> list[float]:
    """Sum a few numbers over ranks."""
    if world.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: DistInfo) -> None:
    if world.world_size > 1:
        dist.barrier()

"""The one place that reads the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK).

Everything else asks `dist_info()` or calls `barrier()`, so single-process runs and torchrun runs share code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def resolve_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    return "nccl" if torch.cuda.is_available() else "gloo"


def uses_cpu(backend: str) -> bool:
    return resolve_backend(backend) == "gloo"


def init_distributed(backend: str, timeout_s: int = 1800) -> DistInfo:
    """Join the process group torchrun set up (no-op in a single process). accelerate reuses this group.

    `timeout_s` (launcher.nccl_timeout_s) bounds every collective: a rank waiting for a dead peer fails then.
    """
    info = dist_info()
    if info.world_size > 1 and not torch_dist.is_initialized():
        resolved = resolve_backend(backend)
        if resolved == "nccl":
            torch.cuda.set_device(info.local_rank)
        torch_dist.init_process_group(resolved, timeout=timedelta(seconds=timeout_s))
    return info


def all_gather_object(obj) -> list:
    """Every rank's `obj`, in rank order (one collective); [obj] in a single process."""
    if not torch_dist.is_initialized():
        return [obj]
    gathered = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def broadcast_object(obj, group=None):
    """Rank 0's `obj` on every rank (over `group`, default the training group)."""
    if not torch_dist.is_initialized():
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=0, group=group)
    return holder[0]


_WAIT_GROUPS: dict[float, object] = {}


def wait_group(timeout_s: float):
    """A gloo group over every rank with its own timeout, for waiting while rank 0 works alone for long.

    The training group's timeout (30 min) is sized for collectives, not for rank 0 writing and hashing 140 GB;
    gloo keeps the waiting ranks off NCCL's watchdog. Every rank must call this at the same point (creating a
    group is collective), before rank 0 starts its long work; one group per timeout is kept for reuse.
    """
    if not torch_dist.is_initialized():
        return None
    if timeout_s not in _WAIT_GROUPS:
        _WAIT_GROUPS[timeout_s] = torch_dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    return _WAIT_GROUPS[timeout_s]

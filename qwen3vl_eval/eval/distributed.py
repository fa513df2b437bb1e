"""Data-parallel evaluation: one model replica per process, samples sharded across processes.

Launch with `torchrun --nproc-per-node N -m qwen3vl_eval run ...` (or `python -m torch.distributed.run`).
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `from_env` reads them and joins a
process group. The group only carries barriers and small Python objects (the run folder), never tensors, so it
always uses the gloo backend, on CPU and on CUDA machines alike (no NCCL watchdog on long waits).

Without those variables (or with WORLD_SIZE=1) everything here is a no-op and a run is a plain single process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from qwen3vl_eval.errors import InputError

T = TypeVar("T")
# Rank 0 waits at a barrier until the slowest rank has finished its shard; give it a long time.
DEFAULT_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 merges the rank logs, scores and prints."""
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This rank's items: deterministic round-robin (item i goes to rank i mod world_size)."""
        return items[self.rank :: self.world_size]

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a picklable object)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (a picklable object); also a barrier."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def device(self, name: str) -> str:
        """The `--device` value this rank uses: unchanged in a single process, else resolved for LOCAL_RANK
        (`runtime.device.resolve_device`)."""
        if not self.enabled:
            return name
        from qwen3vl_eval.runtime.device import resolve_device

        return str(resolve_device(name, local_rank=self.local_rank))

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


SINGLE = Dist()


def shutdown() -> None:
    """Leave the process group if this process joined one (safe to call in any case; imports nothing when torch
    was never loaded, so an early usage error stays quick)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r}: not an integer") from None


def from_env(timeout_s: float | None = None) -> Dist:
    """The run's `Dist` from torchrun's environment, joining the (gloo) process group when WORLD_SIZE > 1.
    `timeout_s` (default QWEN3VL_EVAL_DIST_TIMEOUT_S or 6 h) bounds every barrier."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank}, WORLD_SIZE={world}: inconsistent torchrun environment")
    ctx = Dist(rank, world, local)
    if ctx.enabled:
        import torch.distributed as dist

        if not dist.is_initialized():
            timeout = timeout_s if timeout_s is not None else float(
                os.environ.get("QWEN3VL_EVAL_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
    return ctx

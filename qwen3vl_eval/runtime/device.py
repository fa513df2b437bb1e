"""`--device` and `--dtype` values (CONTRACTS section 3) to torch objects. torch is imported on first use, so
that commands stay quick to start (`--help`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3vl_eval.errors import InputError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def resolve_device(name: str | torch.device = "auto", *, local_rank: int | None = None) -> torch.device:
    """`auto` is cuda when available, else cpu; `cuda:N` must exist. A torch.device (already resolved) is
    returned as is. With `local_rank` (one process of a multi-process run), `auto` and `cuda` mean
    `cuda:LOCAL_RANK` and an explicit `cuda:N` is refused."""
    import torch

    if isinstance(name, torch.device):
        return name
    if local_rank is not None:
        if name.startswith("cuda:"):
            raise InputError(f"--device {name}: with several processes each rank uses cuda:LOCAL_RANK; pass "
                             "--device cuda (or auto)")
        if name in ("auto", "cuda") and torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise InputError(f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA device(s) "
                                 "on this node; lower --nproc-per-node")
            return torch.device(f"cuda:{local_rank}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on CUDA and float32 on CPU (the exact reference path). A torch.dtype (already
    resolved) is returned as is."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPE_NAMES:
        raise InputError(f"--dtype {name!r}: expected auto, {', '.join(DTYPE_NAMES)}")
    return getattr(torch, name)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

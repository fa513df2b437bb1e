"""What every figure must name besides its value: software versions and the device it ran on."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from qwen3vl_eval import __version__


def software_versions(*, with_transformers: bool = False) -> dict[str, str]:
    """Versions that shape the numbers (transformers read from package metadata, never imported here)."""
    out = {"qwen3vl_eval": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for pkg in ("tokenizers", "av", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    if with_transformers:
        try:
            out["transformers"] = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            pass
    return out


def device_name(device: torch.device) -> str:
    """The GPU's marketing name (used to look up its peaks), or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def device_label(device: torch.device) -> str:
    """`cuda:0 (NVIDIA H200)` or `cpu (x86_64, 2 threads)`: for results files."""
    if device.type == "cuda":
        return f"{device} ({device_name(device)})"
    return f"cpu ({device_name(device)}, {torch.get_num_threads()} threads)"

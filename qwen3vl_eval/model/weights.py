"""Checkpoint loading: a Hugging Face Qwen3-VL folder to a `Qwen3VL` on a device (commands resolve `--model`
values such as Hub ids to folders: `qwen3vl_eval.checkpoints.hub.resolve_model`).

The model is built on the meta device (no memory, no random init), each tensor is read from its safetensors
file through a memory map, cast, moved to the device, and assigned in place of the meta parameter, so host
memory holds about one copy of the weights at most. Key names are the checkpoint's own: dense and MoE load with
no renames (MoE experts stay in the released [E, Hd, 2I] / [E, I, Hd] layout). With tied embeddings the head is
`embed_tokens`; an `lm_head.weight` stored anyway is ignored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from qwen3vl_eval.errors import CheckpointError
from qwen3vl_eval.jsonio import read_object
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.moe import expert_layout_error
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.text import fuse_projections


def load_model(path: str | Path, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.bfloat16) -> Qwen3VL:
    """Load a checkpoint folder (CONTRACTS section 1) in eval mode on `device` in `dtype`."""
    path = Path(path)
    config = Qwen3VLConfig.from_file(path / "config.json")
    files = weight_files(path)
    model = meta_model(config)
    expected = checkpoint_shapes(model)
    problems, state, misshaped = [], {}, set()
    for file, keys in files.items():
        for key in keys:
            if key not in expected:
                if ".mlp.experts." in key:
                    _check_expert_layout(file, key, config, path)
                if not (key == "lm_head.weight" and config.tie_word_embeddings):
                    problems.append(f"unexpected key {key} in {file.name}")
                continue
            with open_safetensors(file) as f:  # opened per tensor: only this tensor is mapped
                shape = tuple(f.get_slice(key).get_shape())
                if shape != expected[key]:
                    _check_expert_layout(file, key, config, path, shape)
                    problems.append(f"{key}: shape {shape} in {file.name}, the config expects {expected[key]}")
                    misshaped.add(key)
                    continue
                state[key] = f.get_tensor(key).to(device=device).to(dtype)
    problems += [f"missing key {k}" for k in expected if k not in state and k not in misshaped]
    _raise_if(problems, path)
    return _finish(model, state, device)


def build_model(config: Qwen3VLConfig, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16,
                seed: int = 0) -> Qwen3VL:
    """A model with random weights (`random_state_dict`; for presets such as `--preset 8B`), created directly
    on `device`."""
    model = meta_model(config)
    return _finish(model, random_state_dict(config, seed=seed, dtype=dtype, device=device, model=model), device)


def meta_model(config: Qwen3VLConfig) -> Qwen3VL:
    """The model built on the meta device: its shapes and key tree, no memory, no initialisation (the weights
    come from the checkpoint or `random_state_dict`)."""
    with torch.device("meta"), skip_init():
        return Qwen3VL(config)


# The torch modules the model is built from whose constructors run an initialiser. On the meta device the
# initialisers do nothing useful, yet the first `normal_` there imports torch._dynamo (about 3.5 s).
_INITIALISED = (nn.Linear, nn.Embedding, nn.LayerNorm)


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Modules constructed inside leave their parameters as allocated (`reset_parameters` is a no-op). Meant for
    the meta device; it swaps a class attribute, so it holds process-wide while it runs (models are built on one
    thread)."""
    saved = [cls.__dict__["reset_parameters"] for cls in _INITIALISED]
    try:
        for cls in _INITIALISED:
            cls.reset_parameters = _no_init  # type: ignore[method-assign]
        yield
    finally:
        for cls, fn in zip(_INITIALISED, saved):
            cls.reset_parameters = fn  # type: ignore[method-assign]


def _no_init(self: nn.Module) -> None:
    return None


def checkpoint_shapes(model: Qwen3VL | Qwen3VLConfig) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of a model (or of a config's model) with its shape, in the model's order: the
    released layout, since the modules use the checkpoint's own names (no `lm_head.weight` when tied)."""
    model = meta_model(model) if isinstance(model, Qwen3VLConfig) else model
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def random_state_dict(config: Qwen3VLConfig, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu", model: Qwen3VL | None = None) -> dict[str, torch.Tensor]:
    """Deterministic random weights for every key, drawn in key order from one generator on `device`. Norm
    weights are near 1 and biases small but non-zero, so parity checks exercise them; matrices use a fan-in
    scale so activations stay O(1) through the layers. Tiny checkpoints are these weights (on the CPU)."""
    g = torch.Generator(device=device).manual_seed(seed)
    state = {}
    for key, shape in checkpoint_shapes(model or config).items():
        if key.endswith(("norm.weight", "norm1.weight", "norm2.weight")):
            w = 1.0 + 0.1 * torch.randn(shape, generator=g, device=device)
        elif key.endswith("bias"):
            w = 0.05 * torch.randn(shape, generator=g, device=device)
        elif key.endswith(("embed_tokens.weight", "pos_embed.weight")):
            w = 0.5 * torch.randn(shape, generator=g, device=device)
        else:
            fan_in = shape[1] if "experts" in key else math.prod(shape[1:])
            w = torch.randn(shape, generator=g, device=device) / math.sqrt(fan_in)
        state[key] = w.to(dtype).contiguous()
    return state


def weight_files(path: Path) -> dict[Path, list[str]]:
    """The safetensors files of a checkpoint folder and the keys each holds."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_object(index, error=CheckpointError).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: not a valid safetensors index (no weight_map object)")
        files: dict[Path, list[str]] = {}
        for key, name in weight_map.items():
            files.setdefault(path / _shard_name(index, key, name), []).append(key)
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{index}: names shard {f.name}, which is missing")
            with open_safetensors(f) as shard:  # a broken shard fails here, naming it, before any layer is built
                absent = [k for k in files[f] if k not in set(shard.keys())]
            if absent:
                raise CheckpointError(f"{index}: maps {absent[0]} to {f.name}, which does not hold it")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        with open_safetensors(single) as f:
            return {single: list(f.keys())}
    if list(path.glob("*.bin")) or list(path.glob("*.pt")):
        raise CheckpointError(f"{path}: only PyTorch .bin weights found; this tool reads safetensors only "
                              f"(convert them, e.g. with transformers' save_pretrained(safe_serialization=True))")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def _shard_name(index: Path, key: Any, name: Any) -> str:
    """A weight_map entry's file name: a relative path inside the checkpoint folder (no `..`, not absolute)."""
    if not isinstance(key, str) or not isinstance(name, str) or not name:
        raise CheckpointError(f"{index}: weight_map entry {key!r}: {name!r} is not a file name")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not name.endswith(".safetensors"):
        raise CheckpointError(f"{index}: weight_map entry {key!r} names {name!r}, which is not a .safetensors "
                              f"file inside the checkpoint folder")
    return name


@contextlib.contextmanager
def open_safetensors(file: Path) -> Iterator[Any]:
    """`safe_open` with a truncated, empty or malformed file (bad header length, header not JSON, offsets past
    the end) as one CheckpointError naming the file."""
    try:
        handle = safe_open(file, framework="pt")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({_first_line(e)})") from None
    with handle as f:
        try:
            yield f
        except SafetensorError as e:
            raise CheckpointError(f"{file}: cannot read a tensor ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _check_expert_layout(file: Path, key: str, config: Qwen3VLConfig, path: Path,
                         shape: tuple[int, ...] | None = None) -> None:
    """One CheckpointError when `key` is a MoE expert weight in another layout than the released fused one."""
    if not config.is_moe:
        return
    if shape is None:
        with open_safetensors(file) as f:
            shape = tuple(f.get_slice(key).get_shape())
    msg = expert_layout_error(key, shape, config.text)
    if msg:
        raise CheckpointError(f"{path}: {msg} (in {file.name})")


def _raise_if(problems: list[str], path: Path) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])}{' ...' if len(problems) > 4 else ''})"
        raise CheckpointError(f"{path}: {problems[0]}{more if len(problems) > 1 else ''}")


def _finish(model: Qwen3VL, state: dict[str, torch.Tensor], device: torch.device | str) -> Qwen3VL:
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device)  # moves the (CPU-built) rotary buffers; parameters are already there
    model.requires_grad_(False)
    fuse_projections(model.model.language_model)  # q/k/v and gate/up as one GEMM each; names unchanged
    return model.eval()

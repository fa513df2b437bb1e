"""Resolve `--model` values: a local checkpoint folder, or a Hub id found in the local Hugging Face cache.

No network access is attempted: a Hub id that is not cached is a clear error that says where we looked and how
to fetch it (`huggingface-cli download ID`).
"""

from __future__ import annotations

import os
from pathlib import Path

from qwen3vl_eval.errors import CheckpointError


def hf_home() -> Path:
    """The Hugging Face home folder: HF_HOME, else $XDG_CACHE_HOME/huggingface (~/.cache/huggingface)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser()


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, honouring HF_HUB_CACHE, then HF_HOME."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return hf_home() / "hub"


def cache_dir() -> Path:
    """Our own cache (tiny checkpoints, synthetic task data): QWEN3VL_EVAL_CACHE or ~/.cache/qwen3vl-eval."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "qwen3vl-eval")
    return Path(os.environ.get("QWEN3VL_EVAL_CACHE", default)).expanduser()


TINY_NAMES = {"tiny": "default", "tiny-variant": "variant", "tiny-moe": "moe", "tiny-small": "small"}


def resolve_model(name: str | os.PathLike, revision: str | None = None) -> Path:
    """A checkpoint folder for `name`: a local folder as is, `org/model[@revision]` from the HF cache, or one
    of the embedded tiny random checkpoints (`tiny`, `tiny-variant`, `tiny-moe`, `tiny-small`), built on first
    use."""
    if str(name) in TINY_NAMES:
        from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint, tiny_fingerprint

        variant = TINY_NAMES[str(name)]
        out = cache_dir() / "tiny" / f"{variant}-{tiny_fingerprint(variant)}"  # rebuilt when the builder changes
        if not (out / "model.safetensors").is_file():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            build_tiny_checkpoint(tmp, variant)
            os.makedirs(out.parent, exist_ok=True)
            try:
                os.replace(tmp, out)
            except OSError:  # built concurrently by another process
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        return out
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a checkpoint folder (no config.json)")
        return path
    text = str(name)
    if "@" in text and revision is None:
        text, revision = text.rsplit("@", 1)
    if text.count("/") != 1 or text.startswith((".", "/")) or path.suffix:
        raise CheckpointError(f"{name}: no such checkpoint folder, and not a Hub id of the form org/name")
    cache = hub_cache_dir()
    repo = cache / ("models--" + text.replace("/", "--"))
    rev = revision or "main"
    snapshot = None
    if (repo / "refs" / rev).is_file():
        snapshot = repo / "snapshots" / (repo / "refs" / rev).read_text().strip()
    elif (repo / "snapshots" / rev).is_dir():  # a commit hash
        snapshot = repo / "snapshots" / rev
    if snapshot is None or not (snapshot / "config.json").is_file():
        raise CheckpointError(
            f"{text}: not in the local Hugging Face cache ({repo}, revision {rev}); this machine cannot download "
            f"it. Fetch it where there is network with `huggingface-cli download {text}` and point HF_HOME or "
            f"HF_HUB_CACHE at that cache, or pass a local folder"
        )
    return snapshot

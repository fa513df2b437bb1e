"""Resolve `--model` values: a local checkpoint folder, or a Hub id found in the local Hugging Face cache.

No network access is attempted: a Hub id that is not cached is a clear error that says where we looked and how
to fetch it (`huggingface-cli download ID [--revision REV]`). `org/name@REV` takes a branch, a tag, a commit hash
or a unique short hash, resolved as in huggingface_hub's cache layout (`refs/<REV>`, `snapshots/<hash>`).
"""

from __future__ import annotations

import os
import re
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
    if not _HUB_ID.fullmatch(text) or text.lower().endswith(_FILE_ENDINGS):
        raise CheckpointError(f"{name}: no such checkpoint folder, and not a Hub id of the form org/name")
    repo = hub_cache_dir() / ("models--" + text.replace("/", "--"))
    rev = revision or "main"
    snapshot = cached_snapshot(repo, rev)
    if snapshot is None or not (snapshot / "config.json").is_file():
        pin = f" --revision {rev}" if revision else ""
        raise CheckpointError(
            f"{text}: not in the local Hugging Face cache ({repo}, revision {rev}); this machine cannot download "
            f"it. Fetch it where there is network with `huggingface-cli download {text}{pin}` and point HF_HOME or "
            f"HF_HUB_CACHE at that cache, or pass a local folder"
        )
    return snapshot


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_FILE_ENDINGS = (".json", ".jsonl", ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".yaml", ".yml", ".txt")


def cached_snapshot(repo: Path, revision: str) -> Path | None:
    """A repo's snapshot folder in the huggingface_hub cache layout: `refs/<revision>` (a branch or tag, e.g.
    main or v1.0) names the commit; else a full commit hash, or a hex prefix of one that only one snapshot
    has (as `git` resolves a short hash). None when nothing matches; CheckpointError when a prefix is ambiguous."""
    ref = repo / "refs" / revision
    if ".." not in Path(revision).parts and ref.is_file():
        return repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
    snapshots = repo / "snapshots"
    if not re.fullmatch(r"[0-9a-f]{4,40}", revision) or not snapshots.is_dir():
        return None
    found = sorted(p for p in snapshots.iterdir() if p.name.startswith(revision))
    if len(found) > 1:
        raise CheckpointError(f"{repo.name}@{revision}: the short hash matches {len(found)} cached snapshots "
                              f"({', '.join(p.name[:12] for p in found)}); give more of it")
    return found[0] if found else None

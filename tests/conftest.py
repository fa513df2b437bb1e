"""Shared fixtures: tiny random checkpoints in the real Hugging Face format (built once per session), an engine
on the default one, small media files and a module-scoped monkeypatch. Helpers are in `helpers.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import write_video
from PIL import Image

from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoint, variant "default" (untied head, deepstack taps (0, 2), GQA 4:2)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_default"), "default")


@pytest.fixture(scope="session")
def tiny_variant_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoint, variant "variant" (tied embeddings, GQA 6:1, one deepstack tap)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_variant"), "variant")


@pytest.fixture(scope="session")
def tiny_moe_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoint, variant "moe" (model_type qwen3_vl_moe, 8 experts, top-2)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_moe"), "moe")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's cache (~/.cache/qwen3vl-eval): tiny checkpoints and synthetic task
    data named by `tiny`/`smoke` are built into a per-session folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QWEN3VL_EVAL_CACHE", str(tmp_path_factory.mktemp("qwen3vl_eval_cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def engine(tiny_ckpt: Path):
    """The native engine on the default tiny checkpoint, fp32 on the CPU (one per test module: its vision
    cache and timings are a module's own)."""
    from qwen3vl_eval.backends.native import Engine

    return Engine(tiny_ckpt, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with green.png (120x90), the same noise as noise.png and as noise.jpg (150x70) and clip.mp4
    (`helpers.write_video`)."""
    d = tmp_path_factory.mktemp("media")
    Image.new("RGB", (120, 90), (20, 200, 30)).save(d / "green.png")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 150, 3), dtype=np.uint8))
    noise.save(d / "noise.png")
    noise.save(d / "noise.jpg", quality=90)
    write_video(d / "clip.mp4")
    return d


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch undone at the end of the module (for module-scoped fixtures)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()

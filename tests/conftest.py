"""Shared fixtures: tiny random checkpoints in the real Hugging Face format, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

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

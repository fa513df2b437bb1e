"""Checkpoint loading: single file, shards + index, tied embeddings, clear errors, Hub ids via the local cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import copy_tree
from safetensors.torch import load_file, save_file

from qwen3vl_eval.checkpoints.hub import resolve_model
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS, build_tiny_checkpoint
from qwen3vl_eval.errors import CheckpointError
from qwen3vl_eval.model.weights import build_model, load_model


def test_loads_every_key_cast_to_dtype(tiny_ckpt):
    model = load_model(tiny_ckpt, device="cpu", dtype=torch.bfloat16)
    sd = load_file(tiny_ckpt / "model.safetensors")
    ours = model.state_dict()
    assert set(ours) == set(sd)
    assert all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in ours.values())
    torch.testing.assert_close(ours["model.visual.blocks.1.attn.qkv.weight"],
                               sd["model.visual.blocks.1.attn.qkv.weight"].bfloat16())
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_shards_with_index(tmp_path, tiny_ckpt):
    sharded = build_tiny_checkpoint(tmp_path / "sharded", "default", shards=3)
    assert (sharded / "model.safetensors.index.json").is_file() and not (sharded / "model.safetensors").exists()
    a = load_model(sharded, dtype=torch.float32).state_dict()
    b = load_model(tiny_ckpt, dtype=torch.float32).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_tied_embeddings(tmp_path, tiny_variant_ckpt):
    model = load_model(tiny_variant_ckpt, dtype=torch.float32)
    assert not hasattr(model, "lm_head") and "lm_head.weight" not in load_file(tiny_variant_ckpt / "model.safetensors")
    ids = torch.tensor([[1, 2, 3]])
    pos = torch.arange(3).expand(3, 1, 3)
    h = model.model.language_model.embed_tokens.weight
    logits = model(ids, pos)
    assert logits.shape == (1, 3, h.shape[0])
    # a tied checkpoint that stores lm_head.weight anyway loads (the stored head is ignored)
    ckpt = copy_tree(tiny_variant_ckpt, tmp_path / "with_head")
    sd = load_file(ckpt / "model.safetensors")
    sd["lm_head.weight"] = torch.zeros_like(h)
    save_file(sd, ckpt / "model.safetensors")
    torch.testing.assert_close(load_model(ckpt, dtype=torch.float32)(ids, pos), logits)


def test_misshaped_key_names_key_and_shapes(tmp_path, tiny_ckpt):
    ckpt = copy_tree(tiny_ckpt, tmp_path / "bad")
    sd = load_file(ckpt / "model.safetensors")
    key = "model.language_model.layers.1.self_attn.k_proj.weight"
    sd[key] = sd[key].T.contiguous()  # (32, 64) -> (64, 32)
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_model(ckpt)
    msg = str(e.value)
    assert key in msg and "(64, 32)" in msg and "(32, 64)" in msg and "\n" not in msg


def test_missing_and_unexpected_keys(tmp_path, tiny_ckpt):
    ckpt = copy_tree(tiny_ckpt, tmp_path / "bad")
    sd = load_file(ckpt / "model.safetensors")
    del sd["lm_head.weight"]
    sd["model.extra.weight"] = torch.zeros(2)
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected key model\.extra\.weight.*missing key lm_head\.weight"):
        load_model(ckpt)


def test_bin_only_checkpoint_is_refused(tmp_path, tiny_ckpt):
    ckpt = copy_tree(tiny_ckpt, tmp_path / "bin")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"only PyTorch \.bin weights"):
        load_model(ckpt)


def test_hub_id_through_the_local_cache(tmp_path, monkeypatch, tiny_ckpt):
    cache = tmp_path / "hub"
    repo = cache / "models--Qwen--Qwen3-VL-Tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(tiny_ckpt, repo / "snapshots" / "abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = load_model(resolve_model("Qwen/Qwen3-VL-Tiny"), dtype=torch.float32)
    assert model.config == TINY_CONFIGS["default"]
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        resolve_model("Qwen/Qwen3-VL-Absent")


def test_build_model_random_weights():
    model = build_model(TINY_CONFIGS["variant"], device="cpu", dtype=torch.bfloat16, seed=1)
    assert all(t.dtype == torch.bfloat16 for t in model.state_dict().values())
    assert model.model.language_model.freqs.dtype == torch.float32  # rotary tables stay fp32
    logits = model(torch.tensor([[1, 2, 3]]), torch.arange(3).expand(3, 1, 3))
    assert torch.isfinite(logits).all()


def test_one_random_init(tiny_ckpt):
    """Tiny checkpoints hold exactly `build_model`'s weights (one initialisation, drawn in the key order of the
    model built on the meta device)."""
    built = build_model(TINY_CONFIGS["default"], device="cpu", dtype=torch.float32, seed=0).state_dict()
    loaded = load_model(tiny_ckpt, dtype=torch.float32).state_dict()
    assert list(built) == list(loaded)
    for k in built:
        assert torch.equal(built[k], loaded[k]), k


@pytest.mark.parametrize("variant,case", [("default", "image"), ("variant", "variant"), ("moe", "moe")])
def test_tiny_checkpoint_bytes_match_the_committed_goldens(tmp_path, variant, case):
    """The golden cases' models were written by `build_tiny_checkpoint`; rebuilding gives the same bytes."""
    golden = Path(__file__).parents[1] / "reference" / "golden" / case / "model" / "model.safetensors"
    out = build_tiny_checkpoint(tmp_path / variant, variant, dtype=torch.bfloat16)
    assert (out / "model.safetensors").read_bytes() == golden.read_bytes()

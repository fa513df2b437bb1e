"""Attention without a dense mask: every plan against the reference dense mask, left padding against unpadded
rows, chunked prefill against one-shot prefill, length-aware decode against the dense step, fused projections
against separate ones, and bounded memory for a long prompt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qwen3vl_eval.model.attention import attend, dense_plan, left_padding, plan_attention
from qwen3vl_eval.model.generate import decode_step, generate, prefill
from qwen3vl_eval.model.kv_cache import allocate_caches
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.rope import rope_index
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.model.weights import load_model

GOLDEN = Path(__file__).parents[1] / "reference" / "golden"


def _real(mask: torch.Tensor, first: int, S: int) -> torch.Tensor:
    """[B, S] True where the query at slot first+s is a real token."""
    return torch.nn.functional.pad(mask.bool(), (0, first + S - mask.shape[1]), value=True)[:, first:first + S]


@pytest.mark.parametrize("heads", [(4, 2), (6, 1), (2, 2)])
@pytest.mark.parametrize("first,S", [(0, 7), (5, 3), (9, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_plans_equal_dense_reference(heads: tuple[int, int], first: int, S: int, padded: bool) -> None:
    """causal / rows / prefix (with and without a mask, GQA folded for one query) == the dense mask over all
    S_max slots, on every real query."""
    torch.manual_seed(0)
    H, H_kv = heads
    B, D, S_max = 3, 8, 16
    T = max(first, 6) if first else S  # prompt slots the padding mask covers
    mask = torch.ones(B, T, dtype=torch.long)
    if padded:
        mask[0, :3] = 0
        mask[2, :1] = 0
    q = torch.randn(B, H, S, D)
    cache_k, cache_v = torch.randn(2, B, H_kv, S_max, D).unbind(0)
    k, v = cache_k[:, :, first:first + S], cache_v[:, :, first:first + S]
    plan = plan_attention(mask, S, first, q.device)
    assert plan.kind == ("prefix" if first else ("rows" if padded else "causal"))
    ours = attend(q, k, v, (cache_k, cache_v), plan, scale=D**-0.5)
    ref = attend(q, k, v, (cache_k, cache_v), dense_plan(mask, torch.arange(first, first + S), S_max),
                 scale=D**-0.5)
    real = _real(mask, first, S)[:, None, :, None].expand_as(ref)
    torch.testing.assert_close(ours[real], ref[real], atol=1e-6, rtol=1e-5)


def test_left_padding_detects_non_left_layouts() -> None:
    assert left_padding(None) == () and left_padding(torch.ones(2, 4)) == ()
    assert left_padding(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])) == (2, 0)
    assert left_padding(torch.tensor([[1, 0, 1, 1]])) is None  # a hole: only a mask describes it
    plan = plan_attention(torch.tensor([[1, 0, 1, 1]]), 4, 0, torch.device("cpu"))
    assert plan.kind == "prefix" and plan.mask is not None and plan.kv_len == 4


@pytest.fixture(scope="module")
def batch2() -> tuple[Qwen3VL, dict]:
    g = load_file(str(GOLDEN / "batch2_images" / "golden.safetensors"))
    return load_model(GOLDEN / "batch2_images" / "model", device="cpu", dtype=torch.float32), g


def _prefill(model: Qwen3VL, g: dict, chunk: int | None, rows: slice = slice(None)):
    ids, mask = g["input.input_ids"][rows], g["input.attention_mask"][rows]
    cache = allocate_caches(model.config.text, ids.shape[0], ids.shape[1] + 4, dtype=torch.float32, device="cpu")
    logits, _ = prefill(model, ids, mask, cache, pixel_values=g["input.pixel_values"],
                        image_grid_thw=g["input.image_grid_thw"], chunk=chunk)
    return logits, cache


def test_left_padded_batch_equals_unpadded_rows(batch2) -> None:
    """Row 0 is left-padded by 11 slots: its logits equal those of its real tokens run alone, unpadded."""
    model, g = batch2
    both, _ = _prefill(model, g, None)
    pad = int((g["input.attention_mask"][0] == 0).sum())
    assert pad == 11
    grid = g["input.image_grid_thw"]
    n0 = int(grid[0].prod())
    alone = {"input.input_ids": g["input.input_ids"][:1, pad:], "input.attention_mask": torch.ones(1, 31 - pad),
             "input.pixel_values": g["input.pixel_values"][:n0], "input.image_grid_thw": grid[:1]}
    one, _ = _prefill(model, alone, None)
    torch.testing.assert_close(both[0], one[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [4, 7, 16])
def test_chunked_prefill_equals_one_shot(batch2, chunk: int) -> None:
    """Chunks cut through the padding and the image rows (DeepStack re-indexed per chunk): same logits and the
    same keys/values in every real cache slot."""
    model, g = batch2
    whole, c_whole = _prefill(model, g, None)
    parts, c_parts = _prefill(model, g, chunk)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-5)
    real = g["input.attention_mask"].bool()
    for a, b in zip(c_whole, c_parts):
        for x, y in ((a.k_cache, b.k_cache), (a.v_cache, b.v_cache)):
            torch.testing.assert_close(y[:, :, :31].transpose(1, 2)[real], x[:, :, :31].transpose(1, 2)[real],
                                       atol=1e-5, rtol=1e-5)


def test_chunked_capture_equals_one_shot(batch2) -> None:
    """The golden intermediates (text.layers.*, text.norm) come out whole when the decoder runs in chunks."""
    model, g = batch2
    ids, mask = g["input.input_ids"], g["input.attention_mask"]
    pos, _ = rope_index(ids, g["input.image_grid_thw"], None, mask, model.config)
    caps = []
    for chunk in (None, 8):
        cap: dict = {}
        cache = allocate_caches(model.config.text, 2, 31, dtype=torch.float32, device="cpu")
        model(ids, pos, attention_mask=mask, cache=cache, input_pos=torch.arange(31), first=0, chunk=chunk,
              pixel_values=g["input.pixel_values"], image_grid_thw=g["input.image_grid_thw"], capture=cap)
        caps.append(cap)
    real = mask.bool()
    assert caps[0].keys() == caps[1].keys()
    for key in (k for k in caps[0] if k.startswith("text.")):
        torch.testing.assert_close(caps[1][key][real], caps[0][key][real], atol=1e-5, rtol=1e-5)


def _dense_step(model, tokens, input_pos, rope_deltas, attention_mask, cache):
    """The reference decode step: all S_max slots behind the dense mask (what a CUDA graph replays)."""
    from qwen3vl_eval.model.rope import decode_position_ids

    return model(tokens[:, None], decode_position_ids(input_pos, rope_deltas), attention_mask=attention_mask,
                 cache=cache, input_pos=input_pos, last_only=True, first=None)[:, -1]


def test_length_aware_decode_equals_dense_step(batch2) -> None:
    model, g = batch2
    ids, mask = g["input.input_ids"], g["input.attention_mask"]
    kw = dict(pixel_values=g["input.pixel_values"], image_grid_thw=g["input.image_grid_thw"])
    want = g["generate.greedy"].tolist()
    params = GenerationParams(max_new_tokens=len(want[0]), ignore_eos=True)
    logits = []

    def spy(step):
        def fn(*args):
            out = step(*args)
            logits.append(out)
            return out
        return fn

    fast = generate(model, ids, mask, params, step_fn=spy(decode_step), **kw)
    ref = generate(model, ids, mask, params, step_fn=spy(_dense_step), **kw)
    assert [o.token_ids for o in fast] == [o.token_ids for o in ref] == want
    half = len(logits) // 2
    for a, b in zip(logits[:half], logits[half:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_projections_equal_separate(batch2) -> None:
    """Fused q/k/v and gate/up keep the checkpoint's names and values, and the same outputs; moving the model
    (here to float64 and back) fuses the moved weights again."""
    model, g = batch2
    with torch.device("meta"):
        plain = Qwen3VL(model.config)
    plain.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    plain.eval()
    attn, mlp = model.model.language_model.layers[0].self_attn, model.model.language_model.layers[0].mlp
    assert attn.qkv is not None and mlp.gate_up is not None
    assert plain.model.language_model.layers[0].self_attn.qkv is None
    assert attn.q_proj.weight.data_ptr() == attn.qkv.weight.data_ptr()  # a view: no second copy
    assert set(plain.state_dict()) == set(model.state_dict())
    ids, mask = g["input.input_ids"], g["input.attention_mask"]
    pos, _ = rope_index(ids, g["input.image_grid_thw"], None, mask, model.config)
    kw = dict(attention_mask=mask, pixel_values=g["input.pixel_values"], image_grid_thw=g["input.image_grid_thw"])
    want = plain(ids, pos, **kw)
    torch.testing.assert_close(model(ids, pos, **kw), want, atol=1e-5, rtol=1e-5)
    model.to(torch.float64).to(torch.float32)
    assert attn.q_proj.weight.data_ptr() == attn.qkv.weight.data_ptr()
    torch.testing.assert_close(model(ids, pos, **kw), want, atol=1e-5, rtol=1e-5)


_LONG = """
import resource, sys, torch
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.model.generate import prefill
from qwen3vl_eval.model.kv_cache import allocate_caches
from qwen3vl_eval.model.weights import build_model
L, chunk = int(sys.argv[1]), int(sys.argv[2])
cfg = TINY_CONFIGS["default"]
model = build_model(cfg, dtype=torch.float32)
def run(n):
    ids = torch.randint(0, 4000, (1, n))
    mask = torch.ones_like(ids)
    mask[0, 0] = 0  # one padded slot: later chunks need the padding mask
    cache = allocate_caches(cfg.text, 1, n + 1, dtype=torch.float32, device="cpu")
    return prefill(model, ids, mask, cache, chunk=chunk)[0]
run(64)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = run(L)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, bool(torch.isfinite(out).all()))
"""


def test_long_prompt_prefill_memory_is_bounded(tmp_path: Path) -> None:
    """An 8k-token padded prompt, prefilled in chunks of 1,024: peak RSS grows by less than half of what one
    dense [L, L] mask takes once SDPA turns it into floats (256 MiB; the dense reference path grew by 350 MiB
    here, about 77 MiB with chunks, growing linearly with L)."""
    L = 8192
    script = tmp_path / "long.py"
    script.write_text(_LONG)
    res = subprocess.run([sys.executable, str(script), str(L), "1024"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    grown_mb, finite = res.stdout.split()
    assert finite == "True"
    assert float(grown_mb) < 128, json.dumps({"peak_rss_growth_mib": grown_mb})


@pytest.mark.parametrize("chunk", [None, 4, 9])
@pytest.mark.parametrize("case", ["batch2_images", "text_only", "moe"])
def test_last_only_prefill_equals_full_forward(case: str, chunk: int | None) -> None:
    """Prefill computes the last layer's outputs for the last position only: its logits equal the full
    forward's last position (and transformers' golden logits there), padded or not, chunked or not."""
    g = load_file(str(GOLDEN / case / "golden.safetensors"))
    model = load_model(GOLDEN / case / "model", device="cpu", dtype=torch.float32)
    ids, mask = g["input.input_ids"], g.get("input.attention_mask")
    kw = {k: g[f"input.{k}"] for k in ("pixel_values", "image_grid_thw") if f"input.{k}" in g}
    pos, _ = rope_index(ids, kw.get("image_grid_thw"), None, mask, model.config)
    full = model(ids, pos, attention_mask=mask, **kw)[:, -1]
    cache = allocate_caches(model.config.text, ids.shape[0], ids.shape[1] + 2, dtype=torch.float32, device="cpu")
    last, _ = prefill(model, ids, mask, cache, chunk=chunk, **kw)
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, g["logits"][:, -1], atol=1e-4, rtol=1e-4)

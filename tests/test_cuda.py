"""CUDA checks, run by benchmarks/gpu_check.sh on a GPU machine (deselected on CPU with -m "not cuda")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.cuda_graph import CudaGraphDecoder
from qwen3vl_eval.model.generate import generate
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.model.weights import build_model, load_model

pytestmark = pytest.mark.cuda
GOLDEN = sorted(p for p in (Path(__file__).parents[1] / "reference" / "golden").iterdir() if p.is_dir())


def _inputs(case: Path, device: str) -> dict:
    g = load_file(str(case / "golden.safetensors"), device=device)
    return g


@pytest.mark.parametrize("case", GOLDEN, ids=[p.name for p in GOLDEN])
def test_cuda_float32_greedy_equals_golden(case: Path) -> None:
    g = _inputs(case, "cuda")
    model = load_model(case / "model", device="cuda", dtype=torch.float32)
    want = g["generate.greedy"]
    params = GenerationParams(max_new_tokens=want.shape[1], ignore_eos=True)
    outs = generate(model, g["input.input_ids"], g.get("input.attention_mask"), params,
                    pixel_values=g.get("input.pixel_values"), image_grid_thw=g.get("input.image_grid_thw"),
                    pixel_values_videos=g.get("input.pixel_values_videos"),
                    video_grid_thw=g.get("input.video_grid_thw"), step_fn=CudaGraphDecoder(model))
    assert [o.token_ids for o in outs] == want.tolist()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_graph_decode_equals_eager(dtype: torch.dtype) -> None:
    """The graph replays the reference decode step: same tokens as the eager loop, batch of 3 with padding."""
    case = next(p for p in GOLDEN if p.name == "batch2_images")
    g = _inputs(case, "cuda")
    model = load_model(case / "model", device="cuda", dtype=dtype)
    params = GenerationParams(max_new_tokens=24, ignore_eos=True)
    kw = dict(pixel_values=g["input.pixel_values"].to(dtype), image_grid_thw=g["input.image_grid_thw"])
    eager = generate(model, g["input.input_ids"], g["input.attention_mask"], params, **kw)
    dec = CudaGraphDecoder(model)
    fast = generate(model, g["input.input_ids"], g["input.attention_mask"], params, step_fn=dec, **kw)
    again = generate(model, g["input.input_ids"], g["input.attention_mask"], params, step_fn=dec, **kw)
    assert [o.token_ids for o in fast] == [o.token_ids for o in eager] == [o.token_ids for o in again]
    assert dec.captures == 1  # the second request reused the graph and its caches


def test_preset_2b_builds_and_decodes_on_cuda() -> None:
    model = build_model(Qwen3VLConfig.from_name("2B"), device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 1000, (2, 64), device="cuda")
    params = GenerationParams(max_new_tokens=8, ignore_eos=True)
    eager = generate(model, ids, None, params)
    fast = generate(model, ids, None, params, step_fn=CudaGraphDecoder(model))
    assert [o.token_ids for o in fast] == [o.token_ids for o in eager]


def test_compiled_graph_decode_equals_golden_float32() -> None:
    """The inductor-fused step (torch.compile) inside the graph keeps fp32 greedy tokens equal to transformers'."""
    case = next(p for p in GOLDEN if p.name == "text_only")
    g = _inputs(case, "cuda")
    model = load_model(case / "model", device="cuda", dtype=torch.float32)
    want = g["generate.greedy"]
    params = GenerationParams(max_new_tokens=want.shape[1], ignore_eos=True)
    outs = generate(model, g["input.input_ids"], g["input.attention_mask"], params,
                    step_fn=CudaGraphDecoder(model, compile=True))
    assert [o.token_ids for o in outs] == want.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("first,S", [(0, 33), (40, 17), (40, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_cuda_attention_plans_equal_dense(dtype: torch.dtype, first: int, S: int, padded: bool) -> None:
    """Each mask-free plan (flash causal, per-row causal, lower-right causal bias, folded GQA decode, expanded
    GQA under a mask) equals the dense-mask reference on CUDA."""
    from qwen3vl_eval.model.attention import attend, dense_plan, plan_attention

    torch.manual_seed(0)
    B, H, H_kv, D, S_max = 3, 8, 2, 64, 128
    T = max(first, 20) if first else S
    mask = torch.ones(B, T, dtype=torch.long, device="cuda")
    if padded:
        mask[0, :5] = 0
        mask[2, :1] = 0
    q = torch.randn(B, H, S, D, device="cuda", dtype=dtype)
    ck, cv = torch.randn(2, B, H_kv, S_max, D, device="cuda", dtype=dtype).unbind(0)
    k, v = ck[:, :, first:first + S], cv[:, :, first:first + S]
    ours = attend(q, k, v, (ck, cv), plan_attention(mask, S, first, q.device), scale=D**-0.5)
    ref = attend(q, k, v, (ck, cv), dense_plan(mask, torch.arange(first, first + S, device="cuda"), S_max),
                 scale=D**-0.5)
    real = torch.nn.functional.pad(mask.bool(), (0, first + S - T), value=True)[:, first:first + S]
    real = real[:, None, :, None].expand_as(ref)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(ours[real].float(), ref[real].float(), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_chunked_prefill_equals_one_shot(dtype: torch.dtype) -> None:
    """Chunked prefill (chunks through padding and image rows) == one pass, on CUDA."""
    from qwen3vl_eval.model.generate import prefill
    from qwen3vl_eval.model.kv_cache import allocate_caches

    case = next(p for p in GOLDEN if p.name == "batch2_images")
    g = _inputs(case, "cuda")
    model = load_model(case / "model", device="cuda", dtype=dtype)
    outs = []
    for chunk in (None, 7):
        cache = allocate_caches(model.config.text, 2, 40, dtype=dtype, device="cuda")
        outs.append(prefill(model, g["input.input_ids"], g["input.attention_mask"], cache,
                            pixel_values=g["input.pixel_values"].to(dtype), image_grid_thw=g["input.image_grid_thw"],
                            chunk=chunk)[0].float())
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(outs[1], outs[0], **tol)


def test_cuda_vision_tables_on_device_equal_cpu() -> None:
    """Grid tables built on the GPU (position taps, rotary cos/sin) equal the CPU-built ones."""
    case = next(p for p in GOLDEN if p.name == "image_video")
    cpu = load_model(case / "model", device="cpu", dtype=torch.float32).model["visual"]
    gpu = load_model(case / "model", device="cuda", dtype=torch.float32).model["visual"]
    grid = torch.tensor([[1, 8, 12], [4, 4, 6]])
    a, b = cpu.grid_tables(grid), gpu.grid_tables(grid)
    assert b[1].is_cuda and b[3].is_cuda
    assert torch.equal(a[1], b[1].cpu())
    for x, y in zip(a[2:], b[2:]):
        torch.testing.assert_close(y.cpu(), x, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("case", ["batch2_images", "moe"])
def test_cuda_last_only_prefill_equals_full_forward(case: str) -> None:
    """Prefill's last layer computes only the last position's output: equal to the full forward's, on CUDA."""
    from qwen3vl_eval.model.generate import prefill
    from qwen3vl_eval.model.kv_cache import allocate_caches
    from qwen3vl_eval.model.rope import rope_index

    path = next(p for p in GOLDEN if p.name == case)
    g = _inputs(path, "cuda")
    model = load_model(path / "model", device="cuda", dtype=torch.float32)
    ids, mask = g["input.input_ids"], g.get("input.attention_mask")
    kw = {k: g[f"input.{k}"] for k in ("pixel_values", "image_grid_thw") if f"input.{k}" in g}
    pos, _ = rope_index(ids, kw.get("image_grid_thw"), None, mask, model.config)
    full = model(ids, pos, attention_mask=mask, **kw)[:, -1]
    cache = allocate_caches(model.config.text, ids.shape[0], ids.shape[1] + 2, dtype=torch.float32, device="cuda")
    last, _ = prefill(model, ids, mask, cache, **kw)
    torch.testing.assert_close(last, full, atol=1e-4, rtol=1e-4)

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

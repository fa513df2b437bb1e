"""MoE: router maths, every dispatch path against a naive per-expert loop, the released weight layout and its
errors, the mixed dense/MoE layer pattern, and the published parameter counts of the MoE presets."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import copy_tree
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode

from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.errors import CheckpointError
from qwen3vl_eval.model import moe
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.moe import (
    SparseMoeBlock,
    choose_impl,
    expert_layout_error,
    grouped_mm_supported,
    moe_experts,
    route,
)
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.text import MLP
from qwen3vl_eval.model.weights import load_model

PATHS = ["gather", "padded", "grouped"]
COMBINES = ["index_add", "bmm"]


def naive(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
          down: torch.Tensor) -> torch.Tensor:
    """The reference's loop: for each expert, its tokens, down(silu(gate) * up) times the routing weight."""
    out = torch.zeros_like(x)
    I = down.shape[1]
    for e in range(gate_up.shape[0]):
        t, k = torch.where(experts == e)
        if t.numel():
            h = x[t] @ gate_up[e]  # [n, 2I]
            out.index_add_(0, t, (F.silu(h[:, :I]) * h[:, I:]) @ down[e] * weights[t, k, None])
    return out


def uneven(T: int, K: int, E: int, seed: int, unused: tuple[int, ...] = (1, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert ids [T, K] (distinct per token) with skewed loads and some experts never chosen, weights [T, K]."""
    g = torch.Generator().manual_seed(seed)
    prior = torch.tensor([8.0 if e == 0 else 0.0 if e in unused else 1.0 + e % 3 for e in range(E)])
    experts = torch.stack([torch.multinomial(prior, K, replacement=False, generator=g) for _ in range(T)])
    weights = torch.rand(T, K, generator=g)
    return experts, weights / weights.sum(-1, keepdim=True)


def _weights(E: int, H: int, I: int, seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return ((torch.randn(E, H, 2 * I, generator=g) / math.sqrt(H)).to(dtype),
            (torch.randn(E, I, H, generator=g) / math.sqrt(I)).to(dtype))


def _skip_unsupported(path: str, x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> None:
    if path == "grouped" and not grouped_mm_supported(x, gate_up, down):
        pytest.skip(f"no grouped_mm kernel for {x.device} {x.dtype} in torch {torch.__version__}")


# ------------------------------------------------------------------------------------------------ router
def test_router_hand_checked():
    probs = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.3, 0.2, 0.05, 0.45]])
    w, e = route(probs.log(), top_k=2)  # softmax(log p) = p
    assert e.tolist() == [[1, 3], [3, 0]]
    torch.testing.assert_close(w, torch.tensor([[0.4 / 0.7, 0.3 / 0.7], [0.45 / 0.75, 0.3 / 0.75]]))
    w, _ = route(probs.log(), top_k=2, norm_topk_prob=False)
    torch.testing.assert_close(w, torch.tensor([[0.4, 0.3], [0.45, 0.3]]))
    # bf16 logits: softmax and renormalisation in fp32 over all experts, then cast to bf16
    logits = torch.tensor([[3.0, 2.96875, -1.0, 0.5, 2.9375]], dtype=torch.bfloat16)
    w, e = route(logits, top_k=3)
    p = torch.softmax(logits.float(), -1)
    top = p[0, [0, 1, 4]]
    assert w.dtype == torch.bfloat16 and e.tolist() == [[0, 1, 4]]
    assert torch.equal(w, (top / top.sum()).to(torch.bfloat16)[None])


# ------------------------------------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("combine", COMBINES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", [1, 3, 37])
def test_dispatch_paths_match_naive_loop(path: str, combine: str, T: int):
    E, K, H, I = 8, 3, 32, 12
    gate_up, down = _weights(E, H, I)
    x = torch.randn(T, H, generator=torch.Generator().manual_seed(T))
    experts, weights = uneven(T, K, E, seed=T)
    _skip_unsupported(path, x, gate_up, down)
    if T > 3:
        loads = torch.bincount(experts.flatten(), minlength=E)
        assert loads[1] == loads[4] == 0 and loads.max() > 2 * loads[loads > 0].min()  # empty and uneven experts
    ours = moe_experts(x, experts, weights, gate_up, down, impl=path, combine=combine)
    torch.testing.assert_close(ours, naive(x, experts, weights, gate_up, down), atol=1e-6, rtol=1e-6)


def test_auto_path_and_unknown_path():
    E, H, I = 8, 32, 12
    gate_up, down = _weights(E, H, I)
    x = torch.randn(5, H)
    experts, weights = uneven(5, 2, E, seed=0)
    torch.testing.assert_close(moe_experts(x, experts, weights, gate_up, down),
                               naive(x, experts, weights, gate_up, down), atol=1e-6, rtol=1e-6)
    assert choose_impl(x[:8], gate_up, down) == "gather"  # the CPU takes the bmm paths
    assert choose_impl(torch.randn(9, H), gate_up, down) == "padded"
    odd_up, odd_down = _weights(E, H, 5)  # 5 fp32 columns: rows not 16-byte aligned, no grouped_mm
    assert choose_impl(x[:8], odd_up, odd_down) == "gather"
    assert choose_impl(torch.randn(9, H), odd_up, odd_down) == "padded"
    with pytest.raises(ValueError, match="unknown MoE dispatch"):
        moe_experts(x, experts, weights, gate_up, down, impl="loop")


@pytest.mark.parametrize("path", PATHS)
def test_decode_never_reads_inactive_experts(path: str):
    """Batch-1 decode: the weights of experts nobody chose are NaN and the output stays finite."""
    E, H, I = 8, 32, 12
    gate_up, down = _weights(E, H, I)
    x = torch.randn(1, H)
    experts, weights = torch.tensor([[5, 2]]), torch.tensor([[0.7, 0.3]])
    _skip_unsupported(path, x, gate_up, down)
    ref = naive(x, experts, weights, gate_up, down)
    inactive = torch.tensor([e for e in range(E) if e not in (2, 5)])
    gate_up[inactive], down[inactive] = float("nan"), float("nan")
    ours = moe_experts(x, experts, weights, gate_up, down, impl=path)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


class _Sizes(TorchDispatchMode):
    """Records the largest tensor any op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("path,T", [("grouped", 1), ("grouped", 40), ("gather", 1)])
def test_no_copy_of_the_expert_weights(path: str, T: int):
    """The released layout is used as is: no op makes a tensor as large as a layer's gate_up weights (a transpose,
    a contiguous copy or a full gather would)."""
    E, K, H, I = 8, 2, 32, 12
    gate_up, down = _weights(E, H, I)
    x = torch.randn(T, H)
    experts, weights = uneven(T, K, E, seed=1)
    _skip_unsupported(path, x, gate_up, down)
    with _Sizes() as sizes:
        moe_experts(x, experts, weights, gate_up, down, impl=path)
    assert sizes.largest < gate_up.numel() // 2


@pytest.mark.parametrize("impl", ["auto", *PATHS])
def test_block_matches_naive_for_prefill_and_decode(impl: str):
    cfg = TINY_CONFIGS["moe"].text
    torch.manual_seed(0)
    block = SparseMoeBlock(cfg)
    for p in block.parameters():
        p.data.normal_(0, 0.2)
    block.experts.impl = impl
    for T in (1, 2, 40):
        x = torch.randn(1, T, cfg.hidden_size)
        _skip_unsupported(impl, x[0], block.experts.gate_up_proj, block.experts.down_proj)
        w, e = route(block.gate(x[0]), cfg.num_experts_per_tok)
        ref = naive(x[0], e, w, block.experts.gate_up_proj, block.experts.down_proj)
        torch.testing.assert_close(block(x)[0], ref, atol=1e-6, rtol=1e-6)


def test_bf16_paths_agree():
    E, K, H, I = 8, 2, 64, 16
    gate_up, down = _weights(E, H, I, dtype=torch.bfloat16)
    x = torch.randn(24, H).bfloat16()
    experts, weights = uneven(24, K, E, seed=3)
    weights = weights.bfloat16()
    ref = naive(x.float(), experts, weights.float(), gate_up.float(), down.float())
    for path in PATHS:
        if path == "grouped" and not grouped_mm_supported(x, gate_up, down):
            continue
        out = moe_experts(x, experts, weights, gate_up, down, impl=path)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


# ------------------------------------------------------------------------------------------------ layers
def test_mixed_dense_and_moe_layers():
    moe_cfg = TINY_CONFIGS["moe"]
    cfg = replace(moe_cfg, text=replace(moe_cfg.text, num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=(3,)))
    assert [cfg.text.is_moe_layer(i) for i in range(6)] == [False, True, False, False, False, True]
    with torch.device("meta"):
        model = Qwen3VL(cfg)
    kinds = [type(layer.mlp) for layer in model.model.language_model.layers]
    assert kinds == [MLP, SparseMoeBlock, MLP, MLP, MLP, SparseMoeBlock]
    assert model.model.language_model.layers[0].mlp.gate_proj.weight.shape == (cfg.text.intermediate_size, 64)


# ------------------------------------------------------------------------------------------------ layout
def test_loads_released_layout_as_is(tiny_moe_ckpt):
    model = load_model(tiny_moe_ckpt, dtype=torch.float32)
    sd = load_file(tiny_moe_ckpt / "model.safetensors")
    experts = model.model.language_model.layers[0].mlp.experts
    key = "model.language_model.layers.0.mlp.experts."
    assert experts.gate_up_proj.shape == (8, 64, 48) and experts.down_proj.shape == (8, 24, 64)
    assert torch.equal(experts.gate_up_proj, sd[key + "gate_up_proj"])
    assert torch.equal(experts.down_proj, sd[key + "down_proj"])
    assert experts.gate_up_proj.is_contiguous() and experts.down_proj.is_contiguous()


@pytest.mark.parametrize("proj", ["gate_up_proj", "down_proj"])
def test_transposed_experts_one_clear_error(tmp_path, tiny_moe_ckpt, proj: str):
    ckpt = copy_tree(tiny_moe_ckpt, tmp_path / "transposed")
    sd = load_file(ckpt / "model.safetensors")
    for k in [k for k in sd if k.endswith("mlp.experts." + proj)]:  # every layer, as a bad conversion would
        sd[k] = sd[k].transpose(1, 2).contiguous()
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_model(ckpt)
    msg = str(e.value)
    found, expected = ("(8, 48, 64)", "(8, 64, 48)") if proj == "gate_up_proj" else ("(8, 64, 24)", "(8, 24, 64)")
    assert f"mlp.experts.{proj}" in msg and found in msg and expected in msg
    assert "transposed" in msg and "[E, H, 2I]" in msg and "\n" not in msg and "more" not in msg


def test_per_expert_keys_one_clear_error(tmp_path, tiny_moe_ckpt):
    ckpt = copy_tree(tiny_moe_ckpt, tmp_path / "per_expert")
    sd = load_file(ckpt / "model.safetensors")
    for layer in range(3):
        b = f"model.language_model.layers.{layer}.mlp.experts."
        gate_up, down = sd.pop(b + "gate_up_proj"), sd.pop(b + "down_proj")
        for e in range(8):
            sd[f"{b}{e}.gate_proj.weight"] = gate_up[e, :, :24].T.contiguous()
            sd[f"{b}{e}.up_proj.weight"] = gate_up[e, :, 24:].T.contiguous()
            sd[f"{b}{e}.down_proj.weight"] = down[e].T.contiguous()
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_model(ckpt)
    msg = str(e.value)
    assert "per-expert weight" in msg and ".mlp.experts." in msg and "(8, 64, 48)" in msg and "(8, 24, 64)" in msg
    assert "\n" not in msg and "more" not in msg


def test_layout_error_messages_and_ambiguity():
    t = TINY_CONFIGS["moe"].text  # E 8, H 64, I 24
    key = "model.language_model.layers.2.mlp.experts.gate_up_proj"
    assert expert_layout_error(key, (8, 64, 48), t) is None
    assert expert_layout_error("model.language_model.layers.2.mlp.gate.weight", (8, 64), t) is None
    assert "does not produce" in expert_layout_error(key, (8, 64, 40), t)
    square = replace(t, moe_intermediate_size=32)  # H == 2I: gate_up's two layouts share the shape (8, 64, 64)
    assert expert_layout_error(key, (8, 64, 64), square) is None
    down = expert_layout_error(key.replace("gate_up_proj", "down_proj"), (8, 64, 32), square)
    assert "transposed" in down and "(8, 32, 64)" in down  # ... so the pair is told apart by down_proj


# ------------------------------------------------------------------------------------------------ presets
def _counts(name: str) -> tuple[float, float, dict[str, tuple[int, ...]]]:
    """(total, active) parameter counts of a preset, from a 2-layer meta-device model scaled to all layers."""
    cfg = Qwen3VLConfig.from_name(name)
    t = cfg.text
    small = replace(cfg, text=replace(t, num_hidden_layers=2))
    with torch.device("meta"):
        model = Qwen3VL(small)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    layer = sum(math.prod(s) for k, s in shapes.items() if ".layers.0." in k)
    rest = sum(math.prod(s) for k, s in shapes.items() if ".language_model.layers." not in k)
    experts = sum(math.prod(s) for k, s in shapes.items() if ".layers.0.mlp.experts." in k)
    total = rest + t.num_hidden_layers * layer
    active = total - t.num_hidden_layers * experts * (t.num_experts - t.num_experts_per_tok) / t.num_experts
    return total, active, shapes


@pytest.mark.parametrize("name,total,active", [("30B-A3B", 31.07e9, 3.9e9), ("235B-A22B", 235.7e9, 22.8e9)])
def test_preset_parameter_counts(name: str, total: float, active: float):
    ours_total, ours_active, shapes = _counts(name)
    assert abs(ours_total / total - 1) < 0.01, ours_total
    assert abs(ours_active / active - 1) < 0.01, ours_active


def test_30b_a3b_shapes_are_the_released_ones():
    *_, shapes = _counts("30B-A3B")
    b = "model.language_model.layers.0."
    assert shapes[b + "mlp.gate.weight"] == (128, 2048)
    assert shapes[b + "mlp.experts.gate_up_proj"] == (128, 2048, 1536)
    assert shapes[b + "mlp.experts.down_proj"] == (128, 768, 2048)
    assert shapes[b + "self_attn.q_proj.weight"] == (4096, 2048)
    assert shapes[b + "self_attn.k_proj.weight"] == shapes[b + "self_attn.v_proj.weight"] == (512, 2048)
    assert shapes[b + "self_attn.o_proj.weight"] == (2048, 4096)
    assert "lm_head.weight" in shapes


# ------------------------------------------------------------------------------------------------ CUDA
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("T", [1, 4, 300])
def test_cuda_paths_match_naive(dtype: torch.dtype, T: int):
    E, K, H, I = 128, 8, 256, 96
    gate_up, down = (w.to("cuda", dtype) for w in _weights(E, H, I))
    experts, weights = uneven(T, K, E, seed=T, unused=(1, 4, 77))
    x = torch.randn(T, H).to("cuda", dtype)
    experts, weights = experts.cuda(), weights.to("cuda", dtype)
    ref = naive(x.float(), experts, weights.float(), gate_up.float(), down.float())
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    for path in ["auto", *PATHS]:
        if path == "grouped" and not grouped_mm_supported(x, gate_up, down):
            continue
        out = moe_experts(x, experts, weights, gate_up, down, impl=path)
        torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol, msg=f"{path} {dtype} T={T}")
    if dtype == torch.bfloat16:
        assert moe._GROUPED_CHECKED.get((str(x.device), dtype)) is not False, "grouped_mm failed its check"


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("T", [1, 32])
def test_cuda_graph_capture_of_decode_dispatch(dtype: torch.dtype, T: int):
    """The auto path at decode sizes has no host sync: it captures into a CUDA graph and replays correctly."""
    cfg = replace(TINY_CONFIGS["moe"].text, hidden_size=256, num_experts=64, num_experts_per_tok=8,
                  moe_intermediate_size=96)
    block = SparseMoeBlock(cfg).to("cuda", dtype)
    for p in block.parameters():
        p.data.normal_(0, 0.05)
    x = torch.randn(T, 1, 256, device="cuda", dtype=dtype)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(2):
            block(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        out = block(x)
    for seed in range(3):
        x.copy_(torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x))
        graph.replay()
        with torch.inference_mode():
            want = block(x)
        torch.testing.assert_close(out, want, atol=1e-5 if dtype == torch.float32 else 2e-2, rtol=1e-3)


"""Sparse mixture-of-experts MLP of the Qwen3-VL MoE decoder (model_type `qwen3_vl_moe`).

Reference: transformers 5.23 `models/qwen3_vl_moe/modeling_qwen3_vl_moe.py` (`Qwen3VLMoeTextSparseMoeBlock`);
research/qwen3vl_spec.md section 3. Router: logits = x W^T, softmax in fp32 over all E experts, top-K, renormalised
to sum 1 (`norm_topk_prob`), cast back to the logits dtype. No shared expert, no capacity limit.

Expert weights stay in the released checkpoint layout (transformers transposes them at load; we never do, and no
matmul here transposes or copies a whole weight): gate_up_proj [E, H, 2I] with gate in the first I columns and up
in the last I, down_proj [E, I, H]; expert e computes down_e(silu(x @ gate_e) * (x @ up_e)).

Dispatch (no Python loop over experts anywhere). The T*K (token, expert) assignments are sorted by expert (stable,
so each token's assignments stay in ascending expert order, as the reference's per-expert loop visits them),
the tokens are gathered in that order, then one of three paths computes the A = T*K expert outputs:

* `grouped`: `grouped_mm` (torch.nn.functional.grouped_mm / torch._grouped_mm) over the sorted rows with
  per-expert end offsets (searchsorted, no host sync). The `auto` choice on CUDA bf16 on sm80+ (torch >= 2.9;
  sm90 before), checked once per device and dtype against the gather path. Reads only the experts that received
  rows; capturable in a CUDA graph. (torch >= 2.9 also has a CPU kernel: exact, selectable, not chosen by `auto`.)
* `gather`: the selected experts' weights are gathered ([A, H, 2I] and [A, I, H]) and applied with one bmm each.
  Used for few assignments (A <= E, e.g. decode) when grouped_mm is unavailable: it touches only the K selected
  experts per token and has static shapes, so it is capturable.
* `padded`: rows are scattered into an [E, C, H] buffer (C = the largest expert load; T, a static bound, while a
  CUDA graph is being captured) and two bmm run over all experts. The prefill fallback.

The weighted sum over each token's K outputs is an `index_add_` in sorted (expert) order on the CPU, which is the
reference's accumulation order exactly, and a deterministic [T, 1, K] x [T, K, H] bmm on other devices (the
CUDA index_add_ uses atomics).

Legend: T tokens, H hidden size, E experts, K experts per token, I expert width (moe_intermediate_size),
A = T*K assignments, C padded rows per expert.
"""

from __future__ import annotations

import re
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.model.config import TextConfig

IMPLS = ("auto", "grouped", "gather", "padded")


class SparseMoeBlock(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = config.norm_topk_prob
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)  # the router, weight [E, H]
        self.experts = Experts(config)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [T, H]
        weights, experts = route(self.gate(x), self.top_k, self.norm_topk_prob)  # [T, K] each
        return self.experts(x, experts, weights).view(shape)


def route(logits: Tensor, top_k: int, norm_topk_prob: bool = True) -> tuple[Tensor, Tensor]:
    """Router logits [T, E] -> (weights [T, K] in the logits dtype, expert ids [T, K] int64, by falling weight)."""
    probs = F.softmax(logits, dim=-1, dtype=torch.float32)  # [T, E] fp32 over all experts
    weights, experts = torch.topk(probs, top_k, dim=-1)  # [T, K]
    if norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(logits.dtype), experts


class Experts(nn.Module):
    """The E experts of one layer as two fused tensors in the checkpoint layout. `impl` picks the dispatch path
    (`auto` or one of the paths above, for tests and benchmarks)."""

    def __init__(self, config: TextConfig, impl: str = "auto") -> None:
        super().__init__()
        E, H, I = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts = E
        self.impl = impl
        self.gate_up_proj = nn.Parameter(torch.empty(E, H, 2 * I))  # [E, H, 2I]: gate | up
        self.down_proj = nn.Parameter(torch.empty(E, I, H))  # [E, I, H]

    def forward(self, x: Tensor, experts: Tensor, weights: Tensor) -> Tensor:
        """x [T, H], experts and weights [T, K] -> sum_k weights[:, k] * expert_k(x) [T, H]."""
        return moe_experts(x, experts, weights, self.gate_up_proj, self.down_proj, impl=self.impl)


def moe_experts(x: Tensor, experts: Tensor, weights: Tensor, gate_up: Tensor, down: Tensor, *, impl: str = "auto",
                combine: str | None = None) -> Tensor:
    """x [T, H], experts [T, K] ids, weights [T, K], gate_up [E, H, 2I], down [E, I, H] -> [T, H].

    `combine`: `index_add` (the reference's order; default on CPU) or `bmm` (deterministic; default elsewhere)."""
    T, K = experts.shape
    expert, order = torch.sort(experts.reshape(-1), stable=True)  # [A] sorted expert ids, [A] flat (t, k) index
    token = order // K  # [A] token of each sorted assignment
    xs = x.index_select(0, token)  # [A, H]
    path = choose_impl(xs, gate_up, down) if impl == "auto" else impl
    if path == "grouped":
        y = _grouped(xs, expert, gate_up, down)
        if y is None:  # grouped_mm failed its one-time check on this device/dtype
            path = choose_impl(xs, gate_up, down)
    if path == "gather":
        y = _gather(xs, expert, gate_up, down)
    elif path == "padded":
        y = _padded(xs, expert, gate_up, down, max_load=T)
    elif path != "grouped":
        raise ValueError(f"unknown MoE dispatch {impl!r} (known: {', '.join(IMPLS)})")
    # y [A, H] in sorted order
    if (combine or ("index_add" if x.device.type == "cpu" else "bmm")) == "index_add":
        y = y * weights.reshape(-1).index_select(0, order)[:, None]  # [A, H]
        return torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))
    ys = torch.empty_like(y).index_copy_(0, order, y)  # [A, H] back in (t, k) order
    return torch.bmm(weights.reshape(T, 1, K).to(y.dtype), ys.view(T, K, -1)).view(T, -1).to(x.dtype)


def _swiglu(gate_up: Tensor) -> Tensor:
    gate, up = gate_up.chunk(2, dim=-1)  # [..., I] each
    return F.silu(gate) * up


# ------------------------------------------------------------------------------------------------ the paths
def _gather(xs: Tensor, expert: Tensor, gate_up: Tensor, down: Tensor) -> Tensor:
    """Per assignment, its expert's weights gathered: [A, 1, H] x [A, H, 2I], then [A, 1, I] x [A, I, H]."""
    h = _swiglu(torch.bmm(xs[:, None], gate_up.index_select(0, expert)))  # [A, 1, I]
    return torch.bmm(h, down.index_select(0, expert)).squeeze(1)  # [A, H]


def _padded(xs: Tensor, expert: Tensor, gate_up: Tensor, down: Tensor, *, max_load: int) -> Tensor:
    """Rows scattered into [E, C, H] (each expert's rows at the front of its slab, zeros after), two bmm over all E.
    C is the largest load (one host sync), or `max_load` (a token picks an expert at most once) while capturing."""
    E, A = gate_up.shape[0], xs.shape[0]
    ends = torch.searchsorted(expert, torch.arange(E, device=expert.device), right=True)  # [E] cumulative loads
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])  # [E]
    slot = torch.arange(A, device=xs.device) - starts.index_select(0, expert)  # [A] row within its expert's slab
    C = max_load if _capturing(xs) else int((ends - starts).max())
    buf = xs.new_zeros(E, C, xs.shape[1])  # [E, C, H]
    buf[expert, slot] = xs
    out = torch.bmm(_swiglu(torch.bmm(buf, gate_up)), down)  # [E, C, 2I] -> [E, C, I] -> [E, C, H]
    return out[expert, slot]  # [A, H]


def _grouped(xs: Tensor, expert: Tensor, gate_up: Tensor, down: Tensor) -> Tensor | None:
    """grouped_mm over the expert-sorted rows; None if this device/dtype failed the one-time check."""
    E = gate_up.shape[0]
    offs = torch.searchsorted(expert, torch.arange(E, device=expert.device), right=True, out_int32=True)  # [E]
    key = (str(xs.device), xs.dtype)
    if key not in _GROUPED_CHECKED and not _capturing(xs):
        return _checked_grouped(key, xs, expert, offs, gate_up, down)
    return _grouped_mm(_swiglu(_grouped_mm(xs, gate_up, offs)), down, offs)  # [A, 2I] -> [A, I] -> [A, H]


# (device, dtype) -> whether grouped_mm gave the right answer there; filled on first use, outside graph capture.
_GROUPED_CHECKED: dict[tuple[str, torch.dtype], bool] = {}


def _checked_grouped(key: tuple[str, torch.dtype], xs: Tensor, expert: Tensor, offs: Tensor, gate_up: Tensor,
                     down: Tensor) -> Tensor | None:
    """Run grouped_mm once under a guard and compare a few rows with the gather path (one host sync, once per
    device and dtype): a kernel that raises or disagrees is never used again, with a warning."""
    try:
        y = _grouped_mm(_swiglu(_grouped_mm(xs, gate_up, offs)), down, offs)  # [A, H]
        n = min(8, xs.shape[0])
        ref = _gather(xs[:n], expert[:n], gate_up, down)  # [n, H]
        tol = 1e-4 if xs.dtype == torch.float32 else 3e-2
        ok = bool(((y[:n].float() - ref.float()).abs().max() <= tol * (1 + ref.float().abs().max())).item())
        reason = "its result differs from the gather path"
    except (RuntimeError, NotImplementedError) as e:
        y, ok, reason = None, False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    _GROUPED_CHECKED[key] = ok
    if not ok:
        warnings.warn(f"MoE: grouped_mm is unusable on {key[0]} {key[1]} ({reason}); using the bmm paths",
                      RuntimeWarning, stacklevel=3)
        return None
    return y


def _grouped_mm(a: Tensor, b: Tensor, offs: Tensor) -> Tensor:
    """a [A, k] rows sorted by group, b [E, k, n], offs [E] int32 group ends -> [A, n]."""
    fn = getattr(F, "grouped_mm", None) or torch._grouped_mm  # public name from torch 2.10
    return fn(a, b, offs=offs)


def _capturing(t: Tensor) -> bool:
    return t.device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _torch_version() -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", torch.__version__).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def grouped_mm_supported(x: Tensor, gate_up: Tensor, down: Tensor) -> bool:
    """Whether grouped_mm has a kernel for these operands: CUDA bf16 on sm80+ (torch >= 2.9; sm90 before) or the
    CPU kernel of torch >= 2.9 (fp32/bf16), with 16-byte aligned rows and pointers, and no failed check."""
    if not hasattr(torch, "_grouped_mm") or x.dtype != gate_up.dtype or _GROUPED_CHECKED.get(
            (str(x.device), x.dtype)) is False:
        return False
    version = _torch_version()
    if x.device.type == "cuda":
        if x.dtype != torch.bfloat16:
            return False
        cap = torch.cuda.get_device_capability(x.device)
        if not (cap >= (8, 0) if version >= (2, 9) else cap[0] == 9):
            return False
    elif x.device.type == "cpu":
        if version < (2, 9) or x.dtype not in (torch.float32, torch.bfloat16):
            return False
    else:
        return False
    size = x.element_size()
    return (all(t.is_contiguous() and t.data_ptr() % 16 == 0 for t in (gate_up, down))
            and all(d * size % 16 == 0 for d in (gate_up.shape[1], gate_up.shape[2], down.shape[1])))


def choose_impl(xs: Tensor, gate_up: Tensor, down: Tensor) -> str:
    """The `auto` path for A = xs.shape[0] assignments: grouped on CUDA when supported, else gather for A <= E (the
    gathered weights are at most one copy of the layer's experts), else padded. The CPU grouped_mm kernel of torch
    2.13 is exact but its speed is erratic (some offset patterns take ~25 ms per group at toy sizes), so the CPU
    takes the bmm paths."""
    if xs.device.type == "cuda" and grouped_mm_supported(xs, gate_up, down):
        return "grouped"
    return "gather" if xs.shape[0] <= gate_up.shape[0] else "padded"


# ------------------------------------------------------------------------------------------------ layout check
_PER_EXPERT = re.compile(r"^(?P<layer>.*\.mlp\.experts)\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$")
_FUSED = re.compile(r"\.mlp\.experts\.(?P<proj>gate_up_proj|down_proj)$")


def expert_layout_error(key: str, shape: tuple[int, ...], config: TextConfig) -> str | None:
    """A one-line message when checkpoint tensor `key` of `shape` is an expert weight in a layout other than the
    released fused one; None when `key` is not an expert weight or has the released shape.

    Recognised: per-expert keys `...mlp.experts.{e}.{gate,up,down}_proj.weight` (older conversions) and the
    transformers in-memory layout (gate_up [E, 2I, H], down [E, H, I]). With H == 2I the two gate_up layouts have
    the same shape and with H == I the two down layouts do, so from shapes alone a transposed checkpoint is caught
    by the other tensor of the pair (I > 0 makes both coincidences impossible at once); a gate_up transposed on its
    own when H == 2I cannot be detected."""
    E, H, I = config.num_experts, config.hidden_size, config.moe_intermediate_size
    released = f"fused per layer: mlp.experts.gate_up_proj [E, H, 2I] = ({E}, {H}, {2 * I}) with gate then up, " \
               f"mlp.experts.down_proj [E, I, H] = ({E}, {I}, {H})"
    m = _PER_EXPERT.match(key)
    if m:
        return (f"{key}: per-expert weight of shape {tuple(shape)}; this tool reads the released MoE layout, "
                f"{released} (re-save the checkpoint with transformers >= 5 save_pretrained to fuse the experts)")
    m = _FUSED.search(key)
    if not m:
        return None
    proj = m["proj"]
    expected = (E, H, 2 * I) if proj == "gate_up_proj" else (E, I, H)
    if tuple(shape) == expected:
        return None
    transposed = (E, 2 * I, H) if proj == "gate_up_proj" else (E, H, I)
    ambiguous = (" (note: with hidden_size == 2*moe_intermediate_size the gate_up layouts share one shape)"
                 if H == 2 * I else "")
    if tuple(shape) == transposed:
        what = "the transformers in-memory (transposed) layout"
        fix = "; transformers >= 5 save_pretrained writes the released layout back"
    else:
        what, fix = "a layout this config does not produce", ""
    return (f"{key}: shape {tuple(shape)} is {what}; expected the released layout {expected}, {released}"
            f"{fix}{ambiguous}")

"""Parity against golden cases (CONTRACTS section 2): run our model on a case's inputs, produce every tensor the
golden holds, and compare key by key.

Comparison: tensors with (B, L) leading dims (text.*, logits) or (3, B, L) (text.position_ids) are compared
only where attention_mask == 1; integer tensors must be equal; float tensors pass when
max_abs_err <= atol + rtol * max|golden|. `generate.greedy` is decoded here with the static KV cache (plain
argmax, no early stop) and must match exactly in float32; in bfloat16/float16 the report counts the matching
leading tokens and does not fail on them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from qwen3vl_eval.device import dtype_name
from qwen3vl_eval.errors import GoldenError
from qwen3vl_eval.model.kv_cache import allocate_caches
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.rope import decode_position_ids, rope_index
from qwen3vl_eval.model.weights import load_model

GOLDEN_FORMAT = "qwen3vl-golden/1"
# (atol, rtol) by run dtype. float32 is the exact path (observed errors ~1e-7 of max|golden|); half precisions
# are loose: the tiny random models round every activation, so they check wiring, not digits.
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-4),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float16: (1e-2, 1e-2),
}
INPUT_KEYS = {  # key: (dtype kind, rank)
    "input.input_ids": ("int", 2), "input.attention_mask": ("int", 2),
    "input.pixel_values": ("float", 2), "input.image_grid_thw": ("int", 2),
    "input.pixel_values_videos": ("float", 2), "input.video_grid_thw": ("int", 2),
}


@dataclass
class Row:
    key: str
    shape: list[int]
    max_abs_err: float
    max_rel_err: float
    cosine: float
    passed: bool
    note: str = ""


@dataclass
class CaseResult:
    case: str
    device: str
    dtype: str
    atol: float
    rtol: float
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_json(self) -> list[dict]:
        """One dict per row; NaN (a key not produced, a shape mismatch) becomes null."""
        return [{"case": self.case, "device": self.device, "dtype": self.dtype, "atol": self.atol,
                 "rtol": self.rtol, **{k: None if isinstance(v, float) and math.isnan(v) else v
                                       for k, v in asdict(r).items()}} for r in self.rows]


@dataclass
class Case:
    path: Path
    inputs: dict[str, Tensor]
    golden: dict[str, Tensor]
    metadata: dict[str, str]


def load_case(path: str | Path) -> Case:
    """Read and validate a golden case folder; GoldenError (one line) when it is missing or malformed."""
    path = Path(path)
    file = path / "golden.safetensors"
    if not path.is_dir():
        raise GoldenError(f"{path}: no such golden case folder")
    if not file.is_file():
        raise GoldenError(f"{path}: missing golden.safetensors")
    if not (path / "model" / "config.json").is_file():
        raise GoldenError(f"{path}: missing model/ checkpoint folder (model/config.json)")
    try:
        with safe_open(file, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise GoldenError(f"{file}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != GOLDEN_FORMAT:
        raise GoldenError(f"{file}: metadata format is {metadata.get('format')!r}, expected {GOLDEN_FORMAT!r}")
    if "input.input_ids" not in tensors:
        raise GoldenError(f"{file}: missing input.input_ids")
    for key, (kind, rank) in INPUT_KEYS.items():
        t = tensors.get(key)
        if t is None:
            continue
        ok_kind = t.dtype in (torch.int64, torch.int32) if kind == "int" else t.dtype.is_floating_point
        if not ok_kind or t.dim() != rank:
            raise GoldenError(f"{file}: {key} must be a {rank}-D {'int64' if kind == 'int' else 'float'} tensor, "
                              f"got {t.dtype} of shape {tuple(t.shape)}")
    ids = tensors["input.input_ids"]
    mask = tensors.get("input.attention_mask")
    if mask is not None and mask.shape != ids.shape:
        raise GoldenError(f"{file}: input.attention_mask shape {tuple(mask.shape)} != input.input_ids shape "
                          f"{tuple(ids.shape)}")
    for media in ("", "_videos"):
        pixels, grid = f"input.pixel_values{media}", f"input.{'video' if media else 'image'}_grid_thw"
        if (pixels in tensors) != (grid in tensors):
            raise GoldenError(f"{file}: {pixels} and {grid} must come together")
        if grid in tensors and tensors[grid].shape[1] != 3:
            raise GoldenError(f"{file}: {grid} must have shape (n, 3), got {tuple(tensors[grid].shape)}")
    inputs = {k.removeprefix("input."): v for k, v in tensors.items() if k.startswith("input.")}
    golden = {k: v for k, v in tensors.items() if not k.startswith("input.")}
    return Case(path=path, inputs=inputs, golden=golden, metadata=metadata)


def run_case(case: Case, *, device: torch.device, dtype: torch.dtype, atol: float | None = None,
             rtol: float | None = None, dump: Path | None = None) -> CaseResult:
    """Run one validated case and compare every golden key."""
    default_atol, default_rtol = DEFAULT_TOLERANCES[dtype]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    model = load_model(case.path / "model", device=device, dtype=dtype)
    produced = produce(model, case, device=device, dtype=dtype)
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in produced.items()},
                  str(dump / f"{case.path.resolve().name}.safetensors"),
                  metadata={"format": GOLDEN_FORMAT, "source": "qwen3vl-eval", "dtype": dtype_name(dtype),
                            "device": str(device)})
    mask = case.inputs.get("attention_mask", torch.ones_like(case.inputs["input_ids"])).bool()
    result = CaseResult(case=str(case.path), device=str(device), dtype=dtype_name(dtype), atol=atol, rtol=rtol)
    for key, gold in case.golden.items():
        if key not in produced:
            result.rows.append(Row(key, list(gold.shape), math.nan, math.nan, math.nan, False, "not produced"))
            continue
        result.rows.append(compare(key, produced[key].detach().cpu(), gold, mask, atol, rtol,
                                   exact_greedy=dtype == torch.float32))
    return result


def produce(model: Qwen3VL, case: Case, *, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """Every tensor of CONTRACTS section 2 that the case's golden asks for, from our implementation."""
    x = {k: v.to(device=device, dtype=torch.long if not v.dtype.is_floating_point else dtype)
         for k, v in case.inputs.items()}
    position_ids, rope_deltas = rope_index(x["input_ids"], x.get("image_grid_thw"), x.get("video_grid_thw"),
                                           x.get("attention_mask"), model.config)
    capture: dict[str, Tensor] = {}
    with torch.inference_mode():
        logits = model(x["input_ids"], position_ids, attention_mask=x.get("attention_mask"),
                       pixel_values=x.get("pixel_values"), image_grid_thw=x.get("image_grid_thw"),
                       pixel_values_videos=x.get("pixel_values_videos"), video_grid_thw=x.get("video_grid_thw"),
                       capture=capture)
    produced = {**capture, "text.position_ids": position_ids, "logits": logits}
    if "generate.greedy" in case.golden:
        produced["generate.greedy"] = greedy(model, x, position_ids, rope_deltas,
                                             case.golden["generate.greedy"].shape[1])
    return produced


@torch.inference_mode()
def greedy(model: Qwen3VL, x: dict[str, Tensor], position_ids: Tensor, rope_deltas: Tensor, n: int) -> Tensor:
    """n tokens of argmax decoding with the static KV cache and no early stop -> [B, n]."""
    ids = x["input_ids"]
    B, L = ids.shape
    dtype = model.model.language_model.embed_tokens.weight.dtype
    cache = allocate_caches(model.config.text, B, L + n, dtype=dtype, device=ids.device)
    logits = model(ids, position_ids, attention_mask=x.get("attention_mask"), cache=cache,
                   input_pos=torch.arange(L, device=ids.device), pixel_values=x.get("pixel_values"),
                   image_grid_thw=x.get("image_grid_thw"), pixel_values_videos=x.get("pixel_values_videos"),
                   video_grid_thw=x.get("video_grid_thw"), last_only=True)
    tokens = [logits[:, -1].argmax(-1)]  # [B]
    for i in range(n - 1):
        slot = torch.tensor([L + i], device=ids.device)
        logits = model(tokens[-1][:, None], decode_position_ids(slot, rope_deltas),
                       attention_mask=x.get("attention_mask"), cache=cache, input_pos=slot, last_only=True)
        tokens.append(logits[:, -1].argmax(-1))
    return torch.stack(tokens, dim=1)  # [B, n]


def compare(key: str, ours: Tensor, gold: Tensor, mask: Tensor, atol: float, rtol: float,
            exact_greedy: bool = True) -> Row:
    """One report row: masked where the key has (B, L) or (3, B, L) leading dims."""
    shape = list(gold.shape)
    if tuple(ours.shape) != tuple(gold.shape):
        return Row(key, shape, math.nan, math.nan, math.nan, False, f"shape {list(ours.shape)} != golden {shape}")
    B, L = mask.shape
    if key.startswith("text.") or key == "logits":
        if gold.shape[:2] == (B, L):
            ours, gold = ours[mask], gold[mask]
        elif gold.shape[:3] == (3, B, L):
            ours, gold = ours[:, mask], gold[:, mask]
    if key == "generate.greedy":
        same = (ours == gold).cumprod(dim=1).sum(dim=1)  # matching leading tokens per row
        all_same = bool((ours == gold).all())
        note = f"{int(same.min())}/{gold.shape[1]} leading tokens match (worst row)"
        return Row(key, shape, float((ours != gold).sum()), 0.0 if all_same else 1.0, 1.0 if all_same else 0.0,
                   all_same or not exact_greedy, note)
    if not gold.dtype.is_floating_point:
        diff = (ours.long() - gold.long()).abs()
        err = float(diff.max()) if diff.numel() else 0.0
        return Row(key, shape, err, err, 1.0 if err == 0 else math.nan, err == 0, "exact")
    g, o = gold.double(), ours.double()
    if g.numel() == 0:
        return Row(key, shape, 0.0, 0.0, 1.0, True, "empty")
    err = float((o - g).abs().max())
    scale = float(g.abs().max())
    norm = float(o.norm() * g.norm())
    cosine = float((o * g).sum() / norm) if norm > 0 else (1.0 if err == 0 else 0.0)
    rel = err / scale if scale > 0 else err
    ok = math.isfinite(err) and err <= atol + rtol * scale
    return Row(key, shape, err, rel, cosine, ok)


def write_json(results: list[CaseResult], path: Path) -> None:
    rows = [row for r in results for row in r.to_json()]
    path.write_text(json.dumps(rows, indent=2) + "\n")

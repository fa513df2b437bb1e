"""Parity against golden cases (CONTRACTS section 2): run our model on a case's inputs, produce every tensor the
golden holds, and compare key by key.

Comparison: tensors with (B, L) leading dims (text.*, logits) or (3, B, L) (text.position_ids) are compared
only where attention_mask == 1; integer tensors must be equal; float tensors pass when
max_abs_err <= atol + rtol * max|golden|. `generate.greedy` is decoded here with the static KV cache (plain
argmax, no early stop) and must match exactly in float32; in bfloat16/float16 the report counts the matching
leading tokens and does not fail on them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from qwen3vl_eval.errors import GoldenError
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.generate import generate
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.rope import rope_index
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.model.weights import load_model
from qwen3vl_eval.runtime.device import dtype_name

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
    config = Qwen3VLConfig.from_file(path / "model" / "config.json")
    check_against_model(tensors, config, file)
    inputs = {k.removeprefix("input."): v for k, v in tensors.items() if k.startswith("input.")}
    golden = {k: v for k, v in tensors.items() if not k.startswith("input.")}
    return Case(path=path, inputs=inputs, golden=golden, metadata=metadata)


def _golden_key_spec(key: str, B: int, L: int, P: int, config: Qwen3VLConfig
                     ) -> tuple[str, tuple[int | None, ...]] | None:
    """(dtype kind, expected shape; None = any size) of an output key of CONTRACTS section 2 that this model
    produces; None for any other key (not checked here: the comparison reports it as not produced)."""
    D, Dv, V = config.text.hidden_size, config.vision.hidden_size, config.text.vocab_size
    merged = P // config.vision.spatial_merge_size ** 2
    indexed = re.fullmatch(r"(text\.layers|vision\.blocks|vision\.deepstack)\.(\d+)", key)
    if indexed:
        count = {"text.layers": config.text.num_hidden_layers, "vision.blocks": config.vision.depth,
                 "vision.deepstack": len(config.vision.deepstack_visual_indexes)}[indexed.group(1)]
        if int(indexed.group(2)) >= count:
            return None
        key = indexed.group(1)
    if key == "text.position_ids":
        return "int", (3, B, L)
    if key == "generate.greedy":
        return "int", (B, None)
    if key in ("text.embed", "text.norm", "text.layers"):
        return "float", (B, L, D)
    if key == "logits":
        return "float", (B, L, V)
    if key in ("vision.patch_embed", "vision.blocks"):
        return "float", (P, Dv)
    if key in ("vision.merger", "vision.deepstack"):
        return "float", (merged, config.vision.out_hidden_size)
    return None


def check_against_model(tensors: dict[str, Tensor], config: Qwen3VLConfig, file: Path) -> None:
    """GoldenError naming the key when a golden does not fit the case's own model: token ids outside the
    vocabulary, patch rows of another width, grids whose token counts differ from the placeholder tokens or
    the pixel rows, an empty batch, or an output key of the wrong dtype kind or shape."""
    ids = tensors["input.input_ids"]
    B, L = ids.shape
    if B == 0 or L == 0:
        raise GoldenError(f"{file}: input.input_ids is empty (shape {tuple(ids.shape)})")
    V = config.text.vocab_size
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= V:
        raise GoldenError(f"{file}: input.input_ids holds ids in [{lo}, {hi}], outside the model's vocabulary "
                          f"[0, {V})")
    mask = tensors.get("input.attention_mask")
    if mask is not None and not bool(((mask == 0) | (mask == 1)).all()):
        raise GoldenError(f"{file}: input.attention_mask must hold only 0 and 1")
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    vc = config.vision
    width = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2
    m2 = vc.spatial_merge_size ** 2
    rows = 0
    for media, token_id in (("image", config.image_token_id), ("video", config.video_token_id)):
        pixels = tensors.get(f"input.pixel_values{'_videos' if media == 'video' else ''}")
        grid_key = f"input.{media}_grid_thw"
        grid = tensors.get(grid_key)
        n_tokens = int(((ids == token_id) & real).sum())
        if grid is None:
            if n_tokens:
                raise GoldenError(f"{file}: input.input_ids has {n_tokens} {media} placeholder token(s) "
                                  f"({token_id}) but there is no {grid_key}")
            continue
        pixel_key = "input.pixel_values" + ("_videos" if media == "video" else "")
        if pixels.shape[1] != width:
            raise GoldenError(f"{file}: {pixel_key} rows are {pixels.shape[1]} wide; the model's patches are "
                              f"{width} (in_channels {vc.in_channels} x temporal_patch_size "
                              f"{vc.temporal_patch_size} x patch_size {vc.patch_size}^2)")
        g = grid.long()
        if bool((g <= 0).any()) or bool((g[:, 1:] % vc.spatial_merge_size != 0).any()):
            raise GoldenError(f"{file}: {grid_key} must hold positive (t, h, w) with h and w multiples of "
                              f"spatial_merge_size {vc.spatial_merge_size}")
        patches = int(g.prod(dim=1).sum())
        if patches != pixels.shape[0]:
            raise GoldenError(f"{file}: {grid_key} describes {patches} patches but {pixel_key} has "
                              f"{pixels.shape[0]} rows")
        if patches // m2 != n_tokens:
            raise GoldenError(f"{file}: {grid_key} needs {patches // m2} {media} placeholder tokens but "
                              f"input.input_ids has {n_tokens} ({token_id})")
        rows += patches
    for key, t in tensors.items():
        if key.startswith("input."):
            continue
        spec = _golden_key_spec(key, B, L, rows, config)
        if spec is None:
            continue
        kind, shape = spec
        ok_kind = t.dtype in (torch.int64, torch.int32) if kind == "int" else t.dtype.is_floating_point
        if not ok_kind:
            raise GoldenError(f"{file}: {key} must be {'an int64' if kind == 'int' else 'a float'} tensor, "
                              f"got {t.dtype}")
        if t.dim() != len(shape) or any(want is not None and got != want for got, want in zip(t.shape, shape)):
            shown = tuple("N" if d is None else d for d in shape)
            raise GoldenError(f"{file}: {key} must have shape {shown} for this case and model, "
                              f"got {tuple(t.shape)}")


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
    position_ids, _ = rope_index(x["input_ids"], x.get("image_grid_thw"), x.get("video_grid_thw"),
                                           x.get("attention_mask"), model.config)
    capture: dict[str, Tensor] = {}
    with torch.inference_mode():
        logits = model(x["input_ids"], position_ids, attention_mask=x.get("attention_mask"),
                       pixel_values=x.get("pixel_values"), image_grid_thw=x.get("image_grid_thw"),
                       pixel_values_videos=x.get("pixel_values_videos"), video_grid_thw=x.get("video_grid_thw"),
                       capture=capture)
    produced = {**capture, "text.position_ids": position_ids, "logits": logits}
    if "generate.greedy" in case.golden:
        produced["generate.greedy"] = greedy(model, x, case.golden["generate.greedy"].shape[1])
    return produced


@torch.inference_mode()
def greedy(model: Qwen3VL, x: dict[str, Tensor], n: int) -> Tensor:
    """n tokens of argmax decoding with the static KV cache and no early stop -> [B, n] (`generate.generate`)."""
    outs = generate(model, x["input_ids"], x.get("attention_mask"), GenerationParams(max_new_tokens=n, ignore_eos=True),
                    pixel_values=x.get("pixel_values"), image_grid_thw=x.get("image_grid_thw"),
                    pixel_values_videos=x.get("pixel_values_videos"), video_grid_thw=x.get("video_grid_thw"))
    return torch.tensor([o.token_ids for o in outs], device=x["input_ids"].device)  # [B, n]


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

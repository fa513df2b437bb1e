"""`HFBackend`: transformers' `Qwen3VLForConditionalGeneration` (or the MoE class) and `AutoProcessor` behind the
Engine's `chat` interface, as a baseline. Needs the `golden` extra (transformers, torchvision); imported lazily.

Media are loaded with this package's loaders and handed to transformers' processor, which resizes and patches
them itself: images as the decoded (3, H, W) uint8 tensors; videos as the frames this package samples (at the
file's resolution) with their `VideoMetadata` (fps, frame indices), so transformers computes the timestamps and
uses the transformers >= 5 video prompt layout (the native `--video-prompt transformers5`). Greedy replies match
the native engine's in float32; sampled ones differ (another random stream), and the presence penalty is applied
after transformers' own warpers rather than before them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from qwen3vl_eval.backends import GOLDEN_HINT
from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.backends.native import model_info
from qwen3vl_eval.checkpoints.hub import resolve_model
from qwen3vl_eval.errors import CheckpointError, InputError, ProcessorError
from qwen3vl_eval.jsonio import read_object
from qwen3vl_eval.model.generate import finish_row
from qwen3vl_eval.model.sampling import GenerationParams, find_stop
from qwen3vl_eval.processor.chat import split_reasoning
from qwen3vl_eval.processor.image import ImageSettings, decode_image
from qwen3vl_eval.processor.media import resolve_source
from qwen3vl_eval.processor.messages import MediaItem, as_batch, media_items, walk
from qwen3vl_eval.processor.video import VideoSettings, decode_clip
from qwen3vl_eval.runtime.device import resolve_device, resolve_dtype
from qwen3vl_eval.runtime.timing import Timings, free, synchronize


class HFBackend:
    """Replies from transformers' Qwen3-VL implementation, with the Engine's `chat` interface.

    Timings: `preprocess` is transformers' processor; `vision` the vision tower's forward passes (timed by
    hooks); `prefill` the rest of the first forward pass, up to the first token's logits; `decode` the later
    steps (timed from inside `generate` by a logits processor)."""

    def __init__(self, model: str | os.PathLike, *, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "auto", model_name: str | None = None) -> None:
        self._setup(resolve_model(model), model_name or str(model), device, dtype, seed=None)

    @classmethod
    def random(cls, folder: Path, *, name: str, device: str | torch.device = "auto",
               dtype: str | torch.dtype = "auto", seed: int = 0, model_kwargs: dict | None = None) -> HFBackend:
        """transformers' model with its own random initialisation for the config in `folder` (which holds the
        processor files), e.g. for `bench --preset`; `model_kwargs` go to the model class (e.g.
        `experts_implementation`)."""
        backend = cls.__new__(cls)
        backend._setup(folder, name, device, dtype, seed=seed, model_kwargs=model_kwargs)
        return backend

    def _setup(self, path: Path, name: str, device: str | torch.device, dtype: str | torch.dtype, *,
               seed: int | None, model_kwargs: dict | None = None) -> None:
        try:
            import transformers
            from transformers import AutoProcessor
        except ImportError:
            raise InputError(f"the hf backend {GOLDEN_HINT}") from None
        self.path, self.name = path, name
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        model_type = read_object(self.path / "config.json", error=CheckpointError).get("model_type")
        if model_type == "qwen3_vl_moe":
            from transformers import Qwen3VLMoeForConditionalGeneration as model_cls
        elif model_type == "qwen3_vl":
            from transformers import Qwen3VLForConditionalGeneration as model_cls
        else:
            raise InputError(f"{self.path / 'config.json'}: model_type {model_type!r} is not qwen3_vl or qwen3_vl_moe")
        self.processor = AutoProcessor.from_pretrained(self.path)
        self.processor.tokenizer.padding_side = "left"
        if seed is None:
            self.model = model_cls.from_pretrained(self.path, dtype=self.dtype).to(self.device).eval()
        else:
            torch.manual_seed(seed)
            with torch.device(self.device):
                self.model = model_cls._from_config(transformers.AutoConfig.from_pretrained(self.path),
                                                    dtype=self.dtype, **(model_kwargs or {})).eval()
        self.image_settings = ImageSettings.from_folder(self.path)
        self.video_settings = VideoSettings.from_folder(self.path)
        self.defaults = GenerationParams.from_generation_config(self.path / "generation_config.json")
        self.timings = Timings()
        self._vision_t0: float | None = None
        self._vision_s = 0.0
        visual = self.model.model.visual
        visual.register_forward_pre_hook(lambda *_: self._vision_clock(start=True))
        visual.register_forward_hook(lambda *_: self._vision_clock(start=False))
        self._info = {**model_info(self.name, self.path, self.device, self.dtype), "backend": "hf",
                      "video_prompt": "transformers5", "cuda_graph": False, "compile": False,
                      "attention": getattr(self.model.config, "_attn_implementation", None)}
        self._info["versions"] = {**self._info["versions"], "transformers": transformers.__version__}

    def info(self) -> dict[str, Any]:
        """What a results file records about the model and the software it ran on."""
        return self._info

    def close(self) -> None:
        """Drop the model and return its memory."""
        self.model = None
        free(self.device)

    def _vision_clock(self, *, start: bool) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        if start:
            self._vision_t0 = now
        elif self._vision_t0 is not None:
            self._vision_s += now - self._vision_t0
            self._vision_t0 = None

    def chat(self, conversations: list, params: GenerationParams | None = None, *,
             base_dir: str | os.PathLike | None = None, on_tokens=None) -> list[Reply]:
        """Replies to a batch of conversations (CONTRACTS section 4 messages). Greedy with 128 new tokens when
        `params` is None. Conversations whose media carry different per-item pixel/frame options run as separate
        processor calls (transformers takes those options per call)."""
        params = params or GenerationParams()
        if not params.eos_token_ids:
            params = replace(params, eos_token_ids=self.defaults.eos_token_ids)
        params.validate()
        batch, _ = as_batch(conversations)
        groups: dict[str, list[int]] = {}
        items = [media_items(conv, i) for i, conv in enumerate(batch)]
        for i, conv_items in enumerate(items):
            groups.setdefault(_options_key(conv_items, i), []).append(i)
        replies: list[Reply | None] = [None] * len(batch)
        for indices in groups.values():
            for i, reply in zip(indices, self._chat_group([batch[i] for i in indices], [items[i] for i in indices],
                                                          params, base_dir, on_tokens)):
                replies[i] = reply
        return [r for r in replies if r is not None]

    # -------------------------------------------------------------------------------------------- internals
    def _chat_group(self, batch: list[list[dict]], items: list[list[MediaItem]], params: GenerationParams,
                    base_dir: str | os.PathLike | None, on_tokens=None) -> list[Reply]:
        from transformers.video_utils import VideoMetadata

        t0 = time.perf_counter()
        prompts = [self.processor.apply_chat_template(_render_form(conv), tokenize=False, add_generation_prompt=True)
                   for conv in batch]
        images, videos, metadata = [], [], []
        image_opts: dict[str, Any] = {}
        video_opts: dict[str, Any] = {}
        pre_resized = False
        for conv_items in items:
            for item in conv_items:
                try:
                    source = resolve_source(item.value, base_dir)
                    if item.kind == "image":
                        images.append(decode_image(source))
                        image_opts = item.options
                        continue
                    if source.obj is not None:
                        raise ProcessorError("videos must be files, URLs or data URIs")
                    settings = self.video_settings.with_overrides(**item.options)
                    # per-frame budget keys (qwen-vl-utils' units): resized here, as qwen-vl-utils hands
                    # transformers resized frames; otherwise transformers resizes
                    clip = decode_clip(source, settings if settings.budget else replace(settings, do_resize=False))
                    pre_resized = pre_resized or settings.budget is not None
                except ProcessorError as e:
                    raise ProcessorError(f"{item.describe()}: {e}") from None
                video_opts = item.options
                fps = clip.native_fps or 24.0
                h, w = clip.frames.shape[-2:]
                videos.append(clip.frames)
                metadata.append(VideoMetadata(total_num_frames=clip.total_frames, fps=fps, width=w, height=h,
                                              duration=clip.total_frames / fps, frames_indices=clip.indices,
                                              video_backend="pyav"))
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["images"] = images
            kwargs["images_kwargs"] = {"size": _size(self.image_settings.with_overrides(
                min_pixels=image_opts.get("min_pixels"), max_pixels=image_opts.get("max_pixels")))}
        if videos:
            kwargs["videos"] = videos
            kwargs["video_metadata"] = metadata
            vs = self.video_settings.with_overrides(video_processor=video_opts.get("video_processor"))
            kwargs["videos_kwargs"] = {"do_sample_frames": False, "size": _size(vs)}
            if pre_resized:
                kwargs["videos_kwargs"]["do_resize"] = False
        inputs = self.processor(text=prompts, padding=True, return_tensors="pt", **kwargs)
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        inputs = with_mm_token_types(inputs, self.model.config.image_token_id, self.model.config.video_token_id)
        self.timings.preprocess += time.perf_counter() - t0
        outputs = self._generate(inputs, params, on_tokens)
        prompt_tokens = inputs["attention_mask"].sum(-1).tolist()
        self.timings.prompt_tokens += int(sum(prompt_tokens))
        replies = []
        for out, n in zip(outputs, prompt_tokens):
            reasoning, answer = split_reasoning(out.text or "")
            replies.append(Reply(out.text or "", out.token_ids, out.finish_reason, reasoning, answer, int(n)))
            self.timings.generated_tokens += len(out.token_ids)
        return replies

    def _generate(self, inputs: dict[str, torch.Tensor], params: GenerationParams, on_tokens=None) -> list:
        from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria

        tok = self.processor.tokenizer
        L = inputs["input_ids"].shape[1]
        device, clock = self.device, {"first": None}
        streamed = [0] * inputs["input_ids"].shape[0]

        class Clock(LogitsProcessor):
            """Called with each step's logits: the first call ends the prefill; streams the newest tokens."""

            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                if clock["first"] is None:
                    synchronize(device)
                    clock["first"] = time.perf_counter()
                elif on_tokens is not None:
                    for b, t in enumerate(input_ids[:, -1].tolist()):
                        on_tokens(b, [t])
                        streamed[b] += 1
                return scores

        def decode(ids: list[int]) -> str:
            return tok.decode(ids, skip_special_tokens=True)

        class PresencePenalty(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                seen = torch.zeros_like(scores, dtype=torch.bool)
                seen.scatter_(1, input_ids[:, L:], True)
                return scores - params.presence_penalty * seen.to(scores.dtype)

        class StopStrings(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
                hits = [find_stop(decode(row), params.stop) >= 0 for row in input_ids[:, L:].tolist()]
                return torch.tensor(hits, device=input_ids.device)

        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        sampling = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p,
                                             "top_k": params.top_k}
        config = GenerationConfig(do_sample=not params.greedy, max_new_tokens=params.max_new_tokens,
                                  eos_token_id=None if params.ignore_eos else list(params.eos_token_ids),
                                  pad_token_id=pad, repetition_penalty=params.repetition_penalty, **sampling)
        extra: dict[str, Any] = {"logits_processor": LogitsProcessorList(
            [PresencePenalty()] if params.presence_penalty else [])}
        extra["logits_processor"].insert(0, Clock())
        if params.stop:
            extra["stopping_criteria"] = [StopStrings()]
        if not params.greedy:
            torch.manual_seed(params.seed)
        synchronize(device)
        self._vision_s = 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            generated = self.model.generate(**inputs, generation_config=config, **extra)
        synchronize(device)
        t1 = time.perf_counter()
        first = clock["first"] if clock["first"] is not None else t1
        self.timings.vision += self._vision_s
        self.timings.prefill += first - t0 - self._vision_s
        self.timings.decode += t1 - first
        outputs = [finish_row(row, params, decode) for row in generated[:, L:].tolist()]
        if on_tokens is not None:
            for b, out in enumerate(outputs):
                if out.token_ids[streamed[b]:]:
                    on_tokens(b, out.token_ids[streamed[b]:])
        return outputs


def with_mm_token_types(inputs: dict[str, torch.Tensor], image_token_id: int, video_token_id: int
                        ) -> dict[str, torch.Tensor]:
    """`inputs` with `mm_token_type_ids` (0 text, 1 image pad, 2 video pad), which transformers >= 5 needs
    for multimodal positions whenever grids are passed; kept as is when the processor already returned it."""
    if "mm_token_type_ids" in inputs or not ({"image_grid_thw", "video_grid_thw"} & set(inputs)):
        return inputs
    ids = inputs["input_ids"]
    mm = (ids == image_token_id).long() + 2 * (ids == video_token_id).long()
    if "attention_mask" in inputs:
        mm = mm * (inputs["attention_mask"] != 0).long()
    return {**inputs, "mm_token_type_ids": mm}


def _size(settings: ImageSettings | VideoSettings) -> dict[str, int]:
    return {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}


def _options_key(items: list[MediaItem], index: int) -> str:
    """The per-item options of a conversation's media, which must agree within each kind."""
    per_kind: dict[str, str] = {}
    for item in items:
        key = json.dumps(item.options, sort_keys=True)
        if per_kind.setdefault(item.kind, key) != key:
            raise InputError(f"conversation {index}: the hf backend needs the same options on every {item.kind} of "
                             f"a conversation (transformers' processor takes them per call)")
    return json.dumps(per_kind, sort_keys=True)


def _render_form(conversation: list[dict]) -> list[dict]:
    """The conversation as the chat template needs it: media items reduced to their type."""
    return [{**message, "content": message.get("content") if items is None else
             [{"type": "text", "text": it.value} if it.kind == "text" else {"type": it.kind} for it in items]}
            for message, items in walk(conversation)]

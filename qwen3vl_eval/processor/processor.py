"""`Processor`: conversations in, model inputs out, matching transformers' Qwen3VLProcessor for the same
checkpoint: chat template, image and video processing, placeholder expansion, tokenisation, left padding."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from qwen3vl_eval.errors import CheckpointError, ProcessorError
from qwen3vl_eval.jsonio import read_object
from qwen3vl_eval.processor.batch import BatchInputs
from qwen3vl_eval.processor.chat import load_chat_template, render_chat
from qwen3vl_eval.processor.image import ImageFeatures, ImageSettings, decode_image, process_image
from qwen3vl_eval.processor.media import resolve_source
from qwen3vl_eval.processor.messages import Conversation, MediaItem, as_batch, media_items
from qwen3vl_eval.processor.tokenizer import Tokenizer
from qwen3vl_eval.processor.video import (
    VideoFeatures,
    VideoSettings,
    decode_clip,
    format_timestamp,
    process_clip,
)

VIDEO_PROMPTS = ("trained", "transformers5")
_DEFAULT_TOKENS = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
                   "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}


def _concat(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """Rows of all items; a single item is used as is (no copy)."""
    return None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts)


class Processor:
    """Chat template + tokenizer + image and video processing of one checkpoint."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str | None, image_settings: ImageSettings,
                 video_settings: VideoSettings, token_ids: dict[str, int]):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.image_settings = image_settings
        self.video_settings = video_settings
        self.token_ids = token_ids
        tok = {k: tokenizer.id_to_token(v) for k, v in token_ids.items()}
        self.image_token, self.video_token = tok["image_token_id"], tok["video_token_id"]
        self.vision_start, self.vision_end = tok["vision_start_token_id"], tok["vision_end_token_id"]

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Processor:
        """Load from a checkpoint folder (commands resolve Hub ids and tiny names to folders first)."""
        folder = Path(path)
        tokenizer = Tokenizer.from_pretrained(folder)
        config = read_object(folder / "config.json", error=CheckpointError)
        token_ids = {}
        for key, default in _DEFAULT_TOKENS.items():
            value = config.get(key, tokenizer.token_to_id(default))
            known = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            if not known or tokenizer.id_to_token(value) is None:
                raise CheckpointError(f"{folder / 'config.json'}: {key} missing or not in the tokenizer")
            token_ids[key] = int(value)
        return cls(tokenizer, load_chat_template(folder, tokenizer.config), ImageSettings.from_folder(folder),
                   VideoSettings.from_folder(folder), token_ids)

    # ------------------------------------------------------------------------------------------ text
    def render(self, conversation: Conversation, *, add_generation_prompt: bool = True,
               **template_kwargs: Any) -> str:
        """The chat template applied to one conversation (placeholders not expanded)."""
        if self.chat_template is None:
            raise CheckpointError("the checkpoint has no chat template (chat_template.json, "
                                  "chat_template.jinja or tokenizer_config.json)")
        return render_chat(self.chat_template, conversation, add_generation_prompt=add_generation_prompt,
                           special_tokens=self.tokenizer.special_tokens_map, **template_kwargs)

    @property
    def thinking(self) -> bool:
        """Whether the template's generation prompt opens a `<think>` block: a Thinking checkpoint, whose reply is
        reasoning, `</think>`, then the answer."""
        if self.chat_template is None:
            return False
        conv = [{"role": "user", "content": "x"}]
        prompt = self.render(conv)
        return "<think>" in prompt[len(self.render(conv, add_generation_prompt=False)):]

    # ------------------------------------------------------------------------------------------ media
    def process_image_item(self, item: MediaItem, base_dir: str | os.PathLike | None = None) -> ImageFeatures:
        """Load and process one image item."""
        try:
            settings = self.image_settings.with_overrides(**item.options)  # bad options before any file access
            source = resolve_source(item.value, base_dir)
            return process_image(decode_image(source), settings, source.sha256(), name=source.name)
        except ProcessorError as e:
            raise ProcessorError(f"{item.describe()}: {e}") from None

    def process_video_item(self, item: MediaItem, base_dir: str | os.PathLike | None = None) -> VideoFeatures:
        """Load, sample and process one video item."""
        try:
            settings = self.video_settings.with_overrides(**item.options)  # bad options before any file access
            source = resolve_source(item.value, base_dir)
            if source.obj is not None:
                raise ProcessorError("videos must be files, URLs or data URIs")
            return process_clip(decode_clip(source, settings), settings, source.sha256())
        except ProcessorError as e:
            raise ProcessorError(f"{item.describe()}: {e}") from None

    # ------------------------------------------------------------------------------------------ batch
    def __call__(self, conversations: Any, *, add_generation_prompt: bool = True,
                 video_prompt: str = "trained", base_dir: str | os.PathLike | None = None,
                 **template_kwargs: Any) -> BatchInputs:
        """Process one conversation or a list of them into left-padded model inputs.

        `video_prompt="trained"` writes each frame group as `<t seconds><|vision_start|>pads<|vision_end|>`
        in place of the template's vision triple; "transformers5" keeps the outer pair as transformers >= 5.
        Relative media paths resolve against `base_dir`. Extra keywords go to the chat template."""
        if video_prompt not in VIDEO_PROMPTS:
            raise ProcessorError(f"video_prompt must be one of {', '.join(VIDEO_PROMPTS)}, "
                                 f"got {video_prompt!r}")
        batch, _ = as_batch(conversations)
        items = [media_items(conv, i) for i, conv in enumerate(batch)]
        texts = [self.render(conv, add_generation_prompt=add_generation_prompt, **template_kwargs)
                 for conv in batch]
        images: list[ImageFeatures] = []
        videos: list[VideoFeatures] = []
        prompts = []
        for b, (text, conv_items) in enumerate(zip(texts, items, strict=True)):
            feats_img = [self.process_image_item(it, base_dir) for it in conv_items if it.kind == "image"]
            feats_vid = [self.process_video_item(it, base_dir) for it in conv_items if it.kind == "video"]
            prompts.append(self._expand(text, feats_img, feats_vid, video_prompt, b))
            images += feats_img
            videos += feats_vid
        return self._assemble(prompts, images, videos)

    def _expand(self, text: str, images: list[ImageFeatures], videos: list[VideoFeatures], video_prompt: str,
                index: int) -> str:
        """Replace each placeholder of the rendered text by its expansion, in order."""
        merge = self.image_settings.merge_size ** 2
        vmerge = self.video_settings.merge_size ** 2
        triple = self.vision_start + self.video_token + self.vision_end
        options = [re.escape(self.image_token), re.escape(self.video_token)]
        if video_prompt == "trained":
            options.insert(0, re.escape(triple))
        pattern = re.compile("|".join(options))
        it_img, it_vid = iter(images), iter(videos)
        counts = {"image": 0, "video": 0}

        def expand(match: re.Match) -> str:
            kind = "image" if match.group(0) == self.image_token else "video"
            counts[kind] += 1
            feat = next(it_img if kind == "image" else it_vid, None)
            if feat is None:
                return match.group(0)  # reported below with the counts
            if kind == "image":
                return self.image_token * (feat.grid_thw[0] * feat.grid_thw[1] * feat.grid_thw[2] // merge)
            per_group = self.video_token * (feat.grid_thw[1] * feat.grid_thw[2] // vmerge)
            return "".join(format_timestamp(ts) + self.vision_start + per_group + self.vision_end
                           for ts in feat.timestamps[: feat.grid_thw[0]])

        out = pattern.sub(expand, text)
        if counts["image"] != len(images) or counts["video"] != len(videos):
            raise ProcessorError(
                f"conversation {index}: the rendered prompt has {counts['image']} image and "
                f"{counts['video']} video placeholder(s) but the messages hold {len(images)} image(s) and "
                f"{len(videos)} video(s) (media outside user/tool turns, or placeholder tokens in the text?)")
        return out

    def _assemble(self, prompts: list[str], images: list[ImageFeatures], videos: list[VideoFeatures]
                  ) -> BatchInputs:
        ids = self.tokenizer.encode_batch(prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        length = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), length), pad, dtype=torch.int64)
        attention_mask = torch.zeros((len(ids), length), dtype=torch.int64)
        for b, row in enumerate(ids):
            if row:
                input_ids[b, length - len(row):] = torch.tensor(row, dtype=torch.int64)
                attention_mask[b, length - len(row):] = 1
        mm = torch.zeros_like(input_ids)
        mm[(input_ids == self.token_ids["image_token_id"]) & (attention_mask == 1)] = 1
        mm[(input_ids == self.token_ids["video_token_id"]) & (attention_mask == 1)] = 2
        want_img = sum(f.pixel_values.shape[0] for f in images) // self.image_settings.merge_size ** 2
        want_vid = sum(f.pixel_values.shape[0] for f in videos) // self.video_settings.merge_size ** 2
        if int((mm == 1).sum()) != want_img or int((mm == 2).sum()) != want_vid:
            raise ProcessorError("the tokenised prompt's image/video pad count does not match the processed "
                                 "media (a placeholder token merged with its neighbours?)")
        return BatchInputs(
            input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm, prompts=prompts,
            pixel_values=_concat([f.pixel_values for f in images]),
            image_grid_thw=torch.tensor([f.grid_thw for f in images], dtype=torch.int64) if images else None,
            pixel_values_videos=_concat([f.pixel_values for f in videos]),
            video_grid_thw=torch.tensor([f.grid_thw for f in videos], dtype=torch.int64) if videos else None,
            image_hashes=[f.content_hash for f in images], video_hashes=[f.content_hash for f in videos],
            video_timestamps=[f.timestamps for f in videos],
            video_frame_indices=[f.frame_indices for f in videos], video_fps=[f.native_fps for f in videos],
        )

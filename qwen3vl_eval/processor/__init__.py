"""The Qwen3-VL processor: chat template, tokenizer, image and video preprocessing (output identical to
transformers' Qwen3VLProcessor for the same checkpoint)."""

from qwen3vl_eval.processor.batch import BatchInputs
from qwen3vl_eval.processor.image import ImageSettings, smart_resize
from qwen3vl_eval.processor.processor import VIDEO_PROMPTS, Processor
from qwen3vl_eval.processor.tokenizer import Tokenizer
from qwen3vl_eval.processor.video import (
    VideoSettings,
    frame_group_timestamps,
    sample_indices,
    smart_resize_video,
)

__all__ = ["BatchInputs", "ImageSettings", "Processor", "Tokenizer", "VIDEO_PROMPTS", "VideoSettings",
           "frame_group_timestamps", "sample_indices", "smart_resize", "smart_resize_video"]

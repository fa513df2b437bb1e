"""`qwen3vl-eval preprocess`: apply a checkpoint's chat template, tokenizer and image/video processing to a
messages file; print the prompt and optionally write the `input.*` tensors (CONTRACTS sections 2-4)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.commands import handle_errors, read_messages, resolve_target
from qwen3vl_eval.commands import options as opt


def collapse_runs(text: str, tokens: list[str]) -> str:
    """Write runs of a repeated placeholder token as `<|image_pad|>*N` so prompts stay readable."""
    for tok in tokens:
        text = re.sub(f"(?:{re.escape(tok)}){{2,}}", lambda m, t=tok: f"{t}*{len(m.group(0)) // len(t)}", text)
    return text


@handle_errors
def preprocess(
    model: opt.Model,
    messages: Path = typer.Option(..., "--messages", help="JSON messages file: a conversation or a list of "
                                  "them; relative media paths resolve against the file's folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the input.* tensors to this .safetensors."),
    video_prompt: opt.VideoPrompt = "trained",
    full: bool = typer.Option(False, "--full", help="Print placeholder runs in full instead of TOKEN*N."),
) -> None:
    """Print the rendered, expanded prompt(s) and tensor shapes; write the tensors with --out."""
    from safetensors.torch import save_file

    from qwen3vl_eval.processor import Processor

    conversations = read_messages(messages)
    processor = Processor.from_pretrained(resolve_target(model).path)
    batch = processor(conversations, video_prompt=video_prompt, base_dir=messages.resolve().parent)
    pads = [processor.image_token, processor.video_token]
    for i, prompt in enumerate(batch.prompts):
        if len(batch.prompts) > 1:
            print(f"--- conversation {i}")
        print(prompt if full else collapse_runs(prompt, pads))
    tensors = batch.tensors()
    print("--- " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out),
                  metadata={"source": "qwen3vl-eval preprocess", "model": str(model), "video_prompt": video_prompt})
        print(f"wrote {out}")

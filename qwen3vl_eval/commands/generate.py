"""`qwen3vl-eval generate`: reply to the conversations of a messages file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from qwen3vl_eval.commands import handle_errors, read_messages, resolve_target
from qwen3vl_eval.commands import options as opt


@handle_errors
def main(
    model: opt.Model,
    messages: Path = typer.Option(..., "--messages", help="JSON: one conversation or a list of them (a batch)"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="tokens to generate at most"),
    temperature: opt.Temperature = None,
    top_p: opt.TopP = None,
    top_k: opt.TopK = None,
    repetition_penalty: opt.RepetitionPenalty = None,
    presence_penalty: opt.PresencePenalty = None,
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    stop: list[str] = typer.Option(None, "--stop", help="stop string (repeatable)"),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="generate exactly --max-new-tokens tokens"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per conversation"),
    video_prompt: opt.VideoPrompt = "trained",
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
) -> None:
    """Print the reply to each conversation (streamed for a single one), or JSON lines with --json."""
    from qwen3vl_eval.processor.messages import as_batch

    conversations = read_messages(messages)  # a bad file fails before torch is imported
    target = resolve_target(model, device, dtype)
    from qwen3vl_eval.backends.native import Engine

    engine = Engine(target.path, device=target.device, dtype=target.dtype, video_prompt=video_prompt,
                    model_name=target.name)
    params = engine.params(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                           repetition_penalty=repetition_penalty, presence_penalty=presence_penalty, seed=seed,
                           stop=tuple(stop) if stop else None, ignore_eos=ignore_eos)
    batch, was_batch = as_batch(conversations)  # one conversation, or a list of them
    single = not was_batch
    stream = None
    if single and not as_json and sys.stdout.isatty():
        tok = engine.processor.tokenizer
        shown: list[int] = []

        def stream(row: int, new_ids: list[int]) -> None:  # print the text as it grows
            before = tok.decode(shown)
            shown.extend(new_ids)
            sys.stdout.write(tok.decode(shown)[len(before):])
            sys.stdout.flush()

    replies = engine.chat(batch, params, base_dir=messages.parent, on_tokens=stream)
    for r in replies:
        if as_json:
            print(json.dumps({"text": r.text, "token_ids": r.token_ids, "finish_reason": r.finish_reason,
                              "reasoning": r.reasoning, "answer": r.answer, "prompt_tokens": r.prompt_tokens}))
        elif stream is not None:
            print()
        else:
            print(r.text)

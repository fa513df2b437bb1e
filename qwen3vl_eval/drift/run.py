"""The drift loop: each sample's conversation exactly as `run` builds it (`eval.runner.conversation`: the task's
prompt and media through the same Processor), the candidate's greedy reply with logprobs, then the reference
(`Engine.score`) teacher-forcing the candidate's tokens after our prompt in one forward. The reference's own
greedy reply is generated only for the samples the report shows that diverged (`reference_replies`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qwen3vl_eval.backends.openai import BackendError
from qwen3vl_eval.drift.measure import compare, query_ids
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.eval.runner import conversation
from qwen3vl_eval.model.sampling import GenerationParams


def greedy_params(spec: Any, max_new_tokens: int | None) -> GenerationParams:
    """Greedy decoding with the task's token budget and stop strings (`--max-new-tokens` wins)."""
    gen = spec.generation
    stop = gen.get("stop")
    return GenerationParams(max_new_tokens=max_new_tokens or int(gen.get("max_new_tokens", 128)), temperature=0.0,
                            stop=tuple([stop] if isinstance(stop, str) else stop) if stop else ())


def drift_task(spec: Any, samples: list, candidate: Any, reference: Any, params: GenerationParams, *,
               on_sample: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One record per sample (an `error` record when the sample's media or its request fails; such samples
    count in `n_errors` and in no metric)."""
    cfg = reference.model.config
    token_ids = {"image": cfg.image_token_id, "video": cfg.video_token_id}
    records = []
    for sample in samples:
        t0 = time.perf_counter()
        try:
            conv = conversation(spec, sample)
            cand = candidate.reply(conv, params, prompt=True)
            batch = reference.processor([conv], video_prompt=reference.video_prompt)
            prompt_ids = batch.input_ids[0].tolist()
            with_prompt = bool(cand.prompt_logprobs) and cand.prompt_token_ids in (None, prompt_ids) and \
                len(cand.prompt_logprobs) == len(prompt_ids)
            query = query_ids(cand, prompt_ids if with_prompt else None)
            scores, n = reference.score(batch, cand.token_ids, query=query, start=1 if with_prompt else None)
            if n != len(prompt_ids):
                raise RuntimeError(f"prompt length {n} != {len(prompt_ids)}")  # one processor: cannot happen
            record = {"id": sample.id, **compare(cand, scores, prompt_ids, token_ids, with_prompt)}
        except (InputError, BackendError) as e:  # bad media, a refused request, a server that stopped answering
            record = {"id": sample.id, "error": str(e)}
        record["seconds"] = round(time.perf_counter() - t0, 3)
        records.append(record)
        if on_sample:
            on_sample()
    return records


def reference_replies(spec: Any, samples: list, records: list[dict], reference: Any, params: GenerationParams,
                      ids: set[str]) -> None:
    """Fill `reference_reply` (the reference's own greedy reply) for the records in `ids`; a record that did
    not diverge has the candidate's reply."""
    by_id = {s.id: s for s in samples}
    for r in records:
        if r["id"] not in ids or "error" in r:
            continue
        if r["exact"]:
            r["reference_reply"] = r["candidate_reply"]
            continue
        reply = reference.chat([conversation(spec, by_id[r["id"]])], params)[0]
        r["reference_reply"], r["reference_token_ids"] = reply.text, reply.token_ids

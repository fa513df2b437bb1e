"""Per-sample drift of a candidate reply against the reference's teacher-forced scores of the same tokens.

Per generated step t (the candidate chose token x_t, greedily, after the same prefix):
- top-1 agreement: the reference's argmax at t is x_t. The first step where it is not is the first divergent
  step of the two greedy replies (derived, not generated: up to t both greedy replies share the prefix, so the
  reference's greedy choice at t is exactly its teacher-forced argmax there; after it the replies are no longer
  comparable step by step). Exact-reply agreement: no divergent step (the candidate's eos or length stop is a
  step too).
- the chosen token's logprob under both, and their difference.
- KL over the candidate's top-k set S (its k most likely tokens plus x_t), both distributions read at S:
  `kl` = KL(reference || candidate) over the partition {each token of S, everything else as one bucket}:
  sum_S q log(q/p) + q_out log(q_out/p_out), with p_out = 1 - sum_S p (floored at 1e-12) and q_out likewise.
  Merging tokens never raises a KL, so this is a lower bound of the full-vocabulary KL, exact when S holds all
  the mass. `kl_topk` renormalises both over S and ignores the mass outside (the usual top-k estimate); the
  masses outside S, `p_out` and `q_out`, are reported with it.
Prompt: the candidate's prompt length (`usage.prompt_tokens`) against ours; where it returns the prompt's token
ids, the counts of image and video placeholder tokens and the first differing position name the cause. Where it
returns `prompt_logprobs` (and the prompts agree), the same step metrics over the prompt positions.
"""

from __future__ import annotations

import math
from typing import Any

from qwen3vl_eval.drift.candidates import Sample

FLOOR = 1e-12
MISMATCH = "server preprocesses differently (pixels, frames, template)"


def step_kl(cand: list[float], ref: list[float]) -> dict[str, float]:
    """KL estimates from the logprobs of one token set S under the candidate (`cand`) and the reference."""
    p = [math.exp(v) for v in cand]
    q = [math.exp(v) for v in ref]
    p_out, q_out = max(1.0 - sum(p), 0.0), max(1.0 - sum(q), 0.0)
    kl = sum(qi * (r - c) for qi, r, c in zip(q, ref, cand))
    if q_out > 0:
        kl += q_out * math.log(q_out / max(p_out, FLOOR))
    P, Q = sum(p), sum(q)
    kl_topk = sum((qi / Q) * ((r - math.log(Q)) - (c - math.log(P))) for qi, r, c in zip(q, ref, cand))
    return {"kl": max(kl, 0.0), "kl_topk": max(kl_topk, 0.0), "p_out": p_out, "q_out": q_out}


def query_ids(sample: Sample, prompt_ids: list[int] | None) -> list[list[int]]:
    """The token ids whose reference logprobs each scored position needs: prompt positions 1.. (when the
    candidate gave prompt logprobs for our prompt) then every generated step's top-k plus its token."""
    out: list[list[int]] = []
    if prompt_ids is not None:
        out += [sorted(e) if e else [] for e in (sample.prompt_logprobs or [])[1:]]
    for token, top in zip(sample.token_ids, sample.top):
        out.append([token] + [i for i, _ in top if i != token])
    return out


def _steps(tokens: list[int], cand_lp: list[float], cand_sets: list[list[tuple[int, float]]],
           ref_argmax: list[int], ref_lp: list[float], ref_q: list[list[float]]) -> list[dict[str, Any]]:
    rows = []
    for t, token in enumerate(tokens):
        ids = [i for i, _ in cand_sets[t]]
        est = step_kl([v for _, v in cand_sets[t]], ref_q[t][: len(ids)])
        rows.append({"token": token, "top1": ref_argmax[t] == token, "cand_logprob": cand_lp[t],
                     "ref_logprob": ref_lp[t], "ref_argmax": ref_argmax[t], **est})
    return rows


def compare(sample: Sample, scores: Any, prompt_ids: list[int], token_ids: dict[str, int],
            with_prompt: bool) -> dict[str, Any]:
    """The drift record of one sample. `scores`: the reference's `TokenScores` over the prompt positions
    1.. (when `with_prompt`) then the candidate's tokens, queried at `query_ids`; `prompt_ids`: our prompt."""
    n_prompt = len(prompt_ids) - 1 if with_prompt else 0
    cut = lambda xs: (xs[:n_prompt], xs[n_prompt:])  # noqa: E731
    (p_lp, g_lp), (p_arg, g_arg), (p_q, g_q) = (cut(scores.target_logprob), cut(scores.argmax),
                                                cut(scores.query_logprobs))
    cand_sets = [[(tok, lp)] + [(i, v) for i, v in top if i != tok]
                 for tok, lp, top in zip(sample.token_ids, sample.logprobs, sample.top)]
    steps = _steps(sample.token_ids, sample.logprobs, cand_sets, g_arg, g_lp, g_q)
    first = next((t for t, s in enumerate(steps) if not s["top1"]), None)
    record: dict[str, Any] = {
        "n_steps": len(steps), "top1_agreement": _mean([s["top1"] for s in steps], 1.0),
        "mean_kl": _mean([s["kl"] for s in steps], 0.0), "max_kl": max((s["kl"] for s in steps), default=0.0),
        "mean_kl_topk": _mean([s["kl_topk"] for s in steps], 0.0),
        "mean_abs_logprob_diff": _mean([abs(s["cand_logprob"] - s["ref_logprob"]) for s in steps], 0.0),
        "mean_p_out": _mean([s["p_out"] for s in steps], 0.0), "mean_q_out": _mean([s["q_out"] for s in steps], 0.0),
        "first_divergence": first, "exact": first is None,
        "candidate_reply": sample.text, "candidate_token_ids": sample.token_ids,
        "finish_reason": sample.finish_reason, "notes": list(sample.notes),
        "steps": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in s.items()} for s in steps],
    }
    record.update(prompt_check(sample, prompt_ids, token_ids))
    if with_prompt:
        prompt_sets = [sorted(e.items()) if e else [] for e in sample.prompt_logprobs[1:]]
        rows = []
        for j, entry in enumerate(prompt_sets):
            token = prompt_ids[j + 1]
            lps = dict((i, v[0]) for i, v in entry)
            ids = [i for i, _ in entry]
            est = step_kl([lps[i] for i in ids], p_q[j][: len(ids)])
            top1 = min(entry, key=lambda e: e[1][1] if e[1][1] is not None else math.inf)[0] if entry else None
            rows.append({"top1": top1 == p_arg[j], "abs_diff": abs(lps.get(token, p_lp[j]) - p_lp[j]), **est})
        record["prompt_positions"] = {
            "n": len(rows), "top1_agreement": _mean([r["top1"] for r in rows], 1.0),
            "mean_kl": _mean([r["kl"] for r in rows], 0.0),
            "mean_abs_logprob_diff": _mean([r["abs_diff"] for r in rows], 0.0)}
    return record


def prompt_check(sample: Sample, prompt_ids: list[int], token_ids: dict[str, int]) -> dict[str, Any]:
    """Our prompt against the candidate's: lengths, and where it gives its ids, what differs."""
    ours, theirs = len(prompt_ids), sample.prompt_tokens
    out: dict[str, Any] = {"prompt_tokens": ours, "candidate_prompt_tokens": theirs}
    given = sample.prompt_token_ids
    mismatch = (theirs is not None and theirs != ours) or (given is not None and list(given) != prompt_ids)
    out["prompt_mismatch"] = mismatch
    if not mismatch:
        return out
    parts = [f"prompt tokens ours {ours}, candidate {theirs if theirs is not None else len(given)}"]
    if given is not None:
        for kind, tid in token_ids.items():
            a, b = prompt_ids.count(tid), list(given).count(tid)
            if a != b:
                what = "pixels" if kind == "image" else "frames or pixels"
                parts.append(f"{kind} tokens ours {a}, candidate {b} ({what})")
        first = next((i for i, (a, b) in enumerate(zip(prompt_ids, given)) if a != b), min(len(given), ours))
        parts.append(f"first differing position {first}")
    out["prompt_mismatch_reason"] = f"{MISMATCH}: " + "; ".join(parts)
    return out


def _mean(xs: list, empty: float) -> float:
    return float(sum(xs) / len(xs)) if xs else empty

"""LLM-judged metrics: a task's `judge:` block (`eval.task.JudgeSpec`) scored through any OpenAI-compatible server.

`Judge` asks the judge through the openai backend (`backends.openai.OpenAIBackend`: its retries with backoff,
per-attempt timeout and connection pool), `concurrency` questions in flight, each answer cached on disk
(`eval.judge_cache`) so a rerun, a resume or `score` of the same replies sends nothing. `apply_judge` runs at
scoring time (`eval.results.finish`, for `run` and `score` alike) and adds, per sample, `<key>_judged` scores
and a `judge` record (where the judged score came from, the judge's input and raw output, whether it was a
cache hit, the value read, any error) to samples.jsonl, and the `judge` block of results.json.

Which samples go to the judge (`samples:`):
- `unread`: the `rules` parser (default: the task's headline parser) first; a value it reads is scored by the
  judged `scorer` (default: the headline scorer); only replies it cannot read (None) go to the judge;
- `open`: questions without options go to the judge; the others keep their headline scores;
- `all`: every answered sample goes to the judge.
A verdict prompt's CORRECT/INCORRECT is the score; a letter or text prompt's value is scored by `scorer`. A
judge request that fails (timeouts and server errors after the backend's retries, a rejected request) or a
reply the prompt cannot read is a per-sample judge failure: counted, logged, scored 0, never a crash. Replies
with no answer (a Thinking reply cut before `</think>`) score 0 without a question.

Without a judge (no `--judge-base-url`), judged metrics are absent, not zero: results.json says why.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qwen3vl_eval.eval.judge_cache import JudgeCache, cache_key
from qwen3vl_eval.eval.judge_prompts import JUDGE_PROMPTS, UNREAD, JudgePrompt
from qwen3vl_eval.eval.metrics import JUDGED, SCORERS, get_metric
from qwen3vl_eval.eval.parsers import PARSERS
from qwen3vl_eval.eval.sample_log import has_field, read_field

NOT_CONFIGURED = "no judge configured (pass --judge-base-url URL and --judge-model NAME to `run` or `score`)"


@dataclass
class JudgeAnswer:
    """One judge question's outcome: the raw reply (None when the request failed), cache hit, error."""

    output: str | None
    cached: bool
    error: str | None = None


class Judge:
    """An LLM judge behind an OpenAI-compatible server at `base_url`. `model` overrides every task's judge
    model; the API key is read from the environment variable `api_key_env` (never recorded). `cache` is the
    cache folder (default `$QWEN3VL_EVAL_CACHE/judge`). `concurrency`, `timeout` (seconds per attempt) and
    `retries` are the openai backend's. After `max_failures_in_a_row` questions fail one after another (a judge
    down, a wrong model name), the rest of that batch fails at once, unasked, instead of each waiting out its
    timeouts and retries. Requests carry only the fields OpenAI's own API accepts (greedy:
    temperature 0), so hosted judges take them as vLLM, SGLang and `qwen3vl-eval serve` do."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key_env: str | None = None,
                 cache: str | os.PathLike | None = None, concurrency: int = 4, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 1.0, max_failures_in_a_row: int = 8) -> None:
        self.options: dict[str, Any] = {"base_url": base_url, "api_key_env": api_key_env,
                                        "concurrency": concurrency, "timeout": timeout, "retries": retries,
                                        "backoff": backoff, "openai_fields_only": True}
        self.model = model
        self.cache = JudgeCache(cache)
        self._backends: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.n_requests = 0  # questions sent over HTTP (cache misses), over this judge's life
        self.max_failures_in_a_row = max_failures_in_a_row
        self.backend(model or "judge")  # a bad URL or unset key variable fails here (InputError), before any run

    def backend(self, model: str) -> Any:
        """The openai backend asking `model` (one per model name, made on first use)."""
        with self._lock:
            if model not in self._backends:
                from qwen3vl_eval.backends import make_backend

                self._backends[model] = make_backend("openai", model=model, **self.options)
            return self._backends[model]

    def info(self) -> dict[str, Any]:
        """What results.json records about the judge (no secrets: the URL without credentials, the key's
        variable name)."""
        from qwen3vl_eval.backends.openai import _redact_url

        return {"base_url": _redact_url(self.options["base_url"]), "model_override": self.model,
                "api_key_env": self.options["api_key_env"], "cache": str(self.cache.root),
                **{k: self.options[k] for k in ("concurrency", "timeout", "retries")}}

    def close(self) -> None:
        for b in self._backends.values():
            b.close()

    def ask(self, model: str, prompt: JudgePrompt, texts: list[str]) -> list[JudgeAnswer]:
        """The judge's answer to each of `texts` (rendered `prompt` messages), from the cache when there, else
        over HTTP (identical questions asked once); a failed request is that question's error."""
        from qwen3vl_eval.model.sampling import GenerationParams

        keys = [cache_key(model, prompt.id, prompt.hash, t, prompt.max_tokens) for t in texts]
        answers: dict[str, JudgeAnswer] = {}
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts):
            hit = self.cache.get(k)
            if hit is not None:
                answers[k] = JudgeAnswer(hit, True)
            else:
                todo.setdefault(k, t)
        backend = self.backend(model) if todo else None
        params = GenerationParams(max_new_tokens=prompt.max_tokens, temperature=0.0)

        failing = {"in_a_row": 0, "first": None}

        def one(item: tuple[str, str]) -> tuple[str, JudgeAnswer]:
            k, text = item
            with self._lock:
                if failing["in_a_row"] >= self.max_failures_in_a_row:
                    return k, JudgeAnswer(None, False, f"not asked: {failing['in_a_row']} judge questions failed in "
                                                       f"a row (first: {failing['first']})")
                self.n_requests += 1
            try:
                [reply] = backend.chat([[{"role": "user", "content": text}]], params)
            except Exception as e:  # timeouts, server errors after retries, rejected requests: this question's
                error = f"{type(e).__name__}: {e}"
                with self._lock:
                    failing["in_a_row"] += 1
                    failing["first"] = failing["first"] or error
                return k, JudgeAnswer(None, False, error)
            with self._lock:
                failing["in_a_row"] = 0
            self.cache.put(k, reply.text, {"model": model, "prompt": prompt.id, "input": text})
            return k, JudgeAnswer(reply.text, False)

        if todo:
            with ThreadPoolExecutor(max_workers=min(len(todo), self.options["concurrency"])) as pool:
                answers.update(pool.map(one, todo.items()))
        seen: set[str] = set()
        out = []
        for k in keys:  # a repeated question is a cache hit after its first asking
            a = answers[k]
            out.append(a if k not in seen or a.error else JudgeAnswer(a.output, True))
            seen.add(k)
        return out


# ---------------------------------------------------------------- judged scores of a task's records

def judged_metrics(spec: Any) -> list[str]:
    """`<metric>_judged` for each metric of the task's `judge:` block (none without one)."""
    return [m + JUDGED for m in spec.judge.metrics] if spec.judge else []


def _clear(rec: dict) -> None:
    """Drop an earlier pass's judged fields from a record."""
    rec.pop("judge", None)
    for d in (rec, rec.get("scores") or {}):
        for k in [k for k in d if k.endswith(JUDGED)]:
            del d[k]


def _put(rec: dict, keys: list[str], scores: dict[str, float], entry: dict[str, Any]) -> None:
    judged = {k + JUDGED: float(scores.get(k, 0.0)) for k in keys}
    rec["scores"].update(judged)
    rec.update(judged)
    rec["judge"] = entry


def apply_judge(spec: Any, samples: list, records: list[dict], judge: Judge | None) -> tuple[list[str], dict | None]:
    """Add judged scores and per-sample judge records to `records` (in place); return the judged metric names
    to aggregate (none without a judge) and results.json's `judge` block (None for a task without `judge:`)."""
    js = spec.judge
    if js is None:
        return [], None
    for r in records:
        _clear(r)
    prompt = JUDGE_PROMPTS[js.prompt]
    if judge is None:
        return [], {"configured": False, "metrics": judged_metrics(spec), "prompt": prompt.id,
                    "default_model": js.model, "reason": NOT_CONFIGURED}
    model = judge.model or js.model
    rules, scorer = PARSERS[js.rules or spec.parser], SCORERS[js.scorer or spec.scorer]
    keys = list(dict.fromkeys(get_metric(m).key for m in js.metrics))
    by_id = {s.id: s for s in samples}
    counts = dict.fromkeys(("headline", "rules", "unanswered"), 0)
    pending: list[tuple[dict, Any, str]] = []
    for rec in records:
        s = by_id.get(rec["id"])
        if s is None or rec.get("error") or rec.get("scores") is None:
            continue  # failed samples count 0 in every metric already
        answer = read_field(rec, "prediction_answer") if has_field(rec, "prediction_answer") else rec.get("prediction")
        if answer is None:
            counts["unanswered"] += 1
            _put(rec, keys, {}, {"source": "unanswered"})
            continue
        if js.samples == "open" and s.choices:
            counts["headline"] += 1
            _put(rec, keys, rec["scores"], {"source": "headline"})
            continue
        if js.samples == "unread":
            value = rules(answer, s)
            if value is not None:
                counts["rules"] += 1
                _put(rec, keys, scorer(value, s.target), {"source": "rules", "rules": rules.name, "value": value})
                continue
        pending.append((rec, s, prompt.render(s, answer)))
    sent_before = judge.n_requests
    answers = judge.ask(model, prompt, [t for _, _, t in pending])
    n_cached = n_errors = n_unread = 0
    first_error = None
    for (rec, s, text), a in zip(pending, answers):
        entry: dict[str, Any] = {"source": "judge", "prompt": prompt.id, "model": model, "input": text,
                                 "output": a.output, "cached": a.cached, "error": a.error}
        n_cached += a.cached
        scores: dict[str, float] = {}
        if a.error is not None:
            n_errors += 1
            first_error = first_error or a.error
            entry.update(parsed=False, value=None)
        else:
            value = prompt.read(a.output or "", s)
            entry.update(parsed=value is not UNREAD, value=None if value is UNREAD else value)
            if value is UNREAD:
                n_unread += 1
                entry["error"] = f"judge reply not read as a {prompt.output} answer"
            elif prompt.output == "verdict":
                scores = {k: float(value) for k in keys}
            else:
                scores = scorer(value, s.target)
        _put(rec, keys, scores, entry)
    block = {"configured": True, "metrics": judged_metrics(spec), "model": model, "prompt": prompt.id,
             "prompt_hash": prompt.hash, "samples": js.samples, "rules": rules.name if js.samples == "unread" else None,
             "scorer": js.scorer or spec.scorer if js.samples == "unread" or prompt.output != "verdict" else None,
             "n_judged": len(pending), "n_cached": n_cached,
             "n_requests": judge.n_requests - sent_before, "n_failed": n_errors + n_unread,
             "n_request_errors": n_errors, "n_unread": n_unread, "first_error": first_error,
             **{f"n_{k}": v for k, v in counts.items()}, "judge": judge.info()}
    return judged_metrics(spec), block


def judge_from_options(specs: list, base_url: str | None, model: str | None = None, api_key_env: str | None = None,
                       cache: str | os.PathLike | None = None) -> Judge | None:
    """The `Judge` of a command line's `--judge-*` flags for `specs` (None without `--judge-base-url`); InputError
    for flags without a URL, a URL no task uses, a bad URL or an unset key variable."""
    from qwen3vl_eval.errors import InputError

    if base_url is None:
        given = [f for f, v in (("--judge-model", model), ("--judge-api-key-env", api_key_env),
                                ("--judge-cache", cache)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only with --judge-base-url (the judge's server)")
        return None
    if not any(s.judge for s in specs):
        raise InputError(f"--judge-base-url: no task of {', '.join(s.task for s in specs)} has a judge: block "
                         "(judged tasks: see `qwen3vl-eval tasks`)")
    return Judge(base_url, model=model, api_key_env=api_key_env, cache=cache)


def judge_summary(results: dict) -> str | None:
    """The one line `run` and `score` print about a task's judge (None when the task was not judged)."""
    j = results.get("judge") or {}
    if not j.get("configured"):
        return None
    return (f"{results['task']}: judge {j['model']}: {j['n_judged']} judged ({j['n_cached']} cached), "
            f"{j['n_failed']} failed" + (f"; first error: {str(j['first_error'])[:160]}" if j["first_error"] else ""))

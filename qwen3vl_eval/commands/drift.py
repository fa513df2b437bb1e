"""`qwen3vl-eval drift`: token-level drift of a served or optimised model against the reference on a task's real
prompts (`qwen3vl_eval.drift`). Exit 0 when every gate passes, 1 when one fails (each failure one line on
stderr), 2 on bad input."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.commands import fail, handle_errors, resolve_target
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.errors import InputError


@handle_errors
def drift(
    model: opt.Model,
    task: opt.Task,
    limit: opt.Limit = None,
    base_url: opt.BaseUrl = None,
    served_model_name: opt.ServedModelName = None,
    api_key_env: opt.ApiKeyEnv = None,
    request_timeout: opt.RequestTimeout = 120.0,
    video_mode: str = typer.Option("url", "--video-mode", help="url (video_url: the server samples frames; "
                                   "default) or frames (sampled here, sent as images)"),
    mm_processor_kwargs: Optional[str] = typer.Option(None, "--mm-processor-kwargs", help="JSON object sent as "
                                                      "vLLM's mm_processor_kwargs with every request"),
    candidate_dtype: Optional[str] = typer.Option(None, "--candidate-dtype", help="the candidate: our model in "
                                                  "this dtype (float32, bfloat16, float16), no server"),
    candidate_device: Optional[str] = typer.Option(None, "--candidate-device", help="its device (default: "
                                                   "--device)"),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="the candidate's "
                                              "CUDA-graph decode step (default: on for CUDA)"),
    compile: bool = typer.Option(False, "--compile", help="the candidate's decode step fused by inductor"),
    device: opt.Device = "auto",
    reference_dtype: str = typer.Option("float32", "--reference-dtype", help="the reference's dtype"),
    video_prompt: opt.VideoPrompt = "trained",
    top_logprobs: int = typer.Option(5, "--top-logprobs", help="k: the candidate's top-k per step (1-20)"),
    max_new_tokens: opt.MaxNewTokens = None,
    data: opt.Data = None,
    media_root: opt.MediaRoot = None,
    output: Optional[Path] = typer.Option(None, "--output", help="folder for drift.json and drift.md (default "
                                          "reports/drift/<time>-<model>)"),
    worst: int = typer.Option(5, "--worst", help="worst samples shown per task, with both replies"),
    max_mean_kl: float = typer.Option(0.05, "--max-mean-kl", help="gate: mean per-step KL (nats)"),
    min_top1_agreement: float = typer.Option(0.9, "--min-top1-agreement", help="gate: mean top-1 agreement"),
    max_prompt_token_mismatch: int = typer.Option(0, "--max-prompt-token-mismatch", help="gate: samples whose "
                                                  "prompt differs from ours"),
) -> None:
    """Compare a candidate's greedy replies, token by token, with the reference model scoring the same tokens.
    The candidate is --base-url (a server) or --candidate-dtype (our model in another configuration); --model,
    --device and --video-prompt describe the reference (--video-prompt transformers5 for vLLM)."""
    from qwen3vl_eval.backends.native import Engine
    from qwen3vl_eval.drift import report
    from qwen3vl_eval.drift.candidates import NativeCandidate, ServerCandidate
    from qwen3vl_eval.drift.run import drift_task, greedy_params, reference_replies
    from qwen3vl_eval.eval.data import load_task_data
    from qwen3vl_eval.eval.task import resolve_tasks
    from qwen3vl_eval.jsonio import loads
    from qwen3vl_eval.runtime.provenance import software_versions

    if (base_url is None) == (candidate_dtype is None):
        raise InputError("name one candidate: --base-url URL (a server) or --candidate-dtype DTYPE (our model)")
    if base_url is None and (served_model_name or api_key_env or mm_processor_kwargs):
        raise InputError("--served-model-name, --api-key-env and --mm-processor-kwargs need --base-url")
    if base_url is not None and (candidate_device or compile or cuda_graph is not None):
        raise InputError("--candidate-device, --compile and --cuda-graph describe our model; drop --base-url")
    if not 1 <= top_logprobs <= 20:
        raise InputError(f"--top-logprobs {top_logprobs}: must be 1..20")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    if video_prompt not in ("trained", "transformers5"):
        raise InputError(f"--video-prompt {video_prompt}: expected trained or transformers5")
    if video_mode not in ("url", "frames"):
        raise InputError(f"--video-mode {video_mode}: expected url or frames")
    mm = None
    if mm_processor_kwargs is not None:
        mm = loads(mm_processor_kwargs.encode(), "--mm-processor-kwargs")
        if not isinstance(mm, dict):
            raise InputError("--mm-processor-kwargs: expected a JSON object")
    specs = resolve_tasks(task)
    if data and len(specs) > 1:
        raise InputError(f"--data: applies to one task, but --task {task} names {len(specs)}")
    loaded = []
    for spec in specs:
        samples, _ = load_task_data(spec, data, media_root)
        loaded.append((spec, samples[:limit] if limit else samples))

    ref_target = resolve_target(model, device, reference_dtype)
    reference = Engine(ref_target.path, device=ref_target.device, dtype=ref_target.dtype, model_name=model,
                       fast=False, video_prompt=video_prompt)
    if base_url is not None:
        from qwen3vl_eval.backends.openai import OpenAIBackend

        backend = OpenAIBackend(base_url, api_key_env=api_key_env, served_model_name=served_model_name,
                                concurrency=1, timeout=request_timeout, retries=1, video_mode=video_mode,
                                processor=ref_target.path)
        candidate = ServerCandidate(backend, reference.processor.tokenizer, top_logprobs, mm)
        label = f"server {backend.base_url} (`{backend.model}`)"
    else:
        cand_target = resolve_target(model, candidate_device or device, candidate_dtype)
        if (cuda_graph or compile) and cand_target.device.type != "cuda":
            raise InputError(f"--cuda-graph and --compile need a CUDA candidate device, not {cand_target.device}")
        engine = Engine(cand_target.path, device=cand_target.device, dtype=cand_target.dtype, model_name=model,
                        fast=cuda_graph, compile=compile, video_prompt=video_prompt)
        candidate = NativeCandidate(engine, top_logprobs)
        info = engine.info()
        label = (f"our model, {info['dtype']} on {info['device']}, cuda_graph {info['cuda_graph']}, "
                 f"compile {info['compile']}")
    gates = report.Gates(max_mean_kl, min_top1_agreement, max_prompt_token_mismatch)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tasks, worst_rows, all_records = {}, {}, {}
    for spec, samples in loaded:
        params = greedy_params(spec, max_new_tokens)
        print(f"{spec.task}: {len(samples)} samples", file=sys.stderr)
        records = drift_task(spec, samples, candidate, reference, params)
        shown = report.worst(records, worst)
        reference_replies(spec, samples, records, reference, params, {r["id"] for r in shown})
        tasks[spec.task], worst_rows[spec.task], all_records[spec.task] = report.aggregate(records), shown, records
    failed = report.check_gates(tasks, gates)
    doc = {"format": "qwen3vl-drift/1", "created": started, "reference": reference.info(),
           "candidate": candidate.info(), "candidate_label": label, "versions": software_versions(),
           "top_logprobs": top_logprobs,
           "kl_estimator": "KL(reference || candidate) over the candidate's top-k tokens plus one bucket for the "
                           "rest (lower bound of the full KL); kl_topk: both renormalised over the top-k",
           "reference_reply": "first divergence from the teacher-forced argmax (exact); the reference's own greedy "
                              "reply generated for the worst samples shown",
           "gates": {"max_mean_kl": max_mean_kl, "min_top1_agreement": min_top1_agreement,
                     "max_prompt_token_mismatch": max_prompt_token_mismatch},
           "gates_failed": failed, "tasks": tasks, "worst": worst_rows, "samples": all_records}
    out = output or Path("reports/drift") / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(model).name}"
    report.write(out, doc)
    candidate.close()
    for name, agg in tasks.items():
        print(f"{name}: top-1 agreement {_fmt(agg['top1_agreement']['mean'], '.4f')}, mean KL "
              f"{_fmt(agg['mean_kl']['mean'], '.3g')}, exact replies {_fmt(agg['exact_reply']['mean'], '.3f')}, "
              f"prompt mismatches {agg['prompt_token_mismatch']}, errors {agg['n_errors']}", file=sys.stderr)
    print(f"wrote {out / 'drift.json'} and {out / 'drift.md'}", file=sys.stderr)
    if failed:
        for line in failed:
            print(f"drift gate failed: {line}", file=sys.stderr)
        raise fail("drift beyond the gates", code=1)


def _fmt(value: float | None, spec: str) -> str:
    """A console figure: `value` in `spec`, or "-" when no sample gave one."""
    return "-" if value is None else format(value, spec)

"""drift.json and drift.md: per-task aggregates with bootstrap intervals, the worst samples with both replies,
the gates, and what ran (versions, devices, the server's /v1/models answer).

Aggregates weigh every sample equally: the mean over samples of each sample's top-1 agreement, mean KL and
exact-reply flag, with a 95% percentile bootstrap interval (`report.stats.paired_bootstrap` against zeros: the
interval of the mean). Per-token pooled values (every step of every sample) are listed beside them. The gates
read the sample means: `max_mean_kl`, `min_top1_agreement` and `max_prompt_token_mismatch` (samples whose
prompt length or ids differ from ours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3vl_eval.report.files import cell, fmt, markdown_table, write_json, write_text
from qwen3vl_eval.report.stats import paired_bootstrap

WORST_KEY = ("mean_kl", "first_divergence")


@dataclass(frozen=True)
class Gates:
    max_mean_kl: float = 0.05
    min_top1_agreement: float = 0.9
    max_prompt_token_mismatch: int = 0


def _interval(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0}
    ci = paired_bootstrap([0.0] * len(values), values, resamples=2000)
    return {"mean": ci.delta, "low": ci.low, "high": ci.high, "n": ci.n}


def aggregate(records: list[dict]) -> dict[str, Any]:
    """The task's aggregates over its samples without an error."""
    ok = [r for r in records if "error" not in r]
    steps = [s for r in ok for s in r["steps"]]
    prompt = [r["prompt_positions"] for r in ok if "prompt_positions" in r]
    diverged = [r["first_divergence"] for r in ok if r["first_divergence"] is not None]
    return {
        "n_samples": len(records), "n_errors": len(records) - len(ok), "n_steps": len(steps),
        "top1_agreement": _interval([r["top1_agreement"] for r in ok]),
        "mean_kl": _interval([r["mean_kl"] for r in ok]),
        "exact_reply": _interval([float(r["exact"]) for r in ok]),
        "mean_abs_logprob_diff": _interval([r["mean_abs_logprob_diff"] for r in ok]),
        "pooled": {"top1_agreement": sum(s["top1"] for s in steps) / len(steps) if steps else None,
                   "mean_kl": sum(s["kl"] for s in steps) / len(steps) if steps else None,
                   "mean_kl_topk": sum(s["kl_topk"] for s in steps) / len(steps) if steps else None,
                   "max_kl": max((s["kl"] for s in steps), default=None),
                   "mean_p_out": sum(s["p_out"] for s in steps) / len(steps) if steps else None,
                   "mean_q_out": sum(s["q_out"] for s in steps) / len(steps) if steps else None},
        "first_divergence": {"n_diverged": len(diverged),
                             "median_step": sorted(diverged)[len(diverged) // 2] if diverged else None},
        "prompt_token_mismatch": sum(bool(r.get("prompt_mismatch")) for r in ok),
        "prompt_mismatch_reasons": sorted({r["prompt_mismatch_reason"] for r in ok if r.get("prompt_mismatch")}),
        "prompt_positions": None if not prompt else {
            "n_samples": len(prompt), "top1_agreement": _interval([p["top1_agreement"] for p in prompt]),
            "mean_kl": _interval([p["mean_kl"] for p in prompt]),
            "mean_abs_logprob_diff": _interval([p["mean_abs_logprob_diff"] for p in prompt])},
    }


def worst(records: list[dict], n: int) -> list[dict]:
    """The `n` samples with the largest mean KL (divergent ones first)."""
    ok = [r for r in records if "error" not in r]
    return sorted(ok, key=lambda r: (r["first_divergence"] is None, -r["mean_kl"]))[:n]


def check_gates(tasks: dict[str, dict], gates: Gates) -> list[str]:
    """One line per failed gate (empty: every task passes)."""
    failed = []
    for task, agg in tasks.items():
        kl, top1 = agg["mean_kl"]["mean"], agg["top1_agreement"]["mean"]
        if agg["n_errors"] == agg["n_samples"]:
            failed.append(f"{task}: every sample failed")
            continue
        if kl is not None and kl > gates.max_mean_kl:
            failed.append(f"{task}: mean KL {kl:.4g} > --max-mean-kl {gates.max_mean_kl:g} (the candidate's "
                          "next-token distributions differ from the reference's)")
        if top1 is not None and top1 < gates.min_top1_agreement:
            failed.append(f"{task}: top-1 agreement {top1:.4f} < --min-top1-agreement {gates.min_top1_agreement:g}")
        if agg["prompt_token_mismatch"] > gates.max_prompt_token_mismatch:
            reasons = "; ".join(agg["prompt_mismatch_reasons"][:3])
            failed.append(f"{task}: {agg['prompt_token_mismatch']} sample(s) with another prompt > "
                          f"--max-prompt-token-mismatch {gates.max_prompt_token_mismatch}: {reasons}")
    return failed


def _ci(x: dict, digits: int = 4) -> str:
    if x["mean"] is None:
        return "-"
    return f"{x['mean']:.{digits}g} [{x['low']:.{digits}g}, {x['high']:.{digits}g}]"


def render(doc: dict) -> str:
    """drift.md."""
    lines = ["# Drift: candidate against reference", "",
             f"Reference: `{doc['reference'].get('model')}` ({doc['reference'].get('dtype')}, "
             f"{doc['reference'].get('device')}). Candidate: {doc['candidate_label']}.", "",
             "Per-step metrics on the candidate's greedy tokens, the reference teacher-forcing the same tokens. KL: "
             "KL(reference || candidate) over the candidate's top-k tokens plus one bucket for the rest (a lower "
             "bound of the full KL); intervals: 95% bootstrap over samples.", ""]
    rows = []
    for task, agg in doc["tasks"].items():
        rows.append([task, agg["n_samples"], agg["n_errors"], _ci(agg["top1_agreement"]), _ci(agg["mean_kl"], 3),
                     _ci(agg["exact_reply"], 3), agg["first_divergence"]["n_diverged"],
                     agg["prompt_token_mismatch"]])
    lines += [markdown_table(["task", "samples", "errors", "top-1 agreement", "mean KL", "exact reply", "diverged",
                              "prompt mismatch"], rows), ""]
    for task, agg in doc["tasks"].items():
        for reason in agg["prompt_mismatch_reasons"]:
            lines.append(f"- **{task}**: {reason}")
        pp = agg.get("prompt_positions")
        if pp:
            lines.append(f"- **{task}** prompt positions ({pp['n_samples']} samples): top-1 "
                         f"{_ci(pp['top1_agreement'])}, mean KL {_ci(pp['mean_kl'], 3)}")
    lines += ["", "## Gates", ""]
    lines += [f"- FAILED: {f}" for f in doc["gates_failed"]] or ["- all passed: " + ", ".join(
        f"{k} {v}" for k, v in doc["gates"].items())]
    lines += ["", "## Worst samples", ""]
    for task, items in doc["worst"].items():
        for r in items:
            lines.append(f"### {task} / {r['id']}: mean KL {r['mean_kl']:.3g}, top-1 "
                         f"{fmt(r['top1_agreement'], 3)}, first divergence {fmt(r['first_divergence'])}")
            lines.append("")
            lines.append(markdown_table(["", "reply"], [["candidate", cell(r["candidate_reply"], 400)],
                                                         ["reference", cell(r.get("reference_reply"), 400)]]))
            lines.append("")
    return "\n".join(lines) + "\n"


def write(out: Path, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "drift.json", doc)
    write_text(out / "drift.md", render(doc))

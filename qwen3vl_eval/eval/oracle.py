"""Oracle predictions: for each sample, a reply that the task's parser and scorer (headline and flexible) take as
exactly right. `score --task T --write-oracle FILE` writes them for a task (the smoke suite's score 100), and the
tests use them to check that parsing and scoring agree with the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import TaskError

# headline (reference-exact) scorers take the same oracle replies as their flexible counterparts
_SAME_ORACLE = {"anls_lmms": "anls", "vqa_lmms": "vqa_accuracy", "relaxed_lmms": "relaxed_accuracy",
                "accuracy_nocase": "accuracy", "mmlu_lm_eval": "accuracy", "mmmu_ref": "mmmu",
                "box_iou_top1": "box_iou", "gsm8k_lm_eval": "gsm8k", "mvbench_lmms": "accuracy",
                "accuracy_exact": "accuracy", "accuracy_exact_by_type": "mmmu"}


def oracle_prediction(scorer: str, target: Any) -> str:
    """A model reply that the task's parser and scorer (headline and flexible) take as exactly right."""
    scorer = _SAME_ORACLE.get(scorer, scorer)
    if scorer in ("anls", "vqa_accuracy", "relaxed_accuracy"):
        return str(target[0] if isinstance(target, list) else target)
    if scorer == "accuracy":
        return str(target)
    if scorer == "mmmu":
        return str(target["answer"]) if target["choices"] else f"The answer is {target['answer']}"
    if scorer == "temporal_iou":
        return f"The event happens in {target[0]} - {target[1]} seconds."
    if scorer == "box_iou":
        x1, y1, x2, y2 = target["bbox"]
        w, h = target["width"], target["height"]
        rel = [x1 * 1000 / w, y1 * 1000 / h, x2 * 1000 / w, y2 * 1000 / h]
        rel = [int(v) if float(v).is_integer() else round(v, 6) for v in rel]  # exact on the 0-1000 scale
        return "```json\n" + json.dumps([{"bbox_2d": rel, "label": "object"}]) + "\n```"
    if scorer == "gsm8k":
        return f"Adding it up gives {target}.\n#### {target}"
    if scorer in ("ocrbench_lmms", "mathvista_lmms"):  # MathVista: lmms-eval's rules read no list answer
        return str(target["answers"][0] if "answers" in target else target["answer"])
    if scorer in ("exact_match_lmms", "realworldqa_lmms"):
        return str(target)
    if scorer == "hallusion_lmms":
        return "Yes" if target == "1" else "No"
    if scorer == "point_in_box":
        b = target["box"]
        return f"[{round((b[0] + b[2]) * 500)}, {round((b[1] + b[3]) * 500)}]"
    raise TaskError(f"no oracle predictions for scorer {scorer}")


def write_oracle(spec: Any, samples: list[Any], path: Path) -> int:
    """`{"id", "prediction"}` lines of oracle predictions for `samples` of task `spec` into `path`; how many."""
    lines = [json.dumps({"id": s.id, "prediction": oracle_prediction(spec.scorer, s.target)}) for s in samples]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)

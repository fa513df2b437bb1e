"""Score the issue #16 image corpus with the real lmms-eval 0.7.3 code; write the expected values.

Reads `tests/data/reference_scoring/image/corpus.jsonl` (from `make_corpus_image.py`), writes beside it
`expected.jsonl` (one line per reply: `{"id", "scores", "judge", "deviation", "official"}`) and `groups.json`
(the group-level metrics per task and part). Runs the installed reference package, never the project. MathVista
needs `Levenshtein`, which the reference venv lacks: use a venv that sees the reference packages plus it:

    python3 -m venv /work/venvs/imgtasks
    echo /work/venvs/ref/lib/python3.11/site-packages > /work/venvs/imgtasks/lib/python3.11/site-packages/ref.pth
    /work/venvs/imgtasks/bin/pip install Levenshtein
    /work/venvs/imgtasks/bin/python reference/scoring/run_reference_image.py

What each task runs (the entry points a real lmms-eval run calls, on the reply as the Qwen3-VL model adapter
returns it: Thinking text after `</think>`, stripped, as `run_reference.py` does):
- ocrbench: `ocrbench_process_results`, `ocrbench_aggregate_accuracy` (Final Score; per-category sums read
  from its `OCRBench_score`, reset before each part).
- infovqa_val: the generate_until path of `Task.process_results` (the reply stripped) into `api.metrics.anls`.
- ai2d_test: the task's `MultiChoiceRegexFilter` (YAML settings), the reply stripped, `exact_match_hf_evaluate`
  with the YAML's ignore_case / ignore_punctuation.
- mmbench_en_dev: `mmbench_process_results`, then `MMBench_Evaluator.eval_sub_data(..., static_only=True)` per
  reply and `eval_result(..., eval_method="static")` per part (CircularEval, per category).
- mmstar: `mmstar_process_results`, `mmstar_aggregate_results` (average, and per category).
- realworldqa: `realworldqa_process_results`.
- mathvista_testmini: `mathvista_process_results` with the evaluator's judge call intercepted (it returns "",
  as with no judge reachable; the reply is marked `judge`). Run twice: with the dataset's float `precision`
  (lmms-eval as is: `round(x, 1.0)` raises, so floats score 0) and with `int(precision)`, MathVista's own rule;
  where they differ the reply is marked `deviation: float_precision` and `official` holds the second value.
- hallusionbench: `hb_process_results`, `hb_aggregation_result_intern` (aAcc per reply; aAcc, fAcc, qAcc per
  part).
- screenspot_v2: `_parse_point`, the point divided by 1000 (Qwen3-VL's scale), `_normalize_bbox_to_xyxy` and
  `_point_in_box`.
A Thinking reply without `</think>` is marked `deviation: truncated_reasoning` (we score it 0 on purpose).
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml
from lmms_eval.api.metrics import anls, exact_match_hf_evaluate
from lmms_eval.tasks.ai2d import utils as ai2d
from lmms_eval.tasks.hallusion_bench import evaluate_hb as hb
from lmms_eval.tasks.mathvista import utils as mathvista
from lmms_eval.tasks.mmbench import en_utils as mmbench
from lmms_eval.tasks.mmstar import utils as mmstar
from lmms_eval.tasks.ocrbench import utils as ocrbench
from lmms_eval.tasks.realworldqa import utils as realworldqa
from lmms_eval.tasks.screenspot_v2 import utils as screenspot
from loguru import logger

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring" / "image"
TASKS = Path(ai2d.__file__).parent.parent
logger.remove()


def _yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)


AI2D = _yaml(TASKS / "ai2d" / "ai2d.yaml")
AI2D_FILTER = ai2d.MultiChoiceRegexFilter(**{k: v for k, v in AI2D["filter_list"][0]["filter"][0].items()
                                             if k != "function"})
AI2D_METRIC = {k: v for k, v in AI2D["metric_list"][0].items() if k not in ("metric", "aggregation",
                                                                           "higher_is_better")}


class _Judge:
    """Stands in for MathVista's judge call: records that it was asked and answers "" (no judge reachable)."""

    asked = False

    @staticmethod
    def respond(*args: object, **kwargs: object) -> str:
        _Judge.asked = True
        return ""


mathvista.mathvista_evaluator.get_chat_response = _Judge.respond


def mmbench_item(doc: dict, reply: str) -> dict:
    return mmbench.mmbench_process_results(doc, [reply])["gpt_eval_score"]


def score(task: str, doc: dict, reply: str) -> dict:
    """{"scores": {...}, extra flags}: one reply's per-sample values under the reference code."""
    if task == "ocrbench":
        return {"scores": {"accuracy": float(ocrbench.ocrbench_process_results(doc, [reply])["ocrbench_accuracy"]
                                             ["score"])}}
    if task == "infovqa_val":
        return {"scores": {"anls": float(anls(list(doc["answers"]), [reply.strip()])["anls"])}}
    if task == "ai2d_test":
        filtered = list(AI2D_FILTER.apply([[reply]], [doc]))[0]
        gold = ai2d.ai2d_doc_to_target(doc, "mcq")
        em = exact_match_hf_evaluate(predictions=[filtered.strip()], references=[gold], **AI2D_METRIC)
        return {"scores": {"accuracy": float(em["exact_match"])}}
    if task == "mmbench_en_dev":
        item = {k.lower() if k not in "ABCD" else k: v for k, v in mmbench_item(doc, reply).items()}
        hit = mmbench.mmbench_evaluator.eval_sub_data(pd.DataFrame([item]), {doc["index"]: doc["answer"]},
                                                      static_only=True)
        return {"scores": {"accuracy": float(hit)}}
    if task == "mmstar":
        return {"scores": {"accuracy": float(mmstar.mmstar_process_results(doc, [reply])["average"]["score"])}}
    if task == "realworldqa":
        return {"scores": {"accuracy": float(realworldqa.realworldqa_process_results(doc, [reply])["exact_match"])}}
    if task == "mathvista_testmini":
        _Judge.asked = False
        as_is = mathvista.mathvista_process_results(doc, [reply])["llm_as_judge_eval"]["true_false"]
        asked = _Judge.asked
        out = {"scores": {"accuracy": float(as_is)}, "judge": asked}
        if doc.get("precision") is not None:
            fixed = mathvista.mathvista_process_results({**doc, "precision": int(doc["precision"])}, [reply])
            official = float(fixed["llm_as_judge_eval"]["true_false"])
            if official != float(as_is):
                out.update(deviation="float_precision", official={"accuracy": official})
        return out
    if task == "hallusionbench":
        sample = hb.hb_process_results(doc, [reply])["aAcc"]
        return {"scores": {"accuracy": float(hb.hb_aggregation_result_intern([copy.deepcopy(sample)], "aAcc"))}}
    if task == "screenspot_v2":
        point = screenspot._parse_point(reply)
        if point is not None:
            point = (point[0] / 1000.0, point[1] / 1000.0)
        box = screenspot._normalize_bbox_to_xyxy(doc["bbox"], 1, 1)
        return {"scores": {"accuracy": float(bool(point and screenspot._point_in_box(point, box)))}}
    raise SystemExit(f"unknown task {task}")


def groups(task: str, rows: list[tuple[dict, str]]) -> dict:
    """The part's group-level metrics under the reference aggregation, in percent (OCRBench: points)."""
    if task == "ocrbench":
        for k in ocrbench.OCRBench_score:
            ocrbench.OCRBench_score[k] = 0
        results = [ocrbench.ocrbench_process_results(d, [r])["ocrbench_accuracy"] for d, r in rows]
        with tempfile.TemporaryDirectory() as tmp:
            final = ocrbench.ocrbench_aggregate_accuracy(results, SimpleNamespace(output_path=tmp))
        sums = {k: v for k, v in ocrbench.OCRBench_score.items() if any(d["question_type"] == k for d, _ in rows)}
        return {"ocrbench_score": final * 1000, "by question_type": {k: {"ocrbench_score": v} for k, v in sums.items()}}
    if task == "mmbench_en_dev":
        overall, by_cat, _ = mmbench.mmbench_evaluator.eval_result([mmbench_item(d, r) for d, r in rows], "static")
        return {"circular_accuracy": 100 * overall,
                "by category": {k: {"circular_accuracy": 100 * v} for k, v in by_cat.items()}}
    if task == "mmstar":
        res = [mmstar.mmstar_process_results(d, [r]) for d, r in rows]
        by_cat: dict[str, list] = defaultdict(list)
        for d, x in zip((d for d, _ in rows), res):
            by_cat[d["category"]].append(x[d["category"]])
        return {"accuracy_l2_macro": 100 * mmstar.mmstar_aggregate_results([x["average"] for x in res]),
                "by category": {k: {"accuracy_l2_macro": 100 * mmstar.mmstar_aggregate_results(v)}
                                for k, v in by_cat.items()}}
    if task == "hallusionbench":
        samples = [hb.hb_process_results(d, [r])["aAcc"] for d, r in rows]
        return {m: 100 * hb.hb_aggregation_result_intern(copy.deepcopy(samples), m) for m in ("aAcc", "fAcc", "qAcc")}
    return {}


def strip_thinking(reply: str) -> str:
    return reply.partition("</think>")[2].strip()


def main() -> None:
    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines() if line.strip()]
    out, parts = [], defaultdict(list)
    for row in rows:
        reply, deviation = row["reply"], None
        if row["thinking"]:
            if "</think>" not in reply:
                deviation = "truncated_reasoning"
            reply = strip_thinking(reply)
        reply = reply.strip()  # ConfigurableTask.process_results strips generate_until replies first
        got = score(row["task"], row["doc"], reply)
        if deviation:
            got["deviation"] = deviation
        out.append({"id": row["id"], "scores": got["scores"], "judge": bool(got.get("judge")),
                    "deviation": got.get("deviation"), "official": got.get("official")})
        parts[(row["task"], row["split"])].append((row["doc"], reply, deviation, row["group"]))
    summary = {}
    for (task, split), items in parts.items():
        # group metrics over the replies both sides score alike: groups holding a deviation are left out whole
        bad = {g for _, _, dev, g in items if dev is not None and g is not None}
        kept = [(d, r) for d, r, dev, g in items if dev is None and (g is None or g not in bad)]
        if g := groups(task, kept):
            summary[f"{task}/{split}"] = g
    with open(DATA / "expected.jsonl", "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    (DATA / "groups.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    version = importlib.metadata.version("lmms-eval")
    print(f"{DATA}: {len(out)} replies, {len(summary)} group parts (lmms-eval {version}, "
          f"python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()

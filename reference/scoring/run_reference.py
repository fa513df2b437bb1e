"""Score every reply of the corpus with the real reference code; write the expected values.

Reads `tests/data/reference_scoring/corpus.jsonl` (from `make_corpus.py`), writes
`tests/data/reference_scoring/expected.jsonl`: one line per reply, `{"id", "scores", "random", "deviation"}`.
Runs the installed reference packages, never the project. Run it in the reference venv, from the repository root:

    python3 -m venv /work/venvs/ref
    /work/venvs/ref/bin/pip install --no-deps lmms-eval==0.7.3 lm-eval==0.4.13
    /work/venvs/ref/bin/pip install torch evaluate transformers accelerate pillow tenacity \
        opencv-python-headless pytz sacrebleu numpy loguru pyyaml     # what the task utils import
    /work/venvs/ref/bin/python reference/scoring/run_reference.py

What each task runs (the same entry points a real lmms-eval / lm-eval run calls):
- docvqa_val: `lmms_eval.api.metrics.anls`; chartqa_test: `chartqa.utils.chartqa_process_results`;
  textvqa_val: `textvqa.utils.textvqa_process_results`; videomme: `videomme.utils.videomme_process_results`;
  charades_sta: `charades_sta.utils._temporal_grounding_compute_metrics` on one reply (its mIOU / 100 = the IoU);
  mmmu_val: `mmmu.utils.mmmu_process_results` then `evaluate_mmmu` (the letter guess is intercepted: the reply is
  marked `random` and excluded from agreement, since the reference's value is a coin flip).
- gsm8k / mmlu: lm-eval's `regex` / `remove_whitespace` / `take_first` filters built from the tasks' own YAML
  (`gsm8k.yaml` filter_list, `mmlu/generative/_default_template_yaml`) and `exact_match_hf_evaluate` with the
  YAML's metric settings.
- refcoco_val: the standard top-1 rule, built from lmms-eval's refcoco_grounding box reader: the first parsed
  box (`_parse_pred_boxes(...)[0]`), scaled from 0-1000 (`_scale_pred_to_pixel`), `_compute_iou` with the box.
Thinking replies are split as each harness' model adapter does (lmms-eval qwen3_vl: text after the first
`</think>`, stripped; lm-eval: after the last, left-stripped). A Thinking reply without `</think>` is marked
`deviation: truncated_reasoning`: we score it as a parse failure (0) on purpose, so it is left out of agreement.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import sys
from pathlib import Path

import lm_eval
import yaml
from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter, WhitespaceFilter
from lm_eval.filters.selection import TakeFirstFilter
from lmms_eval.api.metrics import anls
from lmms_eval.tasks._task_utils import mmmu_mcq_utils
from lmms_eval.tasks.charades_sta import utils as charades
from lmms_eval.tasks.chartqa import utils as chartqa
from lmms_eval.tasks.mmmu import utils as mmmu
from lmms_eval.tasks.refcoco_grounding import utils as refcoco
from lmms_eval.tasks.textvqa import utils as textvqa
from lmms_eval.tasks.videomme import utils as videomme
from loguru import logger

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring"
LMMS_TASKS = {"docvqa_val", "chartqa_test", "textvqa_val", "mmmu_val", "videomme", "charades_sta"}


class _Guess:
    """Stands in for `random` inside lmms-eval's MMMU parser: records that it guessed."""

    guessed = False

    def choice(self, seq: list) -> object:
        _Guess.guessed = True
        return random.choice(seq)


mmmu_mcq_utils.random = _Guess()
logger.remove()  # lmms-eval logs one line per Charades reply


def _yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)


def _filters(spec: list[dict]) -> list:
    made = {"regex": RegexFilter, "remove_whitespace": WhitespaceFilter, "take_first": TakeFirstFilter}
    return [made[f["function"]](**{k: v for k, v in f.items() if k != "function"}) for f in spec]


def _apply(filters: list, reply: str) -> str:
    resps = [[reply]]
    for f in filters:
        resps = list(f.apply(resps, [{}]))
    out = resps[0]
    return out if isinstance(out, str) else out[0]


LM_TASKS = Path(lm_eval.__file__).parent / "tasks"
GSM8K = _yaml(LM_TASKS / "gsm8k" / "gsm8k.yaml")
GSM8K_FILTERS = {f["name"]: _filters(f["filter"]) for f in GSM8K["filter_list"]}
GSM8K_METRIC = {k: v for k, v in GSM8K["metric_list"][0].items() if k not in ("metric", "aggregation",
                                                                                 "higher_is_better")}
MMLU = _yaml(LM_TASKS / "mmlu" / "generative" / "_default_template_yaml")
MMLU_FILTERS = _filters(MMLU["filter_list"][0]["filter"])
MMLU_METRIC = {k: v for k, v in MMLU["metric_list"][0].items() if k not in ("metric", "aggregation",
                                                                               "higher_is_better")}


def strip_thinking(task: str, reply: str) -> str:
    if task in LMMS_TASKS:
        return reply.partition("</think>")[2].strip()
    return reply.split("</think>")[-1].lstrip()


def score(row: dict, reply: str) -> dict[str, float]:
    task, target = row["task"], row["target"]
    if task == "docvqa_val":
        return {"anls": float(anls(list(target), [reply])["anls"])}
    if task == "chartqa_test":
        return {"relaxed_accuracy": chartqa.chartqa_process_results({"type": row["type"], "answer": target},
                                                                    [reply])["relaxed_overall"]}
    if task == "textvqa_val":
        return {"vqa_accuracy": float(textvqa.textvqa_process_results({"answers": list(target), "question_id": 0},
                                                                      [reply])["exact_match"])}
    if task == "mmmu_val":
        doc = {"id": "validation_Art_1", "question_type": row["question_type"], "answer": target,
               "options": repr(row["choices"])}
        result = mmmu.mmmu_process_results(doc, [reply])["mmmu_acc"]
        _, acc = mmmu.evaluate_mmmu([result])
        return {"accuracy": float(acc["acc"])}
    if task == "videomme":
        doc = {"question_id": "001-1", "duration": "short", "domain": "x", "sub_category": "x", "task_type": "x",
               "videoID": "v", "answer": target}
        return {"accuracy": videomme.videomme_process_results(doc, [reply])["videomme_perception_score"]["score"]}
    if task == "charades_sta":
        key = f"v.mp4>>>caption>>>{list(target)}"
        return {"iou": charades._temporal_grounding_compute_metrics([{key: reply}])["mIOU"] / 100.0}
    if task == "gsm8k":
        out = {}
        for name, key in (("flexible-extract", "exact_match"), ("strict-match", "exact_match_strict")):
            pred = _apply(GSM8K_FILTERS[name], reply)
            out[key] = float(exact_match_hf_evaluate([pred], [target], **GSM8K_METRIC)["exact_match"])
        return out
    if task == "mmlu":
        pred = _apply(MMLU_FILTERS, reply)
        return {"accuracy": float(exact_match_hf_evaluate([pred], [target], **MMLU_METRIC)["exact_match"])}
    if task == "refcoco_val":
        boxes = refcoco._parse_pred_boxes(reply)
        if not boxes:
            return {"iou": 0.0}
        box = refcoco._scale_pred_to_pixel(boxes[0], target["width"], target["height"])
        return {"iou": float(refcoco._compute_iou(box, target["bbox"]))}
    raise SystemExit(f"unknown task {task}")


def main() -> None:
    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for row in rows:
        reply = row["reply"]
        deviation = None
        if row.get("thinking"):
            if "</think>" not in reply:
                deviation = "truncated_reasoning"
            reply = strip_thinking(row["task"], reply)
        if row["task"] in LMMS_TASKS:  # lmms-eval's ConfigurableTask.process_results strips generate_until
            reply = reply.strip()      # replies before a task's process_results or metric (api/task.py)
        _Guess.guessed = False
        scores = score(row, reply)
        out.append({"id": row["id"], "scores": scores, "random": _Guess.guessed, "deviation": deviation})
    with open(DATA / "expected.jsonl", "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    versions = {name: importlib.metadata.version(name) for name in ("lmms-eval", "lm-eval")}
    print(f"{DATA / 'expected.jsonl'}: {len(out)} rows ({versions}, python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()

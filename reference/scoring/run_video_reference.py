"""Score the video reply corpus with lmms-eval 0.7.3's own task code; write the expected values.

Reads `tests/data/reference_scoring/video_corpus.jsonl` (from `make_video_corpus.py`) and writes, beside it,
`video_expected.jsonl` (one line per reply: `{"id", "scores", "random", "deviation"}`) and
`video_expected_aggregates.jsonl` (one line per chunk of replies: `{"task", "ids", "value"}`, the task's own
aggregation over them). Runs the installed reference package, never the project. In the reference venv, from the
repository root (see `run_reference.py` for the venv):

    /work/venvs/ref/bin/python reference/scoring/run_video_reference.py

What runs (the entry points a real lmms-eval run calls):
- mvbench: `mvbench.utils.mvbench_process_results` per reply (score; `unanswered` when the reply is empty, the
  ones `mvbench_aggregate_results` leaves out) and `mvbench_aggregate_results` per chunk;
- longvideobench_val: `longvideobench.utils.longvideobench_process_results` (its `parsed_pred` against the
  answer letter; a reply where it draws `random.choice` is intercepted and marked `random`) and
  `longvideobench_aggregate_results` per chunk (over the replies without a random draw);
- mlvu_dev: `mlvu.utils.mlvu_process_results` per reply and `mlvu_aggregate_results_dev` per chunk (each chunk
  holds every task type);
- lvbench: `lvbench.utils.lvbench_process_results`; its aggregation is the plain mean.
lmms-eval's longvideobench utils import `decord` for frame loading, which scoring never calls: a stand-in module
is registered when decord is not installed. Thinking replies are split as lmms-eval's qwen3_vl model does (text
after the first `</think>`, stripped); one without `</think>` is marked `deviation: truncated_reasoning` (a
deliberate parse failure here) and left out of agreement and of the chunks.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import sys
import types
from pathlib import Path

try:
    import decord  # noqa: F401
except ImportError:
    sys.modules["decord"] = types.SimpleNamespace(VideoReader=None, cpu=None)

from lmms_eval.tasks.longvideobench import utils as lvb  # noqa: E402
from lmms_eval.tasks.lvbench import utils as lvbench  # noqa: E402
from lmms_eval.tasks.mlvu import utils as mlvu  # noqa: E402
from lmms_eval.tasks.mvbench import utils as mvbench  # noqa: E402
from loguru import logger  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring"
MLVU_TYPES = {"anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning"}
CHUNK = 28  # replies per aggregate (a multiple of MLVU's 7 task types and LongVideoBench's 4 duration groups)


class _Guess:
    """Stands in for `random` inside lmms-eval's LongVideoBench parser: records that it guessed."""

    guessed = False

    def choice(self, seq: list) -> object:
        _Guess.guessed = True
        return random.choice(seq)


lvb.random = _Guess()
logger.remove()


def lvb_doc(row: dict) -> dict:
    opts = row["choices"] + ["N/A"] * (5 - len(row["choices"]))
    return {"id": row["id"], "duration_group": row["duration_group"], "question_category": row["question_category"],
            "correct_choice": "ABCDE".index(row["answer"]), **{f"option{i}": o for i, o in enumerate(opts)}}


def score(row: dict, reply: str) -> tuple[dict[str, float], object]:
    """(per-sample values, the item the task's aggregation takes) for one reply."""
    task = row["task"]
    if task == "mvbench":
        out = mvbench.mvbench_process_results({"candidates": row["choices"], "answer": row["answer_text"]},
                                              [reply])["mvbench_accuracy"]
        vals = {"accuracy": float(out["score"])}
        if out["pred_answer"] == "":
            vals["unanswered"] = 1.0
        return vals, out
    if task == "longvideobench_val":
        out = lvb.longvideobench_process_results(lvb_doc(row), [reply])["lvb_acc"]
        return {"accuracy": float(out["parsed_pred"] == out["answer"])}, out
    if task == "mlvu_dev":
        doc = {"question": row["id"], "task_type": row["task_type"], "answer": row["answer"]}
        out = mlvu.mlvu_process_results(doc, [reply])["mlvu_percetion_score"]
        return {"accuracy": float(out["pred_answer"] == out["answer"])}, out
    if task == "lvbench":
        out = lvbench.lvbench_process_results({"answer": row["answer"]}, [reply])["lvbench_score"]
        return {"accuracy": float(out)}, float(out)
    raise SystemExit(f"unknown task {task}")


def aggregate(task: str, items: list) -> float:
    if task == "mvbench":
        return float(mvbench.mvbench_aggregate_results(items))
    if task == "longvideobench_val":
        return 100.0 * float(lvb.longvideobench_aggregate_results(items))
    if task == "mlvu_dev":
        return float(mlvu.mlvu_aggregate_results_dev(items))
    return 100.0 * sum(items) / len(items)


def main() -> None:
    rows = [json.loads(line) for line in (DATA / "video_corpus.jsonl").read_text().splitlines() if line.strip()]
    out, chunks = [], {}
    for row in rows:
        reply, deviation = row["reply"], None
        if row["thinking"]:
            if "</think>" not in reply:
                deviation = "truncated_reasoning"
            reply = reply.partition("</think>")[2].strip()
        reply = reply.strip()  # ConfigurableTask.process_results strips generate_until replies first
        _Guess.guessed = False
        vals, item = score(row, reply)
        out.append({"id": row["id"], "scores": vals, "random": _Guess.guessed, "deviation": deviation})
        if not deviation and not _Guess.guessed:
            chunks.setdefault((row["task"], row["split"]), []).append((row["id"], item))
    aggregates = []
    for (task, _), items in chunks.items():
        for i in range(0, len(items) - CHUNK + 1, CHUNK):
            part = items[i : i + CHUNK]
            if task == "mlvu_dev" and len({v["task_type"] for _, v in part}) < len(MLVU_TYPES):
                continue  # lmms-eval divides by all seven types; here the mean is over those present
            value = aggregate(task, [v for _, v in part])
            aggregates.append({"task": task, "ids": [k for k, _ in part], "value": value})
    with open(DATA / "video_expected.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in out)
    with open(DATA / "video_expected_aggregates.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in aggregates)
    version = importlib.metadata.version("lmms-eval")
    print(f"{DATA}: {len(out)} replies, {len(aggregates)} aggregates (lmms-eval {version}, python "
          f"{sys.version.split()[0]})")


if __name__ == "__main__":
    main()

"""Adapters for the video benchmarks of issue #16, each reading the dataset's own Hugging Face schema (the one
lmms-eval 0.7.3's task reads). Videos resolve as for every task (`adapters.resolve_video`: --media-root, the data
folder, `$HF_HOME/<data.cache_dir>`, each joined with the task's `video_dirs`).

- `mvbench` (OpenGVLab/MVBench, revision `video`, one JSON per subtask: video, question, candidates, answer =
  the right candidate's text): rows of the 20 subtask configs (`_config`), the video under the subtask's folder
  (`MVBENCH_FOLDERS`, lmms-eval's `DATA_LIST`), target the answer's letter. Ids `<subtask>/<row>`.
- `longvideobench` (longvideobench/LongVideoBench validation: id, question, option0..option4 with "N/A" for
  none, correct_choice, video_path, duration_group, question_category, ...).
- `mlvu` (sy1998/MLVU_dev test: video_name, question with its options inline, candidates, answer letter,
  task_type, question_id, duration).
- `lvbench` (lmms-eval/LVBench train: uid, key, type, video_path, question with its options inline or an
  `options` list, answer letter, question_type, time_reference).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.adapters import Context, Rows, Sample, adapter, resolve_video
from qwen3vl_eval.eval.parsers import LETTERS

# lmms-eval tasks/mvbench/utils.py DATA_LIST: the folder of each subtask's videos under the cache dir
MVBENCH_FOLDERS = {
    "object_interaction": "star/Charades_segment", "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment", "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation", "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos", "object_shuffle": "perception/videos", "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation", "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos", "scene_transition": "scene_qa/video",
    "state_change": "perception/videos", "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4", "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation", "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}

_INLINE_OPTION = re.compile(r"^\(([A-J])\)\s*(.*?)\s*$", re.MULTILINE)


def inline_options(question: str) -> list[str]:
    """The option texts of a question that lists them as "(A) text" lines (MLVU, LVBench)."""
    return [m.group(2) for m in _INLINE_OPTION.finditer(question)]


def _letter_answer(rows: Rows, task: str, i: int, answer: Any, n: int) -> str:
    """The stored answer letter, checked: one of the first `n` letters (TaskError naming the row otherwise)."""
    a = str(answer)
    if a not in LETTERS[: max(n, 1)]:
        raise TaskError(f"{rows.source}: {task} row {i}: field answer {a!r} is not an option letter")
    return a


@adapter("mvbench")
def _mvbench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    seen: dict[str, int] = {}
    for r in rows.rows:
        sub = str(r["_config"])
        k = seen[sub] = seen.get(sub, -1) + 1
        choices = [str(c) for c in r["candidates"]]
        if str(r["answer"]) not in choices:
            raise TaskError(f"{rows.source}: mvbench {sub} row {k}: field answer {r['answer']!r} is not one of "
                            "its candidates")
        if sub not in MVBENCH_FOLDERS:
            raise TaskError(f"{rows.source}: mvbench: unknown subtask {sub!r}")
        path, err = resolve_video(f"{MVBENCH_FOLDERS[sub]}/{r['video']}", ctx)
        yield Sample(f"{sub}/{k}", LETTERS[choices.index(str(r["answer"]))], str(r["question"]), choices=choices,
                     videos=[path], error=err, meta={"subtask": sub, "video": str(r["video"])})


@adapter("longvideobench")
def _longvideobench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for r in rows.rows:
        choices = [str(r[f"option{i}"]) for i in range(5) if r.get(f"option{i}") not in (None, "N/A")]
        correct = int(r["correct_choice"])
        if not 0 <= correct < len(choices):
            raise TaskError(f"{rows.source}: longvideobench {r['id']}: field correct_choice {correct} out of range")
        path, err = resolve_video(str(r["video_path"]), ctx)
        yield Sample(str(r["id"]), {"answer": LETTERS[correct], "choices": choices}, str(r["question"]),
                     choices=choices, videos=[path], error=err,
                     meta={"duration_group": r.get("duration_group"), "question_category": r.get("question_category"),
                           "topic_category": r.get("topic_category"), "video_id": r.get("video_id")})


@adapter("mlvu")
def _mlvu(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        question = str(r["question"])
        choices = [str(c) for c in r.get("candidates") or inline_options(question)]
        answer = _letter_answer(rows, "mlvu_dev", i, r["answer"], len(choices))
        path, err = resolve_video(str(r["video_name"]), ctx)
        yield Sample(str(i), {"answer": answer, "choices": choices, "task_type": str(r["task_type"])}, question,
                     choices=choices, videos=[path], error=err,
                     meta={"task_type": r["task_type"], "duration": r.get("duration"),
                           "question_id": r.get("question_id"), "video_name": r["video_name"]})


@adapter("lvbench")
def _lvbench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        question, options = str(r["question"]), [str(o) for o in r.get("options") or []]
        if options:  # lmms-eval appends an options list as "(A) text" lines, the form the inline options have
            question += "\n" + "\n".join(f"({LETTERS[k]}) {o}" for k, o in enumerate(options))
        choices = options or inline_options(question)
        answer = _letter_answer(rows, "lvbench", i, r["answer"], len(choices) or 4)
        qtype = r.get("question_type")
        path, err = resolve_video(str(r.get("video_path") or f"{r['key']}.mp4"), ctx)
        sid = str(r["uid"] if r.get("uid") is not None else i)
        yield Sample(sid, answer, question, choices=choices, videos=[path], error=err,
                     meta={"type": r.get("type"), "question_type": ",".join(qtype) if isinstance(qtype, list)
                           else qtype, "key": r.get("key"), "time_reference": r.get("time_reference")})

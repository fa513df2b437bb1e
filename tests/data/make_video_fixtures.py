"""Regenerate the real-schema fixtures of the video tasks of issue #16 (a few rows each, in the layout and column
types of the Hugging Face dataset lmms-eval 0.7.3 reads). Videos are not committed: the tests write tiny clips
with `tests/helpers.write_video` where the samples look for them.

    PYTHONPATH=. python tests/data/make_video_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
S, I64, F64, LS = pa.string(), pa.int64(), pa.float64(), pa.list_(pa.string())

# OpenGVLab/MVBench@video json/<subtask>.json: a list of {video, question, candidates, answer}
MVBENCH = {
    "action_sequence": ("3MSZA.mp4", "What happened after the person took the food?",
                        ["Ate the medicine.", "Tidied up the blanket.", "Put down the cup/glass/bottle.",
                         "Took the box."], "Ate the medicine."),
    "moving_count": ("video_10087.mp4", "How many metal objects enter the scene?", ["0", "1", "2", "3"], "2"),
    "action_prediction": ("A4UPX.mp4", "What will the person do next?",
                          ["Put down the pillow.", "Open the door.", "Take the book.", "Sit on the floor."],
                          "Open the door."),
    "episodic_reasoning": ("castle_s07e04_seg02_clip_14.mp4", "Why did Castle laugh?",
                           ["He heard a joke.", "He saw a dog.", "He won.", "He was tickled."], "He heard a joke."),
    "action_antonym": ("166583.webm", "What is the action performed by the person in the video?",
                       ["Pushing something from right to left", "Pushing something from left to right",
                        "not sure"], "Pushing something from left to right"),
    "action_count": ("video_5234.mp4", "How many times did the person launch objects on the table?",
                     ["2", "3", "4"], "3"),
    "scene_transition": ("G8Mng.mp4", "What's the right option for how the scenes in the video change?",
                         ["From the kitchen to the street.", "From the beach to the office.",
                          "From the forest to the river.", "From the car to the house."],
                         "From the kitchen to the street."),
    "object_shuffle": ("video_1733.mp4", "Where is the hidden object at the end of the game?",
                       ["Under the first object from the left.", "Under the second object from the left.",
                        "Under the third object from the left."], "Under the third object from the left."),
    "object_existence": ("video_11577.mp4", "Are there any moving cylinders when the video ends?",
                         ["not sure", "yes", "no"], "no"),
    "fine_grained_pose": ("S001C001P001R001A031_rgb.avi", "What is the pose performed by the person?",
                          ["pointing to something", "taking a selfie", "sitting down", "standing up"],
                          "pointing to something"),
    "unexpected_action": ("H_H_131_1500_1620.mp4", "What unexpected event contributes to the humor?",
                          ["The cat jumps into the box.", "The man slips.", "The dog sings.", "Nothing."],
                          "The man slips."),
    "moving_direction": ("video_10214.mp4", "Which direction does the red sphere move in the video?",
                         ["Up and to the left.", "Down and to the right.", "Not moving at all.",
                          "Up and to the right."], "Down and to the right."),
    "state_change": ("video_7612.mp4", "What is the final state of the paper?",
                     ["Torn apart.", "Folded.", "Unchanged."], "Folded."),
    "object_interaction": ("2DFKU.mp4", "Which object was tidied up by the person?",
                           ["The clothes.", "The blanket.", "The towel.", "The table."], "The blanket."),
    "character_order": ("video_10050.mp4", "What letters did the person type on the computer in order?",
                        ["x, n, f", "n, f, x", "f, x, n", "x, f, n"], "x, f, n"),
    "action_localization": ("P03_09_1.mp4", "During which part of the video does the action 'open door' occur?",
                            ["At the beginning of the video.", "In the middle of the video.",
                             "At the end of the video.", "Throughout the entire video."],
                            "At the end of the video."),
    "counterfactual_inference": ("video_14515.mp4", "Which of the following will happen if the cube is removed?",
                                 ["The sphere collides with the cylinder.", "The sphere stops.",
                                  "Nothing changes.", "The cylinder leaves."], "Nothing changes."),
    "fine_grained_action": ("yawning/giphy-p5ZlxRRhnpdcs_1.mp4", "What is the action performed by the person?",
                            ["yawning", "singing", "sneezing", "laughing"], "yawning"),
    "moving_attribute": ("video_10452.mp4", "What is the color of the object that is stationary?",
                         ["gray", "purple", "green", "red"], "purple"),
    "egocentric_navigation": ("xf7GnkT4hL2_0.mp4", "What should you do next to reach the sofa?",
                              ["Move forward.", "Stop.", "Turn left and move forward.", "Turn right."],
                              "Turn left and move forward."),
}
MVBENCH_EXTRA = ("166584.webm", "What is the action performed by the person in the video?",
                 ["Lifting something up", "Putting something down", "not sure"], "Putting something down")

# longvideobench/LongVideoBench validation-00000-of-00001.parquet
LVB_SCHEMA = pa.schema([("video_id", S), ("question", S), ("question_wo_referring_query", S), ("option0", S),
                        ("option1", S), ("option2", S), ("option3", S), ("option4", S), ("correct_choice", I64),
                        ("position", pa.list_(I64)), ("topic_category", S), ("question_category", S),
                        ("level", S), ("id", S), ("video_path", S), ("subtitle_path", S),
                        ("duration_group", I64), ("starting_timestamp_for_subtitles", F64), ("duration", F64),
                        ("view_count", I64)])
LVB = [("86CxyhFV9MI", "At the beginning, what color is the square?", ["red", "green", "blue", "yellow", "N/A"],
        0, "TAK", "S2E", 15, 12.5),
       ("_Dy9Jd1tLhI", "Which way does the square move after it turns red?",
        ["left", "right", "up", "down", "it stays"], 3, "KN", "T3E", 60, 48.0),
       ("B8kqXx8DSlA", "What is written on the sign after the man leaves?",
        ["STOP", "EXIT", "OPEN", "CLOSED", "N/A"], 2, "NP", "O2E", 600, 412.0),
       ("Xw5lFYbfe8c", "How many people are in the room at the end?", ["one", "two", "three", "four", "N/A"], 1,
        "LI", "SSS", 3600, 2900.0)]

# sy1998/MLVU_dev data/test-00000-of-00001.parquet (options inline in `question`, answer a letter)
MLVU_SCHEMA = pa.schema([("video_name", S), ("duration", F64), ("question", S), ("candidates", LS),
                         ("answer", S), ("task_type", S), ("question_id", S)])
MLVU = [("movie101_66.mp4", 246.0, "What color is the main male character in the video?",
         ["Yellow", "Red", "Green", "Blue"], "A", "plotQA"),
        ("movie101_67.mp4", 310.0, "What is the man holding at the end?", ["A cup", "A phone", "A book", "A key"],
         "C", "plotQA"),
        ("needle_32.mp4", 530.0, "What does the hand insert into the box?", ["A coin", "A card", "A pen", "A ring"],
         "B", "needle"),
        ("ego_35.mp4", 200.0, "What did I put in the drawer?", ["scissors", "a spoon", "tape", "a phone"], "D",
         "ego"),
        ("count_12.mp4", 420.0, "How many times does the person jump?", ["2", "3", "4", "5"], "B", "count"),
        ("order_8.mp4", 640.0, "In what order do the events happen?", ["1-2-3", "2-1-3", "3-2-1", "1-3-2"], "D",
         "order"),
        ("surveil_5.mp4", 180.0, "What kind of anomaly is in the video?", ["Fighting", "Robbery", "Arson", "None"],
         "C", "anomaly_reco"),
        ("AWA-6.mp4", 1500.0, "What is the main background of the video?",
         ["Grassland", "Snowfield", "Desert", "Forest"], "B", "topic_reasoning")]

# lmms-eval/LVBench data/train-00000-of-00001.parquet (options inline, answer a letter)
LVBENCH_SCHEMA = pa.schema([("key", S), ("type", S), ("uid", S), ("video_path", S), ("question", S),
                            ("answer", S), ("question_type", LS), ("time_reference", S)])
LVBENCH = [("Cm73ma6Ibcs", "sport", "1", "What year appears in the opening caption of the video?",
            ["1636", "1366", "1363", "1633"], "B", ["key information retrieval"], "00:15-00:19"),
           ("Cm73ma6Ibcs", "sport", "2", "Which team scores first?", ["the red team", "the blue team",
                                                                     "neither", "both at once"],
            "A", ["event understanding"], "03:10-03:40"),
           ("hHAy3eNkbGU", "documentary", "3", "What is the animal doing when the narrator appears?",
            ["sleeping", "eating", "running", "swimming"], "D", ["entity recognition", "reasoning"],
            "12:01-12:30")]


def inline(question: str, options: list[str]) -> str:
    return question + "\n" + "\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))


def write(path: Path, schema: pa.Schema, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def make_all(root: Path = HERE) -> None:
    for sub, (video, q, cands, ans) in MVBENCH.items():
        rows = [{"video": video, "question": q, "candidates": cands, "answer": ans}]
        if sub == "action_antonym":
            v, q2, c2, a2 = MVBENCH_EXTRA
            rows.append({"video": v, "question": q2, "candidates": c2, "answer": a2})
        (root / "mvbench" / "json").mkdir(parents=True, exist_ok=True)
        (root / "mvbench" / "json" / f"{sub}.json").write_text(json.dumps(rows, indent=1) + "\n")
    write(root / "longvideobench" / "validation-00000-of-00001.parquet", LVB_SCHEMA, [
        {"video_id": vid, "question": q, "question_wo_referring_query": q,
         **{f"option{k}": o for k, o in enumerate(opts)}, "correct_choice": c, "position": [1, 2],
         "topic_category": topic, "question_category": cat, "level": "L1-Perception", "id": f"{vid}_{k}",
         "video_path": f"{vid}.mp4", "subtitle_path": f"{vid}_en.json", "duration_group": group,
         "starting_timestamp_for_subtitles": 0.0, "duration": dur, "view_count": 1000 + k}
        for k, (vid, q, opts, c, topic, cat, group, dur) in enumerate(LVB)])
    write(root / "mlvu_dev" / "data" / "test-00000-of-00001.parquet", MLVU_SCHEMA, [
        {"video_name": v, "duration": d, "question": inline(q, c), "candidates": c, "answer": a, "task_type": t,
         "question_id": f"{t}_{k}"} for k, (v, d, q, c, a, t) in enumerate(MLVU)])
    write(root / "lvbench" / "data" / "train-00000-of-00001.parquet", LVBENCH_SCHEMA, [
        {"key": key, "type": t, "uid": uid, "video_path": f"{key}.mp4", "question": inline(q, opts), "answer": a,
         "question_type": qt, "time_reference": tr} for key, t, uid, q, opts, a, qt, tr in LVBENCH])


if __name__ == "__main__":
    make_all()
    print(f"video task fixtures written under {HERE}")

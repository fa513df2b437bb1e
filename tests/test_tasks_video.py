"""The video benchmarks of issue #16 (mvbench, longvideobench_val, mlvu_dev, lvbench): registry entries, adapters
on real-schema fixture rows (tests/data/<task>/, made by tests/data/make_video_fixtures.py), the prompts lmms-eval
sends, `score` with an oracle (100) and hand-worked replies, `run --data` on tiny generated clips, `tasks`
listing local availability, and the errors naming where data and videos were looked for."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from helpers import DATA, assert_clean_error, cli, oracle_prediction, write_preds, write_video

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.prompts import PROMPTS
from qwen3vl_eval.eval.task import load_registry, suites

REGISTRY = load_registry()
VIDEO_FIXTURES = {"mvbench": DATA / "mvbench", "longvideobench_val": DATA / "longvideobench",
                  "mlvu_dev": DATA / "mlvu_dev", "lvbench": DATA / "lvbench"}
LONG_BUDGET = {"fps": 2, "min_frames": 4, "max_frames": 512, "min_pixels": 3584, "max_pixels": 401408,
               "total_pixels": 19267584}


def samples_of(task: str, media_root: Path | None = None) -> list:
    return load_samples(REGISTRY[task], str(VIDEO_FIXTURES[task]), media_root=media_root)


def scored(task: str, preds: dict[str, str], out: Path, *extra: str) -> dict:
    args = ["score", "--task", task, "--predictions", str(write_preds(out / "p.jsonl", preds)), "--data",
            str(VIDEO_FIXTURES[task]), "--output", str(out / "o"), *extra]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "o" / task / "results.json").read_text())  # the run folder holds <task>/


def test_registry_data_ids_and_budgets():
    assert {"mvbench", "longvideobench_val", "mlvu_dev", "lvbench"} <= set(suites(REGISTRY)["videoqa"])
    want = {"mvbench": ("OpenGVLab/MVBench", "train", "video", "mvbench_video"),
            "longvideobench_val": ("longvideobench/LongVideoBench", "validation", "main", "datasets/longvideobench"),
            "mlvu_dev": ("sy1998/MLVU_dev", "test", "main", "mlvu"),
            "lvbench": ("lmms-eval/LVBench", "train", "main", "lvbench")}
    for task in want:
        spec = REGISTRY[task]
        assert (spec.data.path, spec.data.split, spec.data.revision, spec.data.cache_dir) == want[task], task
        assert spec.reference.startswith("lmms-eval 0.7.3 tasks/") and spec.flexible, task
    assert len(REGISTRY["mvbench"].data.configs) == 20
    assert REGISTRY["mvbench"].media["video"] == {"fps": 2, "max_frames": 128, "max_pixels": 786432}
    for task in ("longvideobench_val", "mlvu_dev", "lvbench"):
        assert REGISTRY[task].media["video"] == LONG_BUDGET, task
    assert REGISTRY["mlvu_dev"].all_metrics == ["m_avg", "accuracy", "m_avg_flexible", "accuracy_flexible"]


def test_adapters_read_the_real_schemas():
    mv = samples_of("mvbench")
    assert len(mv) == 21 and [s.id for s in mv[:2]] == ["action_sequence/0", "moving_count/0"]
    assert mv[1].target == "C" and mv[1].choices == ["0", "1", "2", "3"] and mv[1].meta["subtask"] == "moving_count"
    assert [s.id for s in mv if s.meta["subtask"] == "action_antonym"] == ["action_antonym/0", "action_antonym/1"]
    assert "clevrer/video_validation/video_10087.mp4" in mv[1].error and "mvbench_video" in mv[1].error
    lvb = samples_of("longvideobench_val")
    assert [s.target["answer"] for s in lvb] == ["A", "D", "C", "B"]
    assert len(lvb[0].choices) == 4 and len(lvb[1].choices) == 5  # "N/A" options are not options
    assert [s.meta["duration_group"] for s in lvb] == [15, 60, 600, 3600]
    ml = samples_of("mlvu_dev")
    assert ml[0].target == {"answer": "A", "choices": ["Yellow", "Red", "Green", "Blue"], "task_type": "plotQA"}
    lv = samples_of("lvbench")
    assert [s.id for s in lv] == ["1", "2", "3"] and lv[0].target == "B"
    assert lv[0].choices == ["1636", "1366", "1363", "1633"]  # read from the question's "(A) ..." lines
    assert lv[2].meta["question_type"] == "entity recognition,reasoning"


def test_prompts_are_lmms_evals():
    mv, lvb, ml, lv = (samples_of(t)[0] for t in ("mvbench", "longvideobench_val", "mlvu_dev", "lvbench"))
    text = {t: PROMPTS[REGISTRY[t].prompt].text(s) for t, s in
            (("mvbench", mv), ("longvideobench_val", lvb), ("mlvu_dev", ml), ("lvbench", lv))}
    assert text["mvbench"] == ("Question:What happened after the person took the food?\nOption:\n(A) Ate the "
                               "medicine.\n(B) Tidied up the blanket.\n(C) Put down the cup/glass/bottle.\n(D) Took "
                               "the box.\nOnly give the best option.\n")
    assert text["longvideobench_val"] == ("At the beginning, what color is the square?\nA. red\nB. green\nC. blue\n"
                                          "D. yellow\nAnswer with the option's letter from the given choices "
                                          "directly.\n")
    assert text["mlvu_dev"] == ("What color is the main male character in the video?\n(A) Yellow\n(B) Red\n"
                                "(C) Green\n(D) Blue\nOnly give the best option.\nBest option: (")
    assert text["lvbench"] == ("What year appears in the opening caption of the video?\n(A) 1636\n(B) 1366\n"
                               "(C) 1363\n(D) 1633\nAnswer the question with the option letter")


@pytest.mark.parametrize("task", list(VIDEO_FIXTURES))
def test_oracle_scores_100(task, tmp_path):
    spec = REGISTRY[task]
    samples = samples_of(task)
    res = scored(task, {s.id: oracle_prediction(spec.scorer, s.target) for s in samples}, tmp_path)
    assert res["n_samples"] == len(samples) and res["n_errors"] == 0
    for m in spec.all_metrics:
        assert res["metrics"][m] == pytest.approx(100.0), m
    assert res["metrics"]["parse_failure_rate"] == 0.0 and res["reference"] == spec.reference
    for fld in spec.group_by:  # every group of every breakdown at 100 too
        assert all(g[spec.primary_metric] == pytest.approx(100.0) for g in res["breakdowns"][fld].values())
    lines = [json.loads(x) for x in (tmp_path / "o" / task / "samples.jsonl").read_text().splitlines()]
    assert all(set(spec.group_by) <= set(rec["meta"]) for rec in lines)  # score and compare regroup from these


def test_mvbench_hand_worked(tmp_path):
    preds = {"action_sequence/0": "(A) Ate the medicine.",  # A: right
             "moving_count/0": "",  # empty: not counted (lmms-eval's denominator is the non-empty replies)
             "action_prediction/0": "I think a person opens the door",  # the article reads as A: wrong (B)
             "action_antonym/0": "B",  # right
             "action_antonym/1": "C.",  # wrong (B)
             "episodic_reasoning/0": "a. He heard a joke.",  # option line "a." -> A: right
             "fine_grained_action/0": "The person is yawning."}  # no letter: wrong; the flexible reading: right
    res = scored("mvbench", preds, tmp_path, "--missing", "skip")  # the 14 samples without a reply left out
    m = res["metrics"]
    assert m["mvbench_accuracy"] == pytest.approx(100 * 3 / 6)
    assert m["mvbench_accuracy_flexible"] == pytest.approx(100 * 4 / 7)  # the empty reply counts, as wrong
    by = res["breakdowns"]["subtask"]
    assert by["action_antonym"]["mvbench_accuracy"] == pytest.approx(50.0) and by["action_antonym"]["n"] == 2
    assert by["moving_count"]["mvbench_accuracy"] == 0.0  # none answered: 0, as the reference
    assert res["n_missing"] == 14 and res["n_parse_failures"] == 1


def test_longvideobench_hand_worked(tmp_path):
    samples = samples_of("longvideobench_val")
    # the reference's random letter for a reply without A-E: seeded by the sample id (MMMU's fallback seed 0)
    guess = random.Random(f"0:{samples[2].id}").choice("ABCD")
    assert guess == "C"
    preds = {samples[0].id: "The answer is A.",  # right
             samples[1].id: "Based on the video, the square moves down (D).",  # first capital A-E: B, wrong (D)
             samples[2].id: "the sign says open",  # no A-E: the seeded guess C, right; flexible: option text
             samples[3].id: "B"}  # right
    res = scored("longvideobench_val", preds, tmp_path)
    assert res["metrics"]["accuracy"] == pytest.approx(75.0) and res["n_random_fallback"] == 1
    assert res["metrics"]["accuracy_flexible"] == pytest.approx(100.0)
    by = res["breakdowns"]["duration_group"]
    assert {k: v["accuracy"] for k, v in by.items()} == {"15": 100.0, "60": 0.0, "600": 100.0, "3600": 100.0}


def test_mlvu_hand_worked(tmp_path):
    preds = ["A) Yellow",  # plotQA right
             "B",  # plotQA wrong (C)
             "B) A card",  # needle right: the leading letter outranks "A "
             "I think it is C",  # ego wrong (D)
             "(B)", "D",  # count, order right
             "",  # anomaly_reco: no answer
             "The best answer is B."]  # topic_reasoning right
    res = scored("mlvu_dev", {str(i): p for i, p in enumerate(preds)}, tmp_path)
    m = res["metrics"]
    # M-Avg: mean of the 7 task types (plotQA 0.5, needle 1, ego 0, count 1, order 1, anomaly 0, topic 1)
    assert m["m_avg"] == pytest.approx(100 * 4.5 / 7) and m["accuracy"] == pytest.approx(100 * 5 / 8)
    assert m["m_avg_flexible"] == pytest.approx(100 * 4.5 / 7)
    assert res["breakdowns"]["task_type"]["plotQA"]["accuracy"] == pytest.approx(50.0)


def test_lvbench_hand_worked(tmp_path):
    res = scored("lvbench", {"1": "(B) 1366", "2": "The answer is C", "3": ""}, tmp_path)
    assert res["metrics"]["accuracy"] == pytest.approx(100 / 3) and res["n_parse_failures"] == 1
    assert res["breakdowns"]["type"]["sport"]["accuracy"] == pytest.approx(50.0)


@pytest.mark.parametrize("task", list(VIDEO_FIXTURES))
def test_run_on_fixture_rows_with_tiny_clips(task, tmp_path):
    media = tmp_path / "media"
    for s in samples_of(task, media)[:2]:  # a missing video is looked for first at --media-root/<name>
        Path(s.videos[0]).parent.mkdir(parents=True, exist_ok=True)
        write_video(Path(s.videos[0]), frames=8, fps=4)
    assert all(s.error is None for s in samples_of(task, media)[:2])
    out = tmp_path / "run"
    r = cli("run", "--task", task, "--model", "tiny", "--data", VIDEO_FIXTURES[task], "--media-root", media,
            "--limit", "2", "--max-new-tokens", "4", "--device", "cpu", "--output", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / task / "results.json").read_text())
    assert res["n_samples"] == 2 and res["n_errors"] == 0 and res["config"]["media"]["video"]
    recs = [json.loads(x) for x in (out / task / "samples.jsonl").read_text().splitlines()]
    assert all(rec["meta"] and rec["prediction"] is not None for rec in recs)


def test_missing_videos_and_data_are_one_clear_error(tmp_path, monkeypatch):
    r = cli("run", "--task", "mvbench", "--model", "tiny", "--data", VIDEO_FIXTURES["mvbench"], "--media-root",
            tmp_path, "--limit", "2", "--output", tmp_path / "o")
    assert_clean_error(r, "star/Charades_segment/3MSZA.mp4", "--media-root")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds"))
    for task in VIDEO_FIXTURES:
        with pytest.raises(TaskError) as e:
            load_samples(REGISTRY[task])
        msg = str(e.value)
        assert REGISTRY[task].data.path in msg and str(tmp_path / "hub") in msg and "--data" in msg, msg


def test_mvbench_layouts(tmp_path, monkeypatch):
    ref = [(s.id, s.target) for s in samples_of("mvbench")]
    # the Hub's parquet conversion: <subtask>/train/0000.parquet
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in sorted((DATA / "mvbench" / "json").glob("*.json")):
        (tmp_path / "pq" / f.stem / "train").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(json.loads(f.read_text())), tmp_path / "pq" / f.stem / "train" /
                       "0000.parquet")
    got = load_samples(REGISTRY["mvbench"], str(tmp_path / "pq"))
    assert [(s.id, s.target) for s in got] == ref
    # one subtask's file alone is read as that subtask
    one = load_samples(REGISTRY["mvbench"], str(DATA / "mvbench" / "json" / "action_antonym.json"))
    assert [s.id for s in one] == ["action_antonym/0", "action_antonym/1"]
    # a folder lacking some subtasks names them
    shutil.copytree(DATA / "mvbench", tmp_path / "part")
    (tmp_path / "part" / "json" / "state_change.json").unlink()
    with pytest.raises(TaskError, match="state_change"):
        load_samples(REGISTRY["mvbench"], str(tmp_path / "part"))
    # a Hub snapshot of the pinned revision is found, and `tasks` says so
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "datasets--OpenGVLab--MVBench"
    shutil.copytree(DATA / "mvbench", repo / "snapshots" / "abc1234")
    (repo / "refs").mkdir()
    (repo / "refs" / "video").write_text("abc1234")
    assert len(load_samples(REGISTRY["mvbench"])) == 21
    r = cli("tasks")
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[2].strip(): line for line in r.output.splitlines() if line.count("│") > 6}
    assert "│ yes" in rows["mvbench"]  # (its snapshot folder follows, wrapped in the cell)
    for task in ("longvideobench_val", "mlvu_dev", "lvbench"):
        assert rows[task].rstrip("│ ").endswith("no"), rows[task]


def test_compare_reads_the_group_metrics(tmp_path):
    samples = samples_of("mlvu_dev")
    oracle = {s.id: s.target["answer"] for s in samples}
    scored("mlvu_dev", oracle, tmp_path / "a")
    scored("mlvu_dev", {**oracle, "0": "D"}, tmp_path / "b")  # one plotQA question wrong: M-Avg -1/14
    out = tmp_path / "cmp"
    r = cli("compare", tmp_path / "a" / "o" / "mlvu_dev", tmp_path / "b" / "o" / "mlvu_dev", "--output", out,
            "--json", out / "c.json", "--no-charts", "--resamples", "200")
    assert r.exit_code == 0, r.output
    rows = {(m["metric"]): m for m in json.loads((out / "c.json").read_text())["comparisons"][0]["metrics"]}
    assert rows["m_avg"]["delta"] == pytest.approx(-100 / 14)
    assert rows["accuracy"]["delta"] == pytest.approx(-100 / 8) and rows["accuracy"]["ci"] is not None
    assert rows["m_avg"]["ci"] is None  # not the mean of per-sample scores: no paired interval, said so

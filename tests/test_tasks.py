"""Task registry and schema, suites, `include:`, and the dataset adapters on every kind of local data."""

from pathlib import Path

import pytest
from helpers import DATA, FIXTURES, REAL, SYNTH, cli

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.media import image_source
from qwen3vl_eval.eval.metrics import METRICS, SCORERS
from qwen3vl_eval.eval.parsers import PARSERS
from qwen3vl_eval.eval.prompts import PROMPTS
from qwen3vl_eval.eval.task import _read_yaml, load_registry, parse_task, resolve_tasks, suites
from qwen3vl_eval.processor.image import image_size


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_registry_has_the_floor(registry):
    assert set(REAL + SYNTH) <= set(registry)
    s = suites(registry)
    assert set(s["imageqa"]) == {"docvqa_val", "chartqa_test", "textvqa_val", "mmmu_val", "ocrbench", "infovqa_val",
                                 "ai2d_test", "mmbench_en_dev", "mmstar", "realworldqa", "mathvista_testmini",
                                 "hallusionbench"}
    assert set(s["videoqa"]) == {"videomme", "mvbench", "longvideobench_val", "mlvu_dev", "lvbench"}
    assert s["temporal_grounding"] == ["charades_sta"]
    assert set(s["grounding"]) == {"refcoco_val", "refcoco_testA", "refcoco_testB", "screenspot_v2"}
    assert set(s["text"]) == {"mmlu", "gsm8k"} and set(s["smoke"]) == set(SYNTH)


def test_every_task_names_registered_parts(registry):
    for spec in registry.values():
        assert isinstance(spec.version, int)
        assert spec.prompt in PROMPTS and spec.parser in PARSERS and spec.scorer in SCORERS
        assert all(m in METRICS for m in spec.metrics)
        if spec.data.source == "hf":
            assert spec.data.path and spec.data.revision


def test_data_ids(registry):
    want = {"docvqa_val": ("lmms-lab-encoder/DocVQA", "DocVQA", "validation"),
            "chartqa_test": ("lmms-lab-encoder/ChartQA", None, "test"),
            "textvqa_val": ("lmms-lab-encoder/textvqa", None, "validation"),
            "mmmu_val": ("lmms-lab-encoder/MMMU", None, "validation"),
            "videomme": ("lmms-eval/Video-MME", "videomme", "test"),
            "charades_sta": ("lmms-eval/charades_sta", None, "test"),
            "refcoco_testA": ("lmms-lab-encoder/RefCOCO", None, "testA"),
            "mmlu": ("cais/mmlu", "all", "test"), "gsm8k": ("openai/gsm8k", "main", "test")}
    for task, (path, name, split) in want.items():
        d = registry[task].data
        assert (d.path, d.name, d.split) == (path, name, split), task


def test_include_merges_template(registry):
    spec = registry["refcoco_testB"]
    assert spec.data.path == "lmms-lab-encoder/RefCOCO" and spec.data.split == "testB"
    assert spec.metrics == ["acc@0.5", "miou"] and spec.suites == ["grounding"]


def test_schema_errors(tmp_path):
    base = _read_yaml(Path(load_registry()["mmlu"].source_file))
    with pytest.raises(TaskError, match="unknown key"):
        parse_task({**base, "doc_to_text": "x"}, "t.yaml")
    with pytest.raises(TaskError, match="field parser: unknown 'nope'"):
        parse_task({**base, "parser": "nope"}, "t.yaml")
    with pytest.raises(TaskError, match="missing key"):
        parse_task({k: v for k, v in base.items() if k != "version"}, "t.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(TaskError, match="bad.yaml"):
        load_registry(tmp_path)


def test_resolve_tasks(registry):
    assert [s.task for s in resolve_tasks("mmlu,text", registry)] == ["mmlu", "gsm8k"]
    assert len(resolve_tasks("smoke", registry)) == 5
    with pytest.raises(TaskError, match="no such task or suite"):
        resolve_tasks("nope", registry)


@pytest.mark.parametrize("task", REAL)
def test_fixture_samples(registry, task, tmp_path):
    samples = load_samples(registry[task], str(FIXTURES[task]), media_root=tmp_path)
    assert samples and len({s.id for s in samples}) == len(samples)
    for s in samples:
        for ref in s.images:
            assert image_size(image_source(ref))[0] > 0


def test_adapter_details(registry):
    rc = load_samples(registry["refcoco_val"], str(DATA / "refcoco"))
    assert [s.id for s in rc] == ["0/0", "0/1", "1/0"]
    assert rc[2].target == {"bbox": [80.5, 30.25, 140.5, 80.25], "width": 160, "height": 120}
    mm = load_samples(registry["mmmu_val"], str(DATA / "mmmu"))
    assert mm[0].choices == ["Yes", "No", "Maybe", "Unknown"] and len(mm[1].images) == 2
    assert mm[0].meta["subject"] == "Accounting" and mm[2].choices == []
    vm = load_samples(registry["videomme"], str(DATA / "videomme"))
    assert vm[0].choices[0] == "red" and vm[0].target == "A" and vm[0].error and "vid001" in vm[0].error
    ch = load_samples(registry["charades_sta"], str(DATA / "charades_sta"))
    assert ch[2].target == [1.5, 4.25] and ch[0].target[1] == pytest.approx(6.9, abs=0.01)  # float16
    gs = load_samples(registry["gsm8k"], str(DATA / "gsm8k" / "test.jsonl"))
    assert [s.target for s in gs] == ["5", "1200", "28"]
    ml = load_samples(registry["mmlu"], str(DATA / "mmlu"))
    assert [s.target for s in ml] == ["C", "B", "B", "D"]


def test_videos_resolve_against_media_root(registry, tmp_path):
    (tmp_path / "Charades_v1_480").mkdir()
    for n in ("AO8RW.mp4", "Y6R7T.mp4"):
        (tmp_path / "Charades_v1_480" / n).write_bytes(b"")
    ch = load_samples(registry["charades_sta"], str(DATA / "charades_sta"), media_root=tmp_path)
    assert all(s.error is None and s.videos[0].startswith(str(tmp_path)) for s in ch)


def test_save_to_disk_and_datasets_cache_layouts(registry, tmp_path):
    import datasets

    ref = load_samples(registry["docvqa_val"], str(DATA / "docvqa"))
    ds = datasets.Dataset.from_parquet(str(DATA / "docvqa/DocVQA/validation-00000-of-00001.parquet"))
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "dict"))
    for folder in ("single", "dict"):
        got = load_samples(registry["docvqa_val"], str(tmp_path / folder))
        assert [(s.id, s.target) for s in got] == [(s.id, s.target) for s in ref]
        assert image_size(image_source(got[0].images[0])) == image_size(image_source(ref[0].images[0]))


def test_missing_data_is_one_clear_error(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds"))
    with pytest.raises(TaskError) as e:
        load_samples(registry["docvqa_val"])
    msg = str(e.value)
    assert "lmms-lab-encoder/DocVQA" in msg and str(tmp_path / "hub") in msg and "huggingface-cli download" in msg
    with pytest.raises(TaskError, match="other/name"):
        load_samples(registry["docvqa_val"], "other/name@v2")
    with pytest.raises(TaskError, match="no such file"):
        load_samples(registry["docvqa_val"], str(tmp_path / "nothing.parquet"))


def test_hub_cache_snapshot_is_found(registry, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "datasets--cais--mmlu"
    shutil.copytree(DATA / "mmlu", repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert len(load_samples(registry["mmlu"])) == 4


def test_tasks_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    r = cli("tasks")
    assert r.exit_code == 0, r.output
    for name in ["docvqa_val", "refcoco_testB", "synth_text", "gsm8k", "lmms-eval/Video-MME", "r1@0.5"]:
        assert name in r.output

"""`qwen3vl-eval parity` on the committed golden cases, a corrupted case (exit 1) and malformed ones (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import cli
from safetensors import safe_open
from safetensors.torch import save_file

GOLDEN = Path(__file__).resolve().parents[1] / "reference" / "golden"
CASES = sorted(p for p in GOLDEN.iterdir() if (p / "golden.safetensors").is_file())


def parity(*args: str):
    return cli("parity", *args)


def _rewrite(case: Path, edit) -> None:
    """Apply `edit(tensors, metadata)` to a case's golden.safetensors."""
    with safe_open(case / "golden.safetensors", framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors, meta)
    save_file(tensors, str(case / "golden.safetensors"), metadata=meta)


@pytest.fixture
def image_case(tmp_path) -> Path:
    return Path(shutil.copytree(GOLDEN / "image", tmp_path / "image"))  # symlinked models are copied as folders


def test_committed_cases_exist():
    names = {p.name for p in CASES}
    assert {"image", "batch2_images", "video", "image_video", "text_only", "variant"} <= names


def test_all_committed_cases_pass_fp32(tmp_path):
    out = tmp_path / "rows.json"
    dump = tmp_path / "dump"
    result = parity(*map(str, CASES), "--device", "cpu", "--dtype", "float32", "--atol", "1e-5", "--rtol", "1e-4",
                    "--json", str(out), "--dump", str(dump))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert rows and all(r["passed"] for r in rows)
    greedy = [r for r in rows if r["key"] == "generate.greedy"]
    assert len(greedy) == len(CASES) and all(r["max_abs_err"] == 0 for r in greedy)
    assert max(r["max_rel_err"] for r in rows) < 1e-5
    with safe_open(dump / "video.safetensors", framework="pt") as f:
        assert {"logits", "text.position_ids", "vision.merger", "generate.greedy"} <= set(f.keys())


def test_corrupted_tensor_fails_naming_the_key(image_case):
    def edit(t, meta):
        t["text.layers.1"][0, -1, 0] += 1e-3

    _rewrite(image_case, edit)
    result = parity(str(image_case), "--device", "cpu")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "text.layers.1" in result.output.split("FAIL")[-1]


def test_greedy_mismatch_fails(image_case):
    def edit(t, meta):
        t["generate.greedy"][0, 3] += 1

    _rewrite(image_case, edit)
    result = parity(str(image_case), "--device", "cpu")
    assert result.exit_code == 1 and "generate.greedy" in result.output.split("FAIL")[-1]


def test_missing_or_unknown_key_is_a_failure(image_case):
    def edit(t, meta):
        t["vision.blocks.99"] = torch.zeros(1)

    _rewrite(image_case, edit)
    result = parity(str(image_case), "--device", "cpu")
    assert result.exit_code == 1 and "vision.blocks.99" in result.output


@pytest.mark.parametrize("breakage, message", [
    ("no_dir", "no such golden case folder"),
    ("no_golden", "missing golden.safetensors"),
    ("bad_format", "metadata format"),
    ("no_input_ids", "missing input.input_ids"),
    ("float_ids", "input.input_ids must be a 2-D int64"),
    ("not_safetensors", "not a readable safetensors file"),
])
def test_malformed_cases_exit_2_with_one_line(image_case, breakage, message):
    case = image_case
    if breakage == "no_dir":
        case = image_case.parent / "absent"
    elif breakage == "no_golden":
        (case / "golden.safetensors").unlink()
    elif breakage == "not_safetensors":
        (case / "golden.safetensors").write_bytes(b"not a safetensors file")
    else:
        def edit(t, meta):
            if breakage == "bad_format":
                meta["format"] = "something-else/2"
            elif breakage == "no_input_ids":
                del t["input.input_ids"]
            else:
                t["input.input_ids"] = t["input.input_ids"].float()

        _rewrite(case, edit)
    result = parity(str(case), "--device", "cpu")
    assert result.exit_code == 2, result.output
    err = result.stderr if result.stderr_bytes is not None else result.output
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err

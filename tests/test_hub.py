"""`--model org/name@REV` resolved through the local Hugging Face cache as huggingface_hub lays it out (issue #15):
branches and tags in `refs/`, full and unique short commit hashes in `snapshots/`; the download hint keeps REV."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3vl_eval.checkpoints.hub import resolve_model
from qwen3vl_eval.errors import CheckpointError

MAIN = "a1b2c3d4" + "0" * 32
TAG = "a1b2ffff" + "1" * 32
OTHER = "9f9f9f9f" + "2" * 32


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "hub" / "models--org--Model-1.5"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1.0").write_text(TAG + "\n")
    for h in (MAIN, TAG, OTHER):
        (repo / "snapshots" / h).mkdir(parents=True)
        (repo / "snapshots" / h / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots"


@pytest.mark.parametrize("rev,commit", [("", MAIN), ("@main", MAIN), ("@v1.0", TAG), (f"@{OTHER}", OTHER),
                                        ("@9f9f9f9", OTHER), ("@a1b2f", TAG)])
def test_revision_forms(cache: Path, rev: str, commit: str) -> None:
    assert resolve_model(f"org/Model-1.5{rev}") == cache / commit


def test_ambiguous_short_hash(cache: Path) -> None:
    with pytest.raises(CheckpointError, match="matches 2 cached snapshots"):
        resolve_model("org/Model-1.5@a1b2")


def test_download_hint_keeps_the_revision(cache: Path) -> None:
    with pytest.raises(CheckpointError) as e:
        resolve_model("org/Model-1.5@v2.0")
    assert "`huggingface-cli download org/Model-1.5 --revision v2.0`" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        resolve_model("org/Absent")
    assert "`huggingface-cli download org/Absent` " in str(e.value)


@pytest.mark.parametrize("name", ["org/model.safetensors", "not-a-hub-id", "a/b/c"])
def test_not_a_hub_id(cache: Path, name: str) -> None:
    with pytest.raises(CheckpointError, match="not a Hub id"):
        resolve_model(name)

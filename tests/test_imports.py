"""Import direction: `model/` and `processor/` import nothing above them; commands resolve --model once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import qwen3vl_eval
from qwen3vl_eval.commands import resolve_target
from qwen3vl_eval.errors import InputError

PKG = Path(qwen3vl_eval.__file__).parent
# errors and jsonio (bounded JSON reading, which imports only errors) are the bottom of the package
ALLOWED = {"model": ("errors", "jsonio", "runtime", "model"), "processor": ("errors", "jsonio", "processor")}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {m for m in found if m.startswith("qwen3vl_eval.")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_packages_import_nothing_above_them(package):
    wrong = [f"{f.name}: {m}" for f in sorted((PKG / package).glob("*.py")) for m in _imports(f)
             if m.split(".")[1] not in ALLOWED[package]]
    assert not wrong, wrong


def test_resolve_target_once(tiny_ckpt):
    target = resolve_target(str(tiny_ckpt), "cpu", "auto")
    assert target.path == tiny_ckpt and target.name == str(tiny_ckpt)
    assert target.device == torch.device("cpu") and target.dtype == torch.float32
    assert resolve_target(None, "cpu", "bfloat16").path is None
    with pytest.raises(InputError, match="no such checkpoint folder"):
        resolve_target("no/such/dir/x")
    with pytest.raises(InputError, match="--dtype"):
        resolve_target(str(tiny_ckpt), "cpu", "int3")

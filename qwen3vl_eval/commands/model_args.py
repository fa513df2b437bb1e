"""`--model-args key=value,...`, the lm-evaluation-harness / lmms-eval spelling, mapped onto this CLI's own options
(`dtype=bfloat16,max_pixels=802816` is `--dtype bfloat16 --max-pixels 802816`). A key this CLI has no option for,
or one the command line also gives as its flag, is a usage error (exit 2) naming it."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from qwen3vl_eval.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

# model-args key -> the option (parameter name) it sets; lmms-eval's names beside ours
KEYS: dict[str, str] = {
    "dtype": "dtype", "torch_dtype": "dtype", "device": "device", "device_map": "device",
    "min_pixels": "min_pixels", "max_pixels": "max_pixels", "total_pixels": "total_pixels", "fps": "fps",
    "max_frames": "max_frames", "max_num_frames": "max_frames", "max_new_tokens": "max_new_tokens",
    "batch_size": "batch_size", "video_prompt": "video_prompt", "attn_implementation": "attention",
}
ATTENTION = "sdpa"  # the one attention implementation here (flash kernels are chosen by SDPA on CUDA)


def parse_model_args(text: str, params: dict[str, type], given: Callable[[str], bool]) -> dict[str, Any]:
    """The options `text` sets, by parameter name, converted to each parameter's type. `params`: the command's
    parameters and their types; `given(name)`: whether the command line gave that option itself."""
    out: dict[str, Any] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"--model-args {item!r}: expected key=value")
        if key == "pretrained":
            raise InputError("--model-args pretrained: give the checkpoint with --model")
        name = KEYS.get(key)
        if name == "attention":
            if value != ATTENTION:
                raise InputError(f"--model-args {key}={value}: this implementation has {ATTENTION} only")
            continue
        if name is None or name not in params:
            known = ", ".join(k for k, v in KEYS.items() if v in params or v == "attention")
            raise InputError(f"--model-args {key}: not an option of this command (known: {known})")
        flag = "--" + name.replace("_", "-")
        if given(name) or name in out:
            raise InputError(f"--model-args {key}={value}: {flag} is given twice; give it once")
        try:
            out[name] = params[name](value)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(params[name], "a string")
            raise InputError(f"--model-args {key}={value}: {flag} takes {kind}") from None
    return out


def with_model_args(fn: F) -> F:
    """Applies the command's `model_args` option to its other options before it runs; the command takes
    `command` (its typer.Context) and `model_args` parameters."""
    hints = typing.get_type_hints(fn)
    params = {n: _base(hints[n]) for n in inspect.signature(fn).parameters if n not in ("command", "model_args")}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("model_args"):
            ctx = kwargs["command"]
            kwargs.update(parse_model_args(
                kwargs["model_args"], params,
                lambda name: ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")))
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _base(hint: Any) -> type:
    """The value type of a parameter's annotation: `int` for `int`, `Optional[int]` or `Annotated[int, ...]`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    while typing.get_origin(hint) is not None and args:
        hint = args[0]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint if isinstance(hint, type) else str

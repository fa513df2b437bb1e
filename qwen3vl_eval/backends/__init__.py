"""Model backends behind one contract (`qwen3vl_eval.backends.base.Backend`): `chat(conversations, params) ->
list[Reply]`, a `Timings` record, `info()` and `close()`.

- `native`: `qwen3vl_eval.backends.native.Engine`, this package's implementation (options: model, device, dtype,
  video_prompt, fast, compile, vision_cache_mb).
- `hf`: `qwen3vl_eval.backends.hf.HFBackend`, transformers' implementation (options: model, device, dtype; needs
  the golden extra).
- `openai`: `qwen3vl_eval.backends.openai.OpenAIBackend`, an OpenAI-compatible server (options: base_url,
  api_key_env, served_model_name, concurrency, timeout, retries, video_mode, video_url_scheme, processor,
  backoff, max_backoff, openai_fields_only; `model` is taken as the served model name).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from qwen3vl_eval.errors import InputError

BACKENDS = ("native", "hf", "openai")
# The one install hint for transformers (the hf backend, bench --baseline hf, golden cases).
GOLDEN_HINT = "needs transformers, the golden extra: in the clone, .venv/bin/python -m pip install -e '.[golden]'"


def require_transformers(what: str) -> None:
    """InputError `<what> needs transformers ...` (exit 2) unless transformers can be imported; does not import it."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise InputError(f"{what} {GOLDEN_HINT}")


def _native() -> Callable[..., Any]:
    from qwen3vl_eval.backends.native import Engine

    return Engine


def _hf() -> Callable[..., Any]:
    from qwen3vl_eval.backends.hf import HFBackend

    return HFBackend


def _openai() -> Callable[..., Any]:
    from qwen3vl_eval.backends.openai import OpenAIBackend

    return OpenAIBackend


_REGISTRY: dict[str, Callable[[], Callable[..., Any]]] = {"native": _native, "hf": _hf, "openai": _openai}
# Options a caller may pass to every backend that some backends have no use for: dropped at their defaults.
_IGNORABLE = {"hf": {"video_prompt": ("trained", "transformers5"), "fast": (None, False), "compile": (False,)},
              "openai": {"device": ("auto",), "dtype": ("auto",), "video_prompt": ("trained",), "fast": (None,),
                         "compile": (False,)}}


def make_backend(name: str, **options: Any) -> Any:
    """A backend by name. Options set to None are dropped (so callers can pass every command-line option);
    options a backend cannot use raise InputError, except shared ones left at their defaults. For `openai`,
    `model` is the served model name unless `served_model_name` is given."""
    if name not in _REGISTRY:
        raise InputError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    options = {k: v for k, v in options.items() if v is not None}
    if name == "openai" and "model" in options:
        model = options.pop("model")
        options.setdefault("served_model_name", str(model))
    for key, defaults in _IGNORABLE.get(name, {}).items():
        if key in options and options[key] in defaults:
            options.pop(key)
    cls = _REGISTRY[name]()
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise InputError(f"{flags}: not an option of the {name} backend")
    return cls(**options)


__all__ = ["BACKENDS", "GOLDEN_HINT", "make_backend", "require_transformers"]

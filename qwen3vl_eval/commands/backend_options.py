"""The backend flags of `run` (`--backend` and the openai backend's own options) checked and turned into
`qwen3vl_eval.backends.make_backend` options, and what results.json records of them. No torch import here: a bad
combination fails before anything heavy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3vl_eval.backends import BACKENDS, require_transformers
from qwen3vl_eval.commands import resolve_target
from qwen3vl_eval.errors import InputError

VIDEO_MODES = ("frames", "url")
VIDEO_URL_SCHEMES = ("data", "file")
# the openai backend's own options: refused with the local backends, whose models run in this process
OPENAI_OPTIONS = ("--base-url", "--api-key-env", "--served-model-name", "--concurrency", "--request-timeout",
                  "--retries", "--video-mode", "--video-url-scheme")
VIDEO_PROMPTS = ("trained", "transformers5")  # = qwen3vl_eval.processor.VIDEO_PROMPTS (torch-free here)


def backend_options(backend: str, **given: Any) -> dict[str, Any]:
    """The `make_backend` options of a `run` command line; InputError (exit 2, one line) for a backend name or
    a combination that cannot work, before any data or model is loaded."""
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if given["video_prompt"] not in VIDEO_PROMPTS:
        raise InputError(f"--video-prompt {given['video_prompt']}: expected {' or '.join(VIDEO_PROMPTS)}")
    openai_given = {k: v for k, v in given.items() if k in _OPENAI_KEYS and v is not None}
    if backend != "openai":
        if openai_given:
            flags = ", ".join(_OPENAI_KEYS[k] for k in openai_given)
            raise InputError(f"{flags}: only with --backend openai (the {backend} backend runs the model here)")
        if backend == "hf":  # (transformers always writes its >= 5 video prompt; its model_info records that)
            require_transformers("--backend hf")
        return {k: given[k] for k in ("model", "device", "dtype", "video_prompt")}
    if not given.get("base_url"):
        raise InputError("--backend openai needs --base-url (the server, e.g. http://127.0.0.1:8000/v1)")
    if given["device"] != "auto" or given["dtype"] != "auto":
        raise InputError("--device/--dtype: not used with --backend openai (the server chooses); leave them out")
    if given["video_prompt"] != "trained":
        raise InputError("--video-prompt: not used with --backend openai (the server writes the prompt)")
    checks = [("concurrency", lambda v: v >= 1, "at least 1"), ("timeout", lambda v: v > 0, "positive"),
              ("retries", lambda v: v >= 0, "at least 0"),
              ("video_mode", lambda v: v in VIDEO_MODES, " or ".join(VIDEO_MODES)),
              ("video_url_scheme", lambda v: v in VIDEO_URL_SCHEMES, " or ".join(VIDEO_URL_SCHEMES))]
    for key, ok, want in checks:
        value = openai_given.get(key)
        if value is not None and not ok(value):
            raise InputError(f"{_OPENAI_KEYS[key]} {value}: expected {want}")
    if openai_given.get("video_url_scheme") and openai_given.get("video_mode", "frames") != "url":
        raise InputError("--video-url-scheme: only with --video-mode url")
    options: dict[str, Any] = {"model": given["model"], **openai_given}
    if options.get("video_mode", "frames") == "frames":
        options["processor"] = _local_checkpoint(given["model"])  # frame sampling settings, when available
    return options


_OPENAI_KEYS = dict(zip(("base_url", "api_key_env", "served_model_name", "concurrency", "timeout", "retries",
                         "video_mode", "video_url_scheme"), OPENAI_OPTIONS))


def missing_model(model: str) -> list[str]:
    """[the reason] when `model` names no checkpoint available here, else [] (a tiny name is always available;
    it is built on first use). Checked before any data or torch loads, so `run` reports it with the data."""
    from qwen3vl_eval.checkpoints.hub import TINY_NAMES, resolve_model

    if model in TINY_NAMES:
        return []
    try:
        resolve_model(model)
    except InputError as e:
        return [str(e)]
    return []


def _local_checkpoint(model: str) -> Path | None:
    """The folder of `model` when it names a checkpoint available here (folder, tiny, Hub id in the local
    cache), else None."""
    try:
        return resolve_target(model).path
    except InputError:
        return None


def recorded_options(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """What results.json keeps of the backend options: no credentials (the key's variable name only, the URL
    without user, password or query)."""
    out = {k: v for k, v in options.items() if k not in ("model", "model_name", "device", "dtype", "video_prompt")}
    if out.get("processor") is not None:
        out["processor"] = options["model"]  # the --model value whose folder it is
    if "base_url" in out:
        from qwen3vl_eval.backends.openai import _redact_url

        out["base_url"] = _redact_url(out["base_url"])
    return out

"""`qwen3vl-eval serve`: the native engine behind an OpenAI-compatible chat-completions API."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import typer

from qwen3vl_eval.commands import handle_errors, resolve_target
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.errors import InputError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@handle_errors
def serve(
    model: opt.Model,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback by default)"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    api_key_env: str = typer.Option(None, "--api-key-env",
                                    help="environment variable holding the bearer token clients must send"),
    served_model_name: str = typer.Option(None, "--served-model-name",
                                          help="model id in /v1/models and responses (default: --model)"),
    max_batch_size: int = typer.Option(1, "--max-batch-size",
                                       help="run up to this many concurrent requests as one batch"),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms",
                                        help="how long to wait for more requests to fill a batch"),
    video_prompt: opt.VideoPrompt = "trained",
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
    allowed_media_root: Path = typer.Option(None, "--allowed-media-root", help="let requests name local files "
                                            "under this folder (default: only data: URIs)"),
    allow_remote_media: bool = typer.Option(False, "--allow-remote-media", help="let requests name http(s) URLs "
                                            "of public hosts (fetched here; private addresses refused)"),
    remote_media_mb: float = typer.Option(64, "--remote-media-max-mb", help="largest media file read, MB"),
    remote_media_timeout: float = typer.Option(20, "--remote-media-timeout", help="seconds to fetch one URL"),
    max_body_mb: float = typer.Option(32, "--max-body-mb", help="largest request body, MB (413 above)"),
    max_images: int = typer.Option(32, "--max-images", help="images per request"),
    max_videos: int = typer.Option(4, "--max-videos", help="videos per request"),
    max_pixels: int = typer.Option(1 << 26, "--max-pixels-per-request", help="processed pixels per request"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="max_tokens cap (default: the context the "
                                   "prompt leaves)"),
    max_queue: int = typer.Option(64, "--max-queue", help="requests waiting at most (429 above)"),
    max_n: int = typer.Option(16, "--max-n", help="choices per request (n; completions: prompts x n)"),
    mm_processor_kwargs: str = typer.Option(None, "--mm-processor-kwargs", help="JSON object of media options "
                                            "every image/video takes unless the request sets its own, as vLLM's "
                                            "(e.g. '{\"max_pixels\": 50176, \"fps\": 2}')"),
) -> None:
    """Serve POST /v1/chat/completions, GET /v1/models and GET /health until interrupted. Requests may name
    media by data: URI only, unless --allowed-media-root or --allow-remote-media says otherwise."""
    from qwen3vl_eval.backends.media_policy import MediaPolicy
    from qwen3vl_eval.backends.native import Engine
    from qwen3vl_eval.backends.serve import Limits
    from qwen3vl_eval.backends.serve import serve as run_server

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise InputError(f"--api-key-env {api_key_env}: the environment variable is not set")
    if max_batch_size < 1:
        raise InputError(f"--max-batch-size {max_batch_size}: must be at least 1")
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be in 0..65535")
    positive = {"--max-images": max_images, "--max-videos": max_videos, "--max-pixels-per-request": max_pixels,
                "--max-queue": max_queue, "--max-n": max_n, "--max-body-mb": max_body_mb,
                "--remote-media-max-mb": remote_media_mb,
                "--remote-media-timeout": remote_media_timeout, "--max-tokens": max_tokens or 1}
    for flag, value in positive.items():
        if not 0 < value < 2**53:
            raise InputError(f"{flag} {value}: must be a positive number")
    if allowed_media_root is not None and not allowed_media_root.is_dir():
        raise InputError(f"--allowed-media-root {allowed_media_root}: no such folder")
    mm = None
    if mm_processor_kwargs is not None:
        from qwen3vl_eval.backends.serve_request import mm_processor_kwargs as check_mm
        from qwen3vl_eval.jsonio import loads

        given = loads(mm_processor_kwargs.encode(), "--mm-processor-kwargs")
        try:
            mm = check_mm({"mm_processor_kwargs": given})
        except InputError as e:  # named as the request field: name the flag
            raise InputError("--mm-processor-kwargs" + str(e).removeprefix("mm_processor_kwargs")) from None
    media = MediaPolicy(allowed_root=allowed_media_root, allow_remote=allow_remote_media,
                        max_bytes=int(remote_media_mb * (1 << 20)), timeout_s=remote_media_timeout)
    limits = Limits(max_body_bytes=int(max_body_mb * (1 << 20)), max_images=max_images, max_videos=max_videos,
                    max_pixels=max_pixels, max_tokens=max_tokens, max_queue=max_queue,
                    max_n=max_n)
    if not _is_loopback(host) and api_key is None:
        print(f"warning: listening on {host} without --api-key-env; anyone who can reach it can use the model",
              file=sys.stderr)
    target = resolve_target(model, device, dtype)
    engine = Engine(target.path, device=target.device, dtype=target.dtype, video_prompt=video_prompt,
                    model_name=target.name)
    name = served_model_name or model
    print(f"serving {name} on http://{host}:{port}/v1 ({engine.info()['device']}, {engine.info()['dtype']})",
          file=sys.stderr)
    run_server(engine, host=host, port=port, model_name=name, api_key=api_key, max_batch_size=max_batch_size,
               batch_wait_ms=batch_wait_ms, log_level=log_level, media=media, limits=limits,
               mm_processor_kwargs=mm)

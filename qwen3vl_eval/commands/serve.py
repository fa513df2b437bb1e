"""`qwen3vl-eval serve`: the native engine behind an OpenAI-compatible chat-completions API."""

from __future__ import annotations

import ipaddress
import os
import sys

import typer

from qwen3vl_eval.commands import handle_errors, resolve_target
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
    model: str = typer.Option(..., "--model", help="checkpoint folder, Hub id in the local HF cache, or 'tiny'"),
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
    video_prompt: str = typer.Option("trained", "--video-prompt", help="trained or transformers5"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
) -> None:
    """Serve POST /v1/chat/completions, GET /v1/models and GET /health until interrupted."""
    from qwen3vl_eval.backends.native import Engine
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
    if not _is_loopback(host) and api_key is None:
        print(f"warning: listening on {host} without --api-key-env; anyone who can reach it can use the model "
              f"and make it read files it can see", file=sys.stderr)
    target = resolve_target(model, device, dtype)
    engine = Engine(target.path, device=target.device, dtype=target.dtype, video_prompt=video_prompt,
                    model_name=target.name)
    name = served_model_name or model
    print(f"serving {name} on http://{host}:{port}/v1 ({engine.info()['device']}, {engine.info()['dtype']})",
          file=sys.stderr)
    run_server(engine, host=host, port=port, model_name=name, api_key=api_key, max_batch_size=max_batch_size,
               batch_wait_ms=batch_wait_ms, log_level=log_level)

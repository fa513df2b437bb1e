"""The one timing and memory module: the `Timings` record every backend keeps, a `Stopwatch` (CUDA events on
CUDA, `perf_counter` on CPU), peak-memory reset/read and `free` (garbage collection + the CUDA cache).

torch is imported where a function needs it, so the record is importable without it (e.g. by `score`)."""

from __future__ import annotations

import gc
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PHASES = ("preprocess", "vision", "prefill", "decode")


@dataclass
class Timings:
    """Seconds spent per phase, cumulative over calls, and token counters.

    `preprocess`: media decoding, chat template, tokenisation (to device); `vision`: the vision encoder;
    `prefill`: the prompt's forward pass up to the first token's logits (for a backend that cannot separate
    them, the vision encoder included); `decode`: every later step. `extra` holds a backend's own counters
    (retries, request seconds, ...). Records add and subtract field by field, so a caller takes the work of
    a stretch of calls as `after - before` (`before` a `copy()`)."""

    preprocess: float = 0.0
    vision: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Phase seconds under `<phase>_s` keys, the two counters, then `extra`."""
        return {**{f"{p}_s": getattr(self, p) for p in PHASES}, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, **self.extra}

    def count(self, key: str, value: float = 1) -> None:
        """Add `value` to the extra counter `key`."""
        self.extra[key] = self.extra.get(key, 0) + value

    def copy(self) -> Timings:
        return replace(self, extra=dict(self.extra))

    def reset(self) -> None:
        """Back to zero, in place (callers holding this record see the reset)."""
        for f in fields(self):
            setattr(self, f.name, {} if f.name == "extra" else type(getattr(self, f.name))())

    def _combine(self, other: Timings, sign: int) -> Timings:
        values = {f.name: getattr(self, f.name) + sign * getattr(other, f.name) for f in fields(self)
                  if f.name != "extra"}
        extra = {k: self.extra.get(k, 0) + sign * other.extra.get(k, 0) for k in {**self.extra, **other.extra}}
        return Timings(**values, extra=extra)

    def __add__(self, other: Timings) -> Timings:
        return self._combine(other, 1)

    def __sub__(self, other: Timings) -> Timings:
        return self._combine(other, -1)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class Stopwatch:
    """Times regions on one device: CUDA events on CUDA (read after one synchronisation), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def time(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        """Run `fn()` and return (its result, elapsed milliseconds), the device work included."""
        if self.cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return out, float(start.elapsed_time(end))
        t0 = time.perf_counter()
        out = fn()
        return out, (time.perf_counter() - t0) * 1000.0


def measure(fn: Callable[[], Any], *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds of each of `repeats` calls of `fn`, after `warmup` untimed ones."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    sw = Stopwatch(device)
    for _ in range(warmup):
        fn()
    return [sw.time(fn)[1] for _ in range(repeats)]


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak: CUDA allocator peak, or the process's RSS high-water mark on Linux."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(peak MiB since the last reset, what it is): `torch.cuda.max_memory_allocated` on CUDA, the RSS peak on
    CPU (`rss_peak`; `rss_peak_process`, the whole process's, where /proc is missing)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    status = _proc_status("VmHWM:")
    if status is not None:
        return status, "rss_peak"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if platform.system() == "Darwin" else rss / 1024), "rss_peak_process"


def resident_memory_mb(device: torch.device) -> float | None:
    """Memory held now: `torch.cuda.memory_allocated` on CUDA, the process RSS on Linux (None elsewhere)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status("VmRSS:")


def _proc_status(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def free(device: torch.device | None = None) -> None:
    """Collect garbage and return cached CUDA blocks (of every device when `device` is None)."""
    import torch

    gc.collect()
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()

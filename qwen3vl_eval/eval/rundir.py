"""The run folder (`--output`): one writer at a time, and write failures as one line.

`RunLock` holds an exclusive `flock` on `DIR/.qwen3vl-eval.lock` for a whole `run` (`--resume` included): a
second writer exits 2 naming the holder (pid, host, command, start time). The kernel drops the lock when the
holder dies, even by SIGKILL, so a crashed run never leaves the folder locked; the file itself stays.

`output_errors` turns a full, read-only or unwritable `--output` into `InputError` (exit 2, one line). Every
batch is appended and fsync'd as it finishes and results are written by rename, so what was on disk before
the failure is intact and `--resume` continues from it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from qwen3vl_eval.errors import InputError

LOCK_NAME = ".qwen3vl-eval.lock"
# OSErrors that mean "this folder cannot take the run's files", not a bug
WRITE_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted"}


class RunLock:
    """An exclusive, non-blocking lock on a run folder, held until `release` (or process exit)."""

    def __init__(self, folder: str | os.PathLike, flag: str = "--output") -> None:
        self.folder, self.flag = Path(folder), flag
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        with output_errors(self.folder, self.flag):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"{self.flag} {self.folder}: cannot lock the run folder ({e.strerror})") from None
            raise InputError(f"{self.flag} {self.folder}: another run is writing there ({self.holder()}); wait "
                             f"for it to finish or choose another {self.flag}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv[:1] + [a for a in sys.argv[1:] if len(a) < 200])[:500]}
        with contextlib.suppress(OSError):  # the holder's name is a courtesy; a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> str:
        """`pid 123 on host, started ...` from the lock file, as far as it can be read."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or "pid" not in info:
            return "holder unknown"
        return f"pid {info['pid']} on {info.get('host', '?')}, started {info.get('started', '?')}"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


@contextlib.contextmanager
def output_errors(folder: str | os.PathLike, flag: str = "--output") -> Iterator[None]:
    """A full, read-only or unwritable run folder as one InputError naming it (and how to continue)."""
    try:
        yield
    except OSError as e:
        reason = WRITE_ERRNOS.get(e.errno or 0)
        if reason is None:
            raise
        hint = "free space and rerun with --resume" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
            f"choose a writable {flag} (finished samples are kept; continue with --resume)"
        raise InputError(f"{flag} {folder}: {reason}; {hint}") from None


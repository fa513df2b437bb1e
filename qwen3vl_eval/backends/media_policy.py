"""What media a server request may name (`serve`): a client must not make the server read its files or fetch
URLs on its behalf unless the operator opts in.

- `data:` URIs (and base64 inline images) are always accepted: the bytes come with the request.
- `--allowed-media-root DIR`: local paths and `file://` URLs, confined to DIR like task media (no absolute
  escape, no `..`, no symlink leaving it).
- `--allow-remote-media`: `http(s)://` URLs, fetched here with every resolved address checked (loopback,
  private, link-local, multicast, reserved and unspecified addresses refused, after DNS resolution, and the
  connection made to the checked address, so a name cannot re-resolve elsewhere), each redirect checked again,
  a size cap and a timeout.

Every refused or unreadable source gets the same error text (`REFUSED`), so a client learns nothing about the
server's files or network; the reason goes to the server log.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import InputError

log = logging.getLogger("qwen3vl_eval.backends.serve")

REFUSED = ("media source refused or unreadable (this server accepts data: URIs{extra}; see qwen3vl-eval serve "
           "--help)")
MAX_REDIRECTS = 5


class MediaRefused(InputError):
    """A media source the policy does not allow, or that could not be read (HTTP 400, one text for all)."""


def public_address(ip: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged by its IPv4 address)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not (addr.is_multicast or addr.is_loopback or addr.is_link_local or addr.is_private
                                   or addr.is_reserved or addr.is_unspecified)


@dataclass(frozen=True)
class MediaPolicy:
    """The sources a request may use; `resolve` turns an item's value into what the processor may read."""

    allowed_root: Path | None = None
    allow_remote: bool = False
    max_bytes: int = 64 << 20
    timeout_s: float = 20.0
    address_ok: Callable[[str], bool] = public_address  # tests may narrow it; never widen it in production

    def refused(self, reason: str) -> MediaRefused:
        log.info("media refused: %s", reason)
        extra = "".join([", files under --allowed-media-root" if self.allowed_root else "",
                         ", http(s) URLs of public hosts" if self.allow_remote else ""])
        return MediaRefused(REFUSED.format(extra=extra))

    def resolve(self, value: Any) -> Any:
        """A `data:` URI as is, a confined local file as its path, a remote URL as its bytes; MediaRefused for
        anything else."""
        if not isinstance(value, str):
            raise self.refused(f"a {type(value).__name__} is not a source")
        text = value.strip()
        if text.startswith("data:"):
            return text
        if text.startswith(("http://", "https://")):
            if not self.allow_remote:
                raise self.refused(f"{text[:200]}: remote media not enabled")
            return self.fetch(text)
        if len(text) > 256 and all(c.isalnum() or c in "+/=\n\r" for c in text[:256]):
            return text  # bare base64 (decoded by the processor, no file access)
        if self.allowed_root is None:
            raise self.refused(f"{text[:200]}: local media not enabled")
        return self.local(text)

    def local(self, text: str) -> Path:
        """A path (or file:// URL) inside `allowed_root`, symlinks included."""
        if text.startswith("file://"):
            parsed = urllib.parse.urlparse(text)
            if parsed.netloc not in ("", "localhost"):
                raise self.refused(f"{text[:200]}: file URL with a host")
            text = urllib.parse.unquote(parsed.path)
        root = Path(self.allowed_root).resolve()
        name = Path(text)
        candidate = name if name.is_absolute() else root / name
        if ".." in name.parts:
            raise self.refused(f"{text[:200]}: '..' in a path")
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError) as e:
            raise self.refused(f"{text[:200]}: {e}") from None
        if not real.is_relative_to(root) or not real.is_file():
            raise self.refused(f"{text[:200]}: outside {root} or not a file")
        try:
            size = real.stat().st_size
        except OSError as e:
            raise self.refused(f"{text[:200]}: {e}") from None
        if size > self.max_bytes:
            raise self.refused(f"{text[:200]}: {size} bytes, over {self.max_bytes}")
        return real

    def fetch(self, url: str) -> bytes:
        """GET `url` from a public address, following up to MAX_REDIRECTS redirects (each checked), at most
        `max_bytes` and `timeout_s` in all."""
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            status, location, body = self._get_once(url, deadline)
            if status in (301, 302, 303, 307, 308):
                if not location:
                    raise self.refused(f"{url[:200]}: redirect without a location")
                url = urllib.parse.urljoin(url, location)
                if not url.startswith(("http://", "https://")):
                    raise self.refused(f"{url[:200]}: redirect to another scheme")
                continue
            if status != 200:
                raise self.refused(f"{url[:200]}: HTTP {status}")
            return body
        raise self.refused(f"{url[:200]}: more than {MAX_REDIRECTS} redirects")

    def _get_once(self, url: str, deadline: float) -> tuple[int, str | None, bytes]:
        parts = urllib.parse.urlsplit(url)
        host, secure = parts.hostname, parts.scheme == "https"
        if not host:
            raise self.refused(f"{url[:200]}: no host")
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise self.refused(f"{url[:200]}: bad port") from None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise self.refused(f"{host}: cannot resolve ({e})") from None
        addresses = [info[4][0] for info in infos]
        if not addresses or not all(self.address_ok(a) for a in addresses):
            raise self.refused(f"{host}: resolves to {addresses}, not only public addresses")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self.refused(f"{url[:200]}: timed out")
        conn = _PinnedConnection(host, port, addresses[0], secure, remaining)
        try:
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            conn.request("GET", path, headers={"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent":
                                               "qwen3vl-eval", "Accept-Encoding": "identity"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                return resp.status, resp.getheader("Location"), b""
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise self.refused(f"{url[:200]}: {length} bytes, over {self.max_bytes}")
            chunks, total = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise self.refused(f"{url[:200]}: timed out")
                chunk = resp.read(min(1 << 16, self.max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > self.max_bytes:
                    raise self.refused(f"{url[:200]}: over {self.max_bytes} bytes")
            return resp.status, None, b"".join(chunks)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise self.refused(f"{url[:200]}: {type(e).__name__}: {e}") from None
        finally:
            conn.close()


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to one already-checked address, with the URL's host name kept for the Host
    header and TLS (SNI and certificate check)."""

    def __init__(self, host: str, port: int, address: str, secure: bool, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._secure = address, secure

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        if self._secure:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)

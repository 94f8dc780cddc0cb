"""HTTP requests to an untrusted server with a total deadline and a response-size cap.

httpx timeouts bound each socket operation, not the request: a server that sends one byte per
second never trips a 5 s read timeout, and ``resp.content`` buffers whatever it is sent. Here
every request carries a wall-clock deadline that the network layer enforces on each connect,
read and write (so headers dribbled byte by byte are cut off too), and the body is streamed into
a buffer that refuses to grow past a cap. Nothing raises because of the server: the outcome says
what went wrong ("response exceeded 8 MiB cap", "no complete response within 5 s").
"""

from __future__ import annotations

import contextvars
import functools
import time
import typing
import zlib
from dataclasses import dataclass

import httpcore
import httpx

from harness.limits import format_bytes

#: Monotonic time by which the request running in this thread / task must be complete.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("takehome_http_deadline", default=None)
_WRITE_SLICE = 64 * 1024  # a write is sliced so the deadline is re-checked while a slow reader drains it

ERR_TIMEOUT = "timeout"
ERR_CONNECT = "connect_error"
ERR_TOO_LARGE = "too_large"


def _remaining(timeout: float | None) -> float | None:
    """``timeout`` clamped to what is left of the current deadline; raises once it has passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("total deadline reached")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation stops at the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_SLICE):
            try:
                left = _remaining(timeout)
            except httpcore.ReadTimeout:
                raise httpcore.WriteTimeout("total deadline reached") from None
            self._inner.write(bytes(view[start:start + _WRITE_SLICE]), left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, with streams that honour the per-request deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        try:
            left = _remaining(timeout)
        except httpcore.ReadTimeout:
            raise httpcore.ConnectTimeout("total deadline reached") from None
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _remaining(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over the deadline backend. Proxies and TLS are not needed: the grader
    talks plain HTTP to a service it started, and an environment proxy must not sit in between."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # HTTPTransport takes no network backend, so its pool is rebuilt with one; the tests'
        # slow-sender cases fail loudly if a future httpx stops using ``_pool``.
        self._pool = httpcore.ConnectionPool(
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_DeadlineBackend())


def bounded_client(limits: httpx.Limits | None = None, base_url: str = "",
                   headers: dict[str, str] | None = None) -> httpx.Client:
    """An ``httpx.Client`` for :func:`bounded_request`: deadline-aware transport, no env proxies."""
    limits = limits or httpx.Limits(max_connections=8, max_keepalive_connections=4)
    # identity: a compressed answer would be inflated past the cap before it could be counted.
    merged = {"Accept-Encoding": "identity", **(headers or {})}
    return httpx.Client(base_url=base_url, transport=_DeadlineTransport(limits), headers=merged, trust_env=False)


@dataclass
class BoundedResponse:
    """What came back from one bounded request.

    ``status`` is set once headers arrived, even if the body then broke a limit; ``error`` (with
    a stable ``kind``: "timeout", "connect_error", "too_large" or an exception name) says why the
    response is incomplete. ``body`` is what was read, never more than the cap.
    """

    status: int | None
    body: bytes
    elapsed_s: float
    error: str | None = None
    kind: str | None = None

    @property
    def ok(self) -> bool:
        """A complete 2xx answer."""
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @functools.cached_property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")


def _decoder(encoding: str) -> typing.Any:
    """A zlib inflater for ``Content-Encoding`` (None for identity); raises ValueError otherwise."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # 32: detect the gzip or zlib header
    raise ValueError(f"response uses Content-Encoding {encoding!r}, which the grader did not accept")


def _read_capped(resp: httpx.Response, buf: bytearray, max_bytes: int,
                 deadline_s: float, end: float) -> tuple[str | None, str | None]:
    """Stream the body into ``buf`` up to ``max_bytes`` and until ``end`` (monotonic); return
    (error, kind) or (None, None)."""
    cap = format_bytes(max_bytes)
    declared = resp.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:  # refuse without reading a byte
        return f"response exceeded {cap} cap (Content-Length: {int(declared)})", ERR_TOO_LARGE
    inflate = _decoder(resp.headers.get("content-encoding", ""))
    for chunk in resp.iter_raw():
        if inflate is not None:
            # max_length bounds what one chunk can inflate to: a gzip bomb stops at the cap too.
            chunk = inflate.decompress(chunk, max_bytes - len(buf) + 1)
        buf += chunk
        if len(buf) > max_bytes:
            del buf[max_bytes:]
            return f"response exceeded {cap} cap", ERR_TOO_LARGE
        if time.monotonic() > end:  # the backend enforces this too; here it holds for any transport
            return _stalled(deadline_s), ERR_TIMEOUT
    return None, None


def _stalled(deadline_s: float) -> str:
    return f"no complete response within {deadline_s:g} s (slow or stalled sender)"


def _describe(exc: Exception, deadline_s: float) -> tuple[str, str]:
    """(message, kind) for a failed request; timeouts of any phase mean the deadline was spent."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {deadline_s:g} s", ERR_TIMEOUT
    if isinstance(exc, httpx.WriteTimeout):
        return f"the server did not take the request body within {deadline_s:g} s", ERR_TIMEOUT
    if isinstance(exc, httpx.TimeoutException):
        return _stalled(deadline_s), ERR_TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return f"ConnectError: {exc}", ERR_CONNECT
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__), type(exc).__name__


def bounded_request(client: httpx.Client, method: str, url: str, *, deadline_s: float, max_bytes: int,
                    content: bytes | None = None, headers: dict[str, str] | None = None) -> BoundedResponse:
    """Send one request; the whole exchange ends within ``deadline_s`` and reads at most
    ``max_bytes`` of body. Never raises for anything the server does.

    ``client`` should come from :func:`bounded_client`: with any other transport only the
    per-operation timeouts and the size cap apply, not the total deadline.
    """
    start = time.monotonic()
    token = _DEADLINE.set(start + deadline_s)
    status: int | None = None
    buf = bytearray()
    error = kind = None
    try:
        # Every phase's own timeout is the whole budget; the backend clamps each to what is left.
        with client.stream(method, url, content=content, headers=headers,
                           timeout=httpx.Timeout(deadline_s)) as resp:
            status = resp.status_code
            error, kind = _read_capped(resp, buf, max_bytes, deadline_s, start + deadline_s)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, zlib.error, ValueError, OSError) as exc:
        # ValueError: undecodable headers or an unsupported encoding; OSError: a socket failure
        # httpcore did not map. All of them are the server's doing, so they are outcomes.
        error, kind = _describe(exc, deadline_s)
    finally:
        _DEADLINE.reset(token)
    return BoundedResponse(status, bytes(buf), time.monotonic() - start, error, kind)

"""Open-loop HTTP load: send each request at its scheduled time, whatever the server is doing.

Every request is its own task, fired on schedule without waiting for earlier replies (wrk2 /
k6 constant-arrival-rate style), and its latency runs from the *intended* send time. One aiohttp
session with keep-alive on uvloop holds a few thousand requests/s on one core; the runner also
records how late each send was, so a saturated client is detected rather than blamed on the server.
The server is untrusted: each request has a total deadline (``timeout_s``, connect to last body
byte) and no reply body is buffered past ``max_response_bytes``; either is an error outcome.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator
from yarl import URL

from harness.limits import MAX_LOAD_RESPONSE_BYTES, format_bytes

from .records import (
    ERR_ABANDONED,
    ERR_CLIENT_PREFIX,
    ERR_MAX_IN_FLIGHT,
    ERR_TIMEOUT,
    RequestRecord,
    RequestSpec,
    err_too_large,
)
from .schedule import iter_send_times
from .stats import LatencyStats

# Longest the scheduler sleeps in one go, so a stop request is seen within this time even at
# one request a minute.
_POLL_S = 0.05
# After this many back-to-back sends without sleeping, yield once so started tasks get to run
# (otherwise a client that is behind would queue thousands of tasks before sending any).
_BURST = 64
# How often (schedule time) a ``settled`` callback is asked once it may end the schedule: the
# window ends within this of the moment its verdict settled.
_SETTLE_CHECK_S = 0.25
# Below the usual server keep-alive (uvicorn: 5 s) so the client drops idle connections first and
# never reuses one the server is closing at that moment (a spurious error blamed on the server).
_CLIENT_KEEPALIVE_S = 4.0


#: ``settled(records finished so far, schedule time)``: may the schedule end here?
Settled = Callable[[list[RequestRecord], float], bool]
#: Called on the event loop with each record as its request finishes (keep it to microseconds).
OnRecord = Callable[[RequestRecord], None]


class LoadPlan(BaseModel):
    """What to send and how fast. Validated, immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_rps: float = Field(gt=0, le=100_000)
    duration_s: float = Field(gt=0)
    warmup_s: float = Field(default=0.0, ge=0)  # intended before this: not in the statistics
    schedule: Literal["fixed", "poisson"] = "poisson"
    seed: int = 0
    timeout_s: float = Field(default=5.0, gt=0)  # per request, connect to last body byte
    # Requests allowed in flight at once. Above it a request is recorded as an error
    # ("client: max in flight reached") and the run is marked saturated. Keep it at or above
    # rate_rps * timeout_s so it only bites when the client itself runs short of sockets.
    max_in_flight: int = Field(default=1024, ge=1)
    keep_bodies: bool = False
    # A reply body over this many bytes is an error ("response exceeded 1 MiB cap"), never buffered.
    max_response_bytes: int = Field(default=MAX_LOAD_RESPONSE_BYTES, ge=1)
    # After stop(), in-flight requests get this long to finish before being abandoned (abandoned
    # requests are reported but not measured).
    stop_grace_s: float = Field(default=1.0, ge=0)
    max_send_lag_ms: float = Field(default=10.0, gt=0)  # saturation threshold on send-lag p99
    # Keep-alive connections the client may hold open at once (None: one per request in flight).
    # Bounded, like wrk2's -c: when the server stalls, requests queue here (and their latency
    # still runs from the intended send time) instead of opening hundreds of new connections that
    # overflow the server's listen backlog, which would measure the kernel's SYN retry timer.
    connections: int | None = Field(default=None, ge=1)
    # Collect garbage and freeze the heap before the schedule, so the generator's own full
    # collections are not charged to the server (see _quiet_gc). Off by default: in a process with
    # a very large heap (the whole test suite's) it made the run's tail seconds long, not shorter,
    # and no gen-2 pause has been seen in the grader's own latency windows yet.
    quiet_gc: bool = False
    # Schedule time from which a ``settled`` callback may end the schedule early (checked every
    # _SETTLE_CHECK_S); None: the whole duration always runs.
    settle_from_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _warmup_inside(self) -> "LoadPlan":
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be shorter than duration_s ({self.duration_s})")
        if self.settle_from_s is not None and not self.warmup_s < self.settle_from_s <= self.duration_s:
            raise ValueError(f"settle_from_s ({self.settle_from_s}) must lie after warmup_s ({self.warmup_s}) "
                             f"and within duration_s ({self.duration_s})")
        return self


@dataclass
class LoadResult:
    """Records of one run (sorted by index) and the clocks needed to place them in time."""

    plan: LoadPlan
    records: list[RequestRecord]
    wall_start: float  # time.time() at schedule t=0, to line records up with other events
    mono_start: float  # time.monotonic() at schedule t=0
    stopped_early: bool = False
    settled_at_s: float | None = None  # schedule time at which ``settled`` ended the schedule, if it did
    elapsed_s: float = 0.0  # from t=0 until the last reply or abandonment
    meta: dict[str, Any] = field(default_factory=dict)

    def stats(self, warmup_s: float | None = None, **kwargs: Any) -> LatencyStats:
        """Statistics of the measured part (after the plan's warm-up unless ``warmup_s`` given);
        extra keyword arguments go to :meth:`LatencyStats.from_records`."""
        kwargs.setdefault("max_send_lag_ms", self.plan.max_send_lag_ms)
        kwargs.setdefault("planned_rate_rps", self.plan.rate_rps)
        return LatencyStats.from_records(
            self.records, warmup_s=self.plan.warmup_s if warmup_s is None else warmup_s, **kwargs
        )

    def stats_by_tag(self, warmup_s: float | None = None, **kwargs: Any) -> dict[str | None, LatencyStats]:
        """Statistics per request tag (e.g. per model version)."""
        tags = {r.tag for r in self.records}
        kwargs.setdefault("max_send_lag_ms", self.plan.max_send_lag_ms)
        w = self.plan.warmup_s if warmup_s is None else warmup_s
        return {
            t: LatencyStats.from_records([r for r in self.records if r.tag == t], warmup_s=w, **kwargs)
            for t in tags
        }

    def wall_time(self, offset_s: float) -> float:
        """Convert a record time (seconds from start) to a ``time.time()`` timestamp."""
        return self.wall_start + offset_s

    def to_dict(self, include_records: bool = False) -> dict[str, Any]:
        """JSON-ready evidence: plan, clocks, statistics and optionally every record."""
        out: dict[str, Any] = {
            "plan": self.plan.model_dump(),
            "wall_start": self.wall_start,
            "stopped_early": self.stopped_early,
            "settled_at_s": self.settled_at_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "stats": self.stats().to_dict(),
        }
        if include_records:
            out["records"] = [r.to_dict() for r in self.records]
        return out


class _GcWatch:
    """Counts the collector's pauses while installed (``gc.callbacks``), for the run's meta."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._t0: float | None = None

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._t0 is not None:
            self.pauses_ms.append((time.perf_counter() - self._t0) * 1000.0)
            self._t0 = None

    def summary(self) -> dict[str, float | int]:
        return {"gc_collections": len(self.pauses_ms),
                "gc_pause_max_ms": round(max(self.pauses_ms, default=0.0), 3),
                "gc_pause_total_ms": round(sum(self.pauses_ms), 3)}


_gc_lock = threading.Lock()
_gc_holders = 0


def _quiet_gc(on: bool) -> None:
    """Quiet the collector for a run (``on``) or give it back (not ``on``).

    Quiet is ``gc.collect()`` then ``gc.freeze()``: everything alive before the run moves to the
    permanent generation, so a collection during the run walks only the run's own objects (well
    under a millisecond) instead of the whole heap (tens of ms in a process holding models), and
    the run's cyclic garbage is still collected. Runs may overlap (background load during a
    rollback): the first to start freezes, the last to end unfreezes.
    """
    global _gc_holders
    with _gc_lock:
        if on:
            if _gc_holders == 0:
                gc.collect()
                gc.freeze()
            _gc_holders += 1
        else:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.unfreeze()


def _describe(exc: BaseException) -> str:
    """Short, stable error text for a failed request (grouped in reports, so no addresses)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = getattr(exc, "os_error", None)
        return f"connect: {getattr(os_err, 'strerror', None) or type(os_err or exc).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "payload: incomplete body"
    return f"{type(exc).__name__}: {exc}"[:200]


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole reply body, or None (connection closed) once it is known to be over ``cap`` bytes."""
    length = resp.content_length
    if length is not None:
        # Fast path, nearly every reply: the parser stops at Content-Length, so read() is bounded.
        if length > cap:
            resp.close()  # unread body: the connection must not go back to the pool
            return None
        return await resp.read()
    buf = bytearray()  # chunked or close-delimited: count as it arrives
    while chunk := await resp.content.read(cap + 1 - len(buf)):
        buf += chunk
        if len(buf) > cap:
            resp.close()
            return None
    return bytes(buf)


async def run_open_loop_async(
    base_url: str,
    plan: LoadPlan,
    request_for: Callable[[int], RequestSpec],
    stop: threading.Event | None = None,
    settled: Settled | None = None,
    on_record: OnRecord | None = None,
) -> LoadResult:
    """Async form of :func:`run_open_loop`, for callers already inside an event loop."""
    if plan.quiet_gc:
        _quiet_gc(True)
    watch = _GcWatch()  # installed after the collection above: only pauses inside the run count
    gc.callbacks.append(watch)
    try:
        result = await _open_loop(base_url, plan, request_for, stop, settled, on_record)
    finally:
        gc.callbacks.remove(watch)
        if plan.quiet_gc:
            _quiet_gc(False)
    result.meta.update(watch.summary(), quiet_gc=plan.quiet_gc, connections=plan.connections or plan.max_in_flight)
    return result


async def _open_loop(
    base_url: str,
    plan: LoadPlan,
    request_for: Callable[[int], RequestSpec],
    stop: threading.Event | None,
    settled: Settled | None,
    on_record: OnRecord | None = None,
) -> LoadResult:
    base = URL(base_url.rstrip("/"))
    url_cache: dict[str, URL] = {}  # paths repeat; building a URL per request costs throughput
    records: list[RequestRecord] = []
    # Task -> (index, intended, tag): lets a task cancelled before its first step still leave a
    # record, so every scheduled request is accounted for exactly once.
    tasks: dict[asyncio.Task[None], tuple[int, float, str | None]] = {}
    in_flight = 0
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)
    too_large = err_too_large(format_bytes(plan.max_response_bytes))
    connector = aiohttp.TCPConnector(
        limit=plan.connections or plan.max_in_flight, limit_per_host=0, keepalive_timeout=_CLIENT_KEEPALIVE_S
    )
    now = time.monotonic

    # identity and no auto-decompression: a compressed reply cannot inflate past the size cap.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     headers={"Accept-Encoding": "identity"}) as session:
        # t=0 is taken after the session exists so its set-up cost is not charged to request 0.
        mono0 = now()
        wall0 = time.time()

        async def one(index: int, intended: float, spec: RequestSpec, url: URL) -> None:
            nonlocal in_flight
            sent = now() - mono0
            status: int | None = None
            error: str | None = None
            body: bytes | None = None
            try:
                async with session.request(
                    spec.method,
                    url,
                    data=spec.body or None,
                    headers=spec.headers or None,
                    allow_redirects=False,
                ) as resp:
                    # Read the whole body: latency ends at the last byte, and an unread body
                    # would keep the connection from going back to the pool.
                    data = await _read_capped(resp, plan.max_response_bytes)
                    status = resp.status
                    if data is None:
                        error = too_large
                    elif status >= 400:
                        error = f"http {status}"
                    if plan.keep_bodies and data is not None:
                        body = data
            except asyncio.CancelledError:
                error = ERR_ABANDONED
                raise
            except TimeoutError:  # aiohttp's timeouts subclass it (and asyncio.TimeoutError)
                error = ERR_TIMEOUT
            except (aiohttp.ClientError, OSError) as exc:
                error = _describe(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. a malformed header from request_for: our fault, say so
                error = f"{ERR_CLIENT_PREFIX} {type(exc).__name__}: {exc}"[:200]
            finally:
                in_flight -= 1
                record = RequestRecord(index, intended, sent, now() - mono0, status, error, spec.tag, body)
                records.append(record)
                if on_record is not None:
                    on_record(record)
                # Finished tasks leave the table so a long run does not keep them all alive.
                tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        stopped = False
        settled_at: float | None = None
        next_check = plan.settle_from_s if settled is not None else None
        index = 0
        burst = 0
        try:
            for chunk in iter_send_times(plan.rate_rps, plan.duration_s, plan.schedule, plan.seed):
                for intended in chunk.tolist():
                    if next_check is not None and intended >= next_check:
                        # Ends the schedule, not the run: what is in flight drains with its full timeout.
                        if settled(records, intended):  # type: ignore[misc]
                            settled_at = intended
                            break
                        next_check += _SETTLE_CHECK_S
                    while True:
                        if stopping():
                            stopped = True
                            break
                        delay = intended - (now() - mono0)
                        if delay <= 0:
                            break
                        burst = 0
                        await asyncio.sleep(min(delay, _POLL_S))
                    if stopped:
                        break
                    spec = request_for(index)
                    if in_flight >= plan.max_in_flight:
                        # Recorded, never silently dropped: the cap is a client limit and the
                        # statistics flag the run as saturated.
                        t = now() - mono0
                        records.append(RequestRecord(index, intended, None, t, None, ERR_MAX_IN_FLIGHT, spec.tag))
                    else:
                        url = url_cache.get(spec.path)
                        if url is None:
                            path = spec.path if spec.path.startswith("/") else "/" + spec.path
                            url = url_cache[spec.path] = URL(str(base) + path, encoded=False)
                        in_flight += 1
                        task = asyncio.create_task(one(index, intended, spec, url))
                        tasks[task] = (index, intended, spec.tag)
                    index += 1
                    burst += 1
                    if burst >= _BURST:
                        burst = 0
                        await asyncio.sleep(0)
                if stopped or settled_at is not None:
                    break

            # Drain: each request has its own timeout; the margin only guards against a stuck
            # task. A stop request shortens the wait to the grace period.
            deadline = now() + (plan.stop_grace_s if stopped else plan.timeout_s + 1.0)
            pending = list(tasks)
            while pending and now() < deadline:
                if stopping() and not stopped:
                    stopped = True
                    deadline = min(deadline, now() + plan.stop_grace_s)
                await asyncio.wait(pending, timeout=min(_POLL_S, max(0.0, deadline - now())))
                pending = [t for t in pending if not t.done()]
        finally:
            leftover = dict(tasks)
            for task in leftover:
                task.cancel()
            if leftover:
                await asyncio.gather(*leftover, return_exceptions=True)
            # Tasks cancelled before their first step never ran their own bookkeeping.
            t_end = now() - mono0
            for index_, intended_, tag_ in tasks.values():
                records.append(RequestRecord(index_, intended_, None, t_end, None, ERR_ABANDONED, tag_))
        elapsed = now() - mono0

    records.sort(key=lambda r: r.index)
    return LoadResult(
        plan=plan,
        records=records,
        wall_start=wall0,
        mono_start=mono0,
        stopped_early=stopped,
        settled_at_s=settled_at,
        elapsed_s=elapsed,
        meta={"loop": type(asyncio.get_running_loop()).__module__},
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # optional: about twice the request rate of the default loop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without it
        return asyncio.new_event_loop


def run_open_loop(
    base_url: str,
    plan: LoadPlan,
    request_for: Callable[[int], RequestSpec],
    stop: threading.Event | None = None,
    settled: Settled | None = None,
    on_record: OnRecord | None = None,
) -> LoadResult:
    """Run an open-loop load against ``base_url`` on a fresh (uv)loop and return every record.

    ``request_for(i)`` builds request ``i`` at its send time. Setting ``stop`` ends the run:
    requests not yet due are not sent and not counted. ``settled(records, t)`` is asked every
    quarter second of schedule time from ``plan.settle_from_s`` on, with the records finished so far;
    when it returns True no further requests are sent and those in flight finish normally
    (``LoadResult.settled_at_s`` says when). It runs on the event loop: keep it to a few
    milliseconds. Must not be called from a thread that is already running an event loop (use
    :func:`run_open_loop_async` there). ``on_record`` sees each request's record as it finishes.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_open_loop_async(base_url, plan, request_for, stop, settled, on_record))


class BackgroundLoad:
    """Open-loop load in a daemon thread with its own event loop, e.g. to keep traffic flowing
    while a rollback command runs. ``start()``, later ``stop()``, then ``wait()`` for the result.
    """

    def __init__(self, base_url: str, plan: LoadPlan, request_for: Callable[[int], RequestSpec]) -> None:
        self.base_url = base_url
        self.plan = plan
        self.request_for = request_for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._answered = 0  # successful responses so far; written on the load's loop only

    def start(self) -> "BackgroundLoad":
        """Start sending; returns at once."""
        if self._thread is not None:
            raise RuntimeError("BackgroundLoad already started")
        self._thread = threading.Thread(target=self._main, name="background-load", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self._result = run_open_loop(self.base_url, self.plan, self.request_for, self._stop,
                                         on_record=self._count)
        except BaseException as exc:  # noqa: BLE001 - handed to wait(): a thread cannot raise into its caller
            self._error = exc

    def _count(self, record: RequestRecord) -> None:
        if record.ok:
            self._answered += 1

    @property
    def answered(self) -> int:
        """Successful responses so far (read from any thread)."""
        return self._answered

    def wait_for_answers(self, n: int, timeout_s: float, poll_s: float = 0.02) -> int:
        """Block until ``n`` more requests have been answered successfully than when called, the
        run has ended, or ``timeout_s`` has passed; returns how many more were answered.

        A condition to wait for instead of a fixed sleep: "steady state seen" means responses seen,
        however fast or slow the service answers them.
        """
        start = self._answered
        end = time.monotonic() + timeout_s
        while self._answered - start < n and self.running and time.monotonic() < end:
            time.sleep(poll_s)
        return self._answered - start

    def stop(self) -> None:
        """Ask the run to end: no further requests are sent; in-flight ones get the plan's
        ``stop_grace_s`` to finish. Returns at once; call :meth:`wait` for the result."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Block until the run ends (its duration elapses or it was stopped) and return it.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds, or whatever
        the run itself raised.
        """
        if self._thread is None:
            raise RuntimeError("BackgroundLoad was never started")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"background load still running after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> "BackgroundLoad":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(self.plan.stop_grace_s + 5.0)

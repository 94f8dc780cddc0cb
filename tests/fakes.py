"""Fakes at the check seam: a fake clock, one scripted candidate service, a fake runtime, a
scripted drift observer, and a builder of a real ``GradingSession`` around them.

Every check's ``run()`` receives a ``GradingSession`` and nothing else, so a check can be unit
tested the way httpx is tested against its mock transport: the session is real (real config,
real contract, real ``ServiceClient`` speaking real HTTP, real reference models and
fingerprinter), only what stands behind it is scripted. The end-to-end gradings still prove the
real thing; these prove each check's decisions, fast.

* ``FakeClock``: ``monotonic()`` moves only when something sleeps (``sleeps`` records how long).
* ``StubService``: a threaded stdlib HTTP server on 127.0.0.1 that serves a model version
  ("v1"/"v2": the reference model's own predictions) or a function of the rows, on the
  contract's predict/ready/metrics paths; hooks inject failures (status, delay, dropped
  connection); it records every request and, when told to, logs request ids. ``routes`` is the
  escape hatch for any other ad-hoc stub a test needs.
* ``FakeRuntime``: the ``Runtime`` interface over a stub; scripted commands (``Command``).
* ``ScriptedObserver`` / ``ShiftDetector``: a drift signal computed from the rows the stub got.
* ``make_session``: the real session, assembled as ``grader.lifecycle._bring_up`` does.
"""

from __future__ import annotations

import functools
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Union

import numpy as np

from grader.config import GraderConfig, load_config
from grader.facts import Facts
from grader.session import Clock, GradingSession, ReferenceModels
from harness.cleanup import CleanupStack
from harness.contract import Contract, load_contract, parse_contract
from harness.fingerprint import Fingerprinter
from harness.observers.base import DriftObserver, DriftReading
from harness.protocol import ProtocolError, decode_request, encode_predictions
from harness.runtimes.base import CommandResult, Runtime, RuntimeContext
from harness.service import ServiceClient
from reference_model.schema import (CATEGORICAL_FEATURES, FEATURES, INTEGER_FEATURES, NULLABLE_FEATURES, NUMERIC_FEATURES,
                                    NUMERIC_RANGES)

# --- clock -----------------------------------------------------------------------------------


class FakeClock(Clock):
    """A clock that stands still until someone sleeps: waits cost nothing and are recorded.

    Not for checks whose background work runs on wall time (rollback's load generator): give
    those the real clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time on without it counting as a sleep (a command that takes a while)."""
        with self._lock:
            self._now += max(0.0, float(seconds))


# --- the stub service ------------------------------------------------------------------------


@dataclass
class Received:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    size: int  # the whole body's length
    t: float  # time.monotonic() on arrival
    request_id: str | None = None
    rows: list[dict] | None = None  # predict requests whose body decoded

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        low = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == low), None)


Body = Union[bytes, str, dict, list, None]


@dataclass
class Reply:
    """What a hook or a route answers. ``passthrough``: only wait ``delay_s``, then answer as usual.
    ``drop``: close the connection without answering."""

    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay_s: float = 0.0
    drop: bool = False
    passthrough: bool = False

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body or b"", self.content_type or "application/octet-stream"


def reply(status: int = 200, body: Body = b"", **kw: Any) -> Reply:
    return Reply(status, body, **kw)


def delay(seconds: float) -> Reply:
    """A hook result: answer normally, ``seconds`` later."""
    return Reply(delay_s=seconds, passthrough=True)


def drop() -> Reply:
    """A hook result: close the connection without an answer."""
    return Reply(drop=True)


Hook = Callable[[Received], Union[Reply, None]]
Route = Callable[[Received], Union[Reply, tuple, Body]]
Model = Union[str, Callable[[list[dict]], list[float]]]

DEFAULT_METRICS = ("# HELP stub_requests_total Requests the stub served.\n# TYPE stub_requests_total counter\n"
                   "stub_requests_total{{path=\"predict\"}} {predict}\nstub_requests_total{{path=\"other\"}} {other}\n")


def invalid_row(row: Any) -> str | None:
    """Why ``row`` breaks the schema (what a careful candidate validates), or None."""
    if not isinstance(row, dict):
        return "a row must be an object"
    missing = [f for f in FEATURES if f not in row]
    extra = [k for k in row if k not in FEATURES]
    if missing or extra:
        return f"missing {missing} extra {extra}"
    for name in NUMERIC_FEATURES:
        v = row[name]
        if v is None:
            if name not in NULLABLE_FEATURES:
                return f"{name} may not be null"
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{name} must be a number"
        lo, hi = NUMERIC_RANGES[name]
        if not lo <= v <= hi:
            return f"{name} out of range"
        if name in INTEGER_FEATURES and not float(v).is_integer():
            return f"{name} must be a whole number"
    for name in CATEGORICAL_FEATURES:
        if not isinstance(row[name], str):  # an unseen category is drift, not bad input
            return f"{name} must be a string"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # bursts of new connections from the load generator

    def __init__(self, stub: "StubService", host: str) -> None:
        self.stub = stub
        super().__init__((host, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.protocol_version = "HTTP/1.1"  # keep-alive, as the grader's clients expect
        self.server.stub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, False)

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        self.server.stub._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any


class StubService:
    """One scripted candidate service (a threaded HTTP server), reusable for any ad-hoc stub.

    Default routes follow the contract: ``POST predict_path`` answers with ``model``'s predictions
    (``"v1"`` / ``"v2"``: the reference model's; a callable: ``f(rows) -> probabilities``),
    validating rows like a careful candidate (``invalid_status`` for bad rows, 400 for bodies
    that do not decode, 413 above ``max_body_bytes``); ``GET ready_path`` answers 200 while
    ``ready``; ``GET metrics_path`` serves ``metrics`` (text, or a callable of the stub).
    ``routes={(method, path): handler}`` adds or replaces routes (handler: ``Received ->
    Reply | (status, body[, content_type]) | body``); unknown routes get 404. Hooks run first,
    in order, on every request: the first that returns a ``Reply`` decides (``delay()`` only
    delays). Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(self, *, version: Model = "v1", protocol: str = "v1", predict_path: str = "/predict",
                 ready_path: str = "/healthz", metrics_path: str | None = "/metrics",
                 request_id_header: str = "X-Request-ID", reference: ReferenceModels | None = None,
                 validate: bool = True, invalid_status: int = 422, max_body_bytes: int = 1 << 20,
                 log_request_ids: bool | Callable[[Received], bool] = True,
                 log_inputs: bool | Callable[[list[dict]], Any] = True,
                 metrics: str | Callable[["StubService"], str] | None = None,
                 routes: dict[tuple[str, str], Route] | None = None, clock: Clock | None = None,
                 host: str = "127.0.0.1") -> None:
        self.protocol = protocol
        self.predict_path = predict_path
        self.ready_path = ready_path
        self.metrics_path = metrics_path
        self.request_id_header = request_id_header
        self.validate = validate
        self.invalid_status = invalid_status
        self.max_body_bytes = max_body_bytes
        self.log_request_ids = log_request_ids
        self.log_inputs = log_inputs  # False: ids without payloads; a callable: what to log for the rows
        self.metrics = metrics
        self.routes: dict[tuple[str, str], Route] = dict(routes or {})
        self.clock = clock or Clock()
        self.host = host
        self.ready = True
        self.hooks: list[Hook] = []
        self.requests: list[Received] = []
        self.rows: list[dict] = []  # every row a successful predict request carried, in arrival order
        self.log_lines: list[str] = []
        self._reference = reference
        self._model: Model = version
        self._pending: list[tuple[float, Model]] = []  # (clock time, model) switches still to come
        self._cache: dict[str, dict[str, float]] = {"v1": {}, "v2": {}}
        self._lock = threading.RLock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> "StubService":
        if self._server is None:
            self._server = _Server(self, self.host)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            daemon=True, name="stub-service")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "StubService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stub first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # scripting
    def serve(self, model: Model, after_s: float = 0.0) -> None:
        """Serve ``model`` from now on, or from ``after_s`` seconds on ``clock`` from now."""
        with self._lock:
            if after_s <= 0:
                self._model, self._pending = model, []
            else:
                self._pending.append((self.clock.monotonic() + after_s, model))
                self._pending.sort(key=lambda p: p[0])

    @property
    def model(self) -> Model:
        with self._lock:
            now = self.clock.monotonic()
            while self._pending and self._pending[0][0] <= now:
                self._model = self._pending.pop(0)[1]
            return self._model

    @property
    def version(self) -> str:
        """The version served now ("scripted" for a function of the rows)."""
        m = self.model
        return m if isinstance(m, str) else "scripted"

    def add_hook(self, hook: Hook) -> Hook:
        self.hooks.append(hook)
        return hook

    def fail(self, status: int = 500, body: Body = b'{"error": "injected"}', *, times: int | None = None,
             method: str | None = None, path: str | None = None, when: Callable[[Received], bool] | None = None,
             drop_connection: bool = False, delay_s: float = 0.0) -> Hook:
        """Add a hook failing matching requests (all, or the next ``times``) with ``status``, a
        dropped connection, or (``status=0``) only ``delay_s`` of delay. Returns it."""
        left = [times]
        lock = threading.Lock()

        def hook(req: Received) -> Reply | None:
            if (method and req.method != method) or (path and req.path != path) or (when and not when(req)):
                return None
            with lock:
                if left[0] is not None:
                    if left[0] <= 0:
                        return None
                    left[0] -= 1
            if drop_connection:
                return drop()
            if status == 0:
                return delay(delay_s)
            return Reply(status, body, content_type="application/json", delay_s=delay_s)

        return self.add_hook(hook)

    def predictions(self, rows: list[dict]) -> list[float]:
        """What the current model answers for ``rows``."""
        model = self.model
        if callable(model):
            return [float(p) for p in model(rows)]
        return self.reference_predictions(model, rows)

    def reference_predictions(self, version: str, rows: list[dict]) -> list[float]:
        """The reference model's predictions (cached per row: probe rows come again and again)."""
        cache = self._cache[version]
        keys = [json.dumps(r, sort_keys=True) for r in rows]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            ref = self._reference or reference_models()
            preds = ref.predict(version, [rows[i] for i in todo])
            for i, p in zip(todo, preds):
                cache[keys[i]] = float(p)
        return [cache[k] for k in keys]

    # observation
    def log(self, line: str) -> None:
        with self._lock:
            self.log_lines.append(line.rstrip("\n"))

    def log_text(self) -> str:
        with self._lock:
            return "".join(line + "\n" for line in self.log_lines)

    def predict_requests(self) -> list[Received]:
        return [r for r in list(self.requests) if r.method == "POST" and r.path == self.predict_path]

    def received(self, method: str | None = None, path: str | None = None) -> list[Received]:
        return [r for r in list(self.requests) if (method is None or r.method == method)
                and (path is None or r.path == path)]

    # serving
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = dict(h.headers.items())
        req = Received(h.command, h.path.split("?", 1)[0], headers, body, len(body),
                       time.monotonic())
        req.request_id = req.header(self.request_id_header)
        with self._lock:
            self.requests.append(req)
        out: Reply | None = None
        for hook in list(self.hooks):
            got = hook(req)
            if got is None:
                continue
            if got.passthrough:
                if got.delay_s:
                    time.sleep(got.delay_s)
                continue
            out = got
            break
        if out is None:
            out = self._route(req, body)
        if out.delay_s and not out.passthrough:
            time.sleep(out.delay_s)
        if out.drop:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        data, ctype = out.payload()
        h.send_response(out.status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in out.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        should_log = self.log_request_ids(req) if callable(self.log_request_ids) else self.log_request_ids
        if should_log:
            record = {"method": req.method, "path": req.path, "status": out.status, "request_id": req.request_id}
            if req.rows and self.log_inputs:  # what a replay needs (the contract's request logging)
                record["instances"] = self.log_inputs(req.rows) if callable(self.log_inputs) else req.rows
            self.log(json.dumps(record))

    def _route(self, req: Received, body: bytes) -> Reply:
        handler = self.routes.get((req.method, req.path))
        if handler is not None:
            return _as_reply(handler(req))
        if req.method == "POST" and req.path == self.predict_path:
            return self._predict(req, body)
        if req.method == "GET" and req.path == self.ready_path:
            return Reply(200, {"ready": True}) if self.ready else Reply(503, {"ready": False})
        if req.method == "GET" and self.metrics_path and req.path == self.metrics_path:
            if callable(self.metrics):
                text = self.metrics(self)
            else:
                predict = len(self.predict_requests())
                text = (self.metrics if self.metrics is not None else DEFAULT_METRICS).format(
                    predict=predict, other=len(self.requests) - predict)
            return Reply(200, text, content_type="text/plain; version=0.0.4")
        return Reply(404, {"error": "not found"})

    def _predict(self, req: Received, body: bytes) -> Reply:
        if len(body) > self.max_body_bytes:
            return Reply(413, {"error": "body too large"})
        try:
            rows = decode_request(body, self.protocol)  # type: ignore[arg-type]
            if self.protocol == "v2":  # decode_request ignores extra tensors: a careful server does not
                names = {t.get("name") for t in json.loads(body)["inputs"]}
                if self.validate and names - set(FEATURES):
                    return Reply(self.invalid_status, {"error": f"unknown inputs {sorted(names - set(FEATURES))}"})
        except ProtocolError as exc:
            return Reply(400, {"error": exc.message})
        if self.validate:
            problem = "no rows" if not rows else next((p for p in map(invalid_row, rows) if p), None)
            if problem:
                return Reply(self.invalid_status, {"error": problem})
        try:
            preds = self.predictions(rows)
        except Exception as exc:  # noqa: BLE001 - a stub's own failure shows as a 500, like a server's
            return Reply(500, {"error": f"{type(exc).__name__}: {exc}"})
        req.rows = rows
        with self._lock:
            self.rows.extend(rows)
        return Reply(200, encode_predictions(preds, self.protocol), content_type="application/json")  # type: ignore[arg-type]


def _as_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, tuple):
        status, body, *rest = value
        return Reply(status, body, content_type=rest[0] if rest else None)
    return Reply(200, value)


# --- reference models (loaded once per test session) ------------------------------------------


@functools.cache
def reference_models(flavor: str = "sklearn") -> ReferenceModels:
    """The grader's reference models, as ``grader.lifecycle`` loads them."""
    from grader.lifecycle import _default_artifacts, _reference_models

    return _reference_models(_default_artifacts(), flavor)


@functools.cache
def _probe(flavor: str, seed: int, n_rows: int, atol: float) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    from grader.lifecycle import _fingerprinter

    fp = _fingerprinter(reference_models(flavor), seed, n_rows, atol)
    return tuple(json.dumps(r) for r in fp.rows), fp.reference["v1"], fp.reference["v2"]


def fingerprinter(seed: int, n_rows: int = 16, atol: float = 1e-4, flavor: str = "sklearn") -> Fingerprinter:
    """A fresh fingerprinter (its learnt signatures are per session), built as the lifecycle does."""
    rows, v1, v2 = _probe(flavor, seed, n_rows, atol)
    return Fingerprinter([json.loads(r) for r in rows], {"v1": v1.copy(), "v2": v2.copy()}, atol)


# --- runtime ---------------------------------------------------------------------------------


@dataclass
class Command:
    """A scripted candidate command.

    ``duration_s`` of clock time passes while it runs (over ``timeout_s``: it times out and has
    no effect). Then the stub serves ``serve`` (None: unchanged), ``after_s`` clock seconds later.
    """

    exit_code: int | None = 0
    serve: Model | None = None
    after_s: float = 0.0
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""


@dataclass
class Call:
    name: str
    command: str
    timeout_s: float
    env: dict[str, str] | None


Script = Union[Command, Callable[["FakeRuntime", Call], Union[Command, CommandResult, int, None]]]


def default_commands() -> dict[str, Script]:
    """A well-behaved candidate: ``deploy v1`` / ``deploy v2`` serve that version, ``rollback`` v1."""
    return {"deploy v1": Command(serve="v1"), "deploy v2": Command(serve="v2"), "rollback": Command(serve="v1")}


class FakeRuntime(Runtime):
    """The ``Runtime`` interface over a ``StubService``; commands are scripted by their command
    line (then by their name), e.g. ``{"deploy v2": Command(exit_code=0)}`` for a deploy that does
    nothing. Unknown commands exit 127."""

    name = "fake"

    def __init__(self, stub: StubService, *, clock: Clock | None = None,
                 commands: dict[str, Script] | None = None, ctx: RuntimeContext | None = None) -> None:
        super().__init__(ctx)  # type: ignore[arg-type]
        self.stub = stub
        self.clock = clock or stub.clock
        self.commands: dict[str, Script] = {**default_commands(), **(commands or {})}
        self.calls: list[Call] = []

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        return True, ""

    def build(self) -> None:
        pass

    def up(self) -> None:
        self.stub.start()

    def endpoint(self) -> str:
        return self.stub.url

    def grader_host(self) -> str:
        return "127.0.0.1"

    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        call = Call(name, command, timeout_s, env)
        self.calls.append(call)
        script = self.commands.get(command, self.commands.get(name))
        if script is None:
            return CommandResult(name, command, 127, "", f"{command}: command not found", 0.0)
        got = script(self, call) if callable(script) else script
        if isinstance(got, CommandResult):
            return got
        if got is None or isinstance(got, int):
            got = Command(exit_code=0 if got is None else got)
        if got.duration_s > timeout_s:
            self._advance(timeout_s)
            return CommandResult(name, command, None, got.stdout, got.stderr, timeout_s, timed_out=True)
        self._advance(got.duration_s)
        if got.serve is not None:
            self.stub.serve(got.serve, after_s=got.after_s)
        return CommandResult(name, command, got.exit_code, got.stdout, got.stderr, got.duration_s)

    def _advance(self, seconds: float) -> None:
        if isinstance(self.clock, FakeClock):
            self.clock.advance(seconds)
        elif seconds:
            time.sleep(seconds)

    def alive(self) -> bool:
        return self.stub.running

    def logs(self) -> str:
        return self.stub.log_text()

    def diagnostics(self) -> dict[str, str]:
        return {"stub": f"{len(self.stub.requests)} requests received"}

    def down(self) -> None:
        self.stub.stop()


# --- drift observer --------------------------------------------------------------------------


Decide = Callable[[list[dict]], Union[Iterable[str], DriftReading, None]]


class ScriptedObserver(DriftObserver):
    """A drift signal decided by ``decide(last rows the stub predicted)``: the features it
    returns (empty: quiet), or a whole ``DriftReading``. Quiet below ``min_rows`` rows."""

    def __init__(self, stub: StubService, decide: Decide | None = None, window: int = 100,
                 min_rows: int = 50) -> None:
        self.stub = stub
        self.decide = decide or ShiftDetector()
        self.window = window
        self.min_rows = min_rows
        self.readings: list[DriftReading] = []

    @classmethod
    def always(cls, stub: StubService, *features: str) -> "ScriptedObserver":
        return cls(stub, lambda rows: set(features) or {"amount"}, min_rows=0)

    @classmethod
    def never(cls, stub: StubService) -> "ScriptedObserver":
        return cls(stub, lambda rows: (), min_rows=0)

    @classmethod
    def unreadable(cls, stub: StubService, error: str = "GET /drift failed: HTTP 500") -> "ScriptedObserver":
        return cls(stub, lambda rows: DriftReading.failed(error), min_rows=0)

    def poll(self) -> DriftReading:
        with self.stub._lock:
            rows = self.stub.rows[-self.window:] if self.window else []
        if len(rows) < self.min_rows:
            reading = DriftReading(firing=False, raw={"rows": len(rows)})
        else:
            got = self.decide(rows)
            if isinstance(got, DriftReading):
                reading = got
            else:
                features = frozenset(got or ())
                reading = DriftReading(firing=bool(features), features=features, raw={"rows": len(rows)})
        self.readings.append(reading)
        return reading

    def describe(self) -> str:
        return f"scripted observer over the stub's last {self.window} rows"


class ShiftDetector:
    """A sane little drift monitor over a window of rows, against in-distribution reference rows:
    per numeric feature a KS distance (nulls aside) and the null share, per categorical the share
    of unseen categories and the total-variation distance of the mix. Returns the drifted features."""

    def __init__(self, reference_rows: list[dict] | None = None, ks: float = 0.25, null_delta: float = 0.2,
                 unseen: float = 0.1, tv: float = 0.25) -> None:
        if reference_rows is None:
            from harness.traffic.baseline import baseline_records

            reference_rows = baseline_records(4000, 424_242)
        self.ks, self.null_delta, self.unseen, self.tv = ks, null_delta, unseen, tv
        self.ref_num = {f: np.sort(np.array([r[f] for r in reference_rows if r[f] is not None], float))
                        for f in NUMERIC_FEATURES}
        self.ref_null = {f: float(np.mean([r[f] is None for r in reference_rows])) for f in NUMERIC_FEATURES}
        self.ref_cat = {f: _shares([r[f] for r in reference_rows]) for f in CATEGORICAL_FEATURES}

    def __call__(self, rows: list[dict]) -> set[str]:
        drifted: set[str] = set()
        for f in NUMERIC_FEATURES:
            vals = [r.get(f) for r in rows]
            nulls = float(np.mean([v is None for v in vals]))
            if abs(nulls - self.ref_null[f]) > self.null_delta:
                drifted.add(f)
                continue
            x = np.sort(np.array([v for v in vals if isinstance(v, (int, float))], float))
            if len(x) >= 20:
                ref = self.ref_num[f]
                grid = np.concatenate([ref, x])
                gap = np.abs(np.searchsorted(ref, grid, "right") / len(ref) - np.searchsorted(x, grid, "right") / len(x))
                if float(gap.max()) > self.ks:
                    drifted.add(f)
        for f in CATEGORICAL_FEATURES:
            got = _shares([r.get(f) for r in rows])
            ref = self.ref_cat[f]
            unseen = sum(p for c, p in got.items() if c not in ref)
            tv = 0.5 * sum(abs(got.get(c, 0.0) - ref.get(c, 0.0)) for c in set(got) | set(ref))
            if unseen > self.unseen or tv > self.tv:
                drifted.add(f)
        return drifted


def _shares(values: list[Any]) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for v in values:
        out[v] = out.get(v, 0.0) + 1.0
    return {k: n / max(1, len(values)) for k, n in out.items()}


# --- the session -----------------------------------------------------------------------------


def contract_yaml(stub: StubService, *, deploy: str = "deploy {version}", rollback: str = "rollback") -> str:
    """A minimal takehome.yaml agreeing with the stub's protocol, paths and request-id header."""
    metrics = json.dumps(stub.metrics_path)  # JSON strings and null are YAML too
    drift = "  signal: http\n  http_path: /drift\n"
    return (f"version: 1\ncandidate:\n  name: Stub Candidate\nframework: stub\nflavor: sklearn\n"
            f"serving:\n  protocol: {stub.protocol}\n  predict_path: {stub.predict_path}\n"
            f"  ready_path: {stub.ready_path}\n  metrics_path: {metrics}\n"
            f"  request_id_header: {stub.request_id_header}\n"
            f"drift:\n{drift}runtimes:\n  local:\n    start: python serve.py\n"
            f"    deploy: {json.dumps(deploy)}\n    rollback: {json.dumps(rollback)}\n")


def make_session(stub: StubService, *, runtime: FakeRuntime | None = None, clock: Clock | None = None,
                 config: GraderConfig | None = None, overrides: dict[str, Any] | None = None,
                 observer: DriftObserver | None = None, contract: Contract | str | None = None,
                 tmp_path: Path | None = None, commands: dict[str, Script] | None = None, seed: int = 4242,
                 facts: Facts | None = None, run_id: str = "fa4e5e551000",
                 progress: Callable[[str], None] | None = None) -> GradingSession:
    """A real ``GradingSession`` around ``stub``, assembled as ``grader.lifecycle._bring_up`` does.

    The config is the shipped defaults plus ``overrides``; the contract is ``contract`` (a
    ``Contract`` or YAML text) or one written from the stub's settings (to ``tmp_path`` and read
    back with ``load_contract`` when given, else parsed). The stub gets the session's clock
    unless it has a fake one already. Close with ``close_session``.
    """
    cfg = config or load_config(overrides=overrides)
    if clock is None:
        clock = stub.clock if isinstance(stub.clock, FakeClock) else FakeClock()
    if not isinstance(stub.clock, FakeClock):
        stub.clock = clock
    if not isinstance(contract, Contract):
        text = contract if isinstance(contract, str) else contract_yaml(stub)
        if tmp_path is not None:
            (tmp_path / "takehome.yaml").write_text(text)
            contract = load_contract(tmp_path)
        else:
            contract = parse_contract(text)
    stub.start()
    if runtime is None:
        ctx = RuntimeContext(run_id=run_id, repo_dir=tmp_path or Path("."), work_dir=tmp_path or Path("."),
                             contract=contract, config=cfg, cleanup=CleanupStack())
        runtime = FakeRuntime(stub, clock=clock, commands=commands, ctx=ctx)
    client = ServiceClient(runtime.endpoint(), contract.serving, timeout_s=cfg.load.timeout_s)
    reference = reference_models(contract.flavor)
    fp = fingerprinter(seed, cfg.traffic.probe_rows, cfg.thresholds.correctness_atol, contract.flavor)
    messages: list[str] = []
    session = GradingSession(run_id=run_id, config=cfg, contract=contract, runtime=runtime, client=client,
                             reference=reference, fingerprinter=fp, observer=observer, seed=seed,
                             progress=progress or messages.append, commands=contract.runtime("local"),
                             clock=clock, t0=clock.monotonic(), facts=facts if facts is not None else Facts())
    return session


def close_session(session: GradingSession) -> None:
    session.client.close()
    if session.observer is not None:
        session.observer.stop()

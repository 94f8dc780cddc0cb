"""The grader against a hostile candidate: slow senders, huge answers, floods and bombs.

Every test talks to a real server on 127.0.0.1 (a raw socket server that misbehaves on purpose,
or the grader's own webhook receiver) and asserts a concrete bound: the call returned within its
deadline plus a little, the outcome names the limit, and the grader did not read (or allocate)
what it was sent.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from grader.reports.bounds import bound_report, clip_text
from grader.reports.write import write_reports
from grader.results import GradeReport, CandidateInfo, Outcome, PhaseResult, SectionResult, ItemResult
from harness.contract import ContractError, Serving, load_contract, parse_contract
from harness.limits import (CONTRACT_MAX_BYTES, EVIDENCE_MAX_CHARS, MAX_LOAD_RESPONSE_BYTES, MAX_RESPONSE_BYTES,
                            MiB)
from harness.load import LoadPlan, RequestSpec, run_open_loop
from harness.load.records import ERR_TIMEOUT
from harness.observers import HttpDriftObserver, PrometheusDriftObserver, WebhookObserver, WebhookReceiver
from harness.observers import webhook as webhook_mod
from harness.service import ServiceClient
from harness.traffic.replay import Replayer

HUGE = 200 * MiB  # what the hostile server offers to send
BLOCK = b"x" * 65536
SLACK_S = 0.6  # a call may overrun its deadline by one socket operation and the thread switch
ROOT = Path(__file__).resolve().parents[1]

VALID_CONTRACT = """\
version: 1
serving:
  predict_path: /predict
  ready_path: /healthz
drift:
  signal: http
  http_path: /drift
runtimes:
  local:
    start: python serve.py
    deploy: ./deploy {version}
    rollback: ./rollback
"""


# --- a misbehaving server --------------------------------------------------------------------

class HostileServer:
    """Raw HTTP/1.1 on 127.0.0.1; the request path picks the misbehaviour:

    /slow-body     headers at once, then the body one byte every ``drip_s``
    /slow-headers  the status line, then header bytes one every ``drip_s`` (never finished)
    /big           Content-Length 200 MB, streamed until the client gives up
    /big-unsized   200 MB with no Content-Length (ends at close), streamed the same way
    /gzip-bomb     a small gzip body that inflates to 200 MB
    /nested        200 OK with JSON nested 100 000 deep
    anything else  200 {"ok": true}
    """

    def __init__(self, drip_s: float = 1.0) -> None:
        self.drip_s = drip_s
        self.sent = 0  # body bytes handed to the kernel, over all connections
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.allow_reuse_address = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    @staticmethod
    def _read_request(sock: socket.socket) -> str | None:
        """The request path; the body (Content-Length) is read and dropped."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                       if k.strip().lower() == "content-length"), 0)
        left = length - len(rest)
        while left > 0:
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        return lines[0].split(" ")[1]

    def _stream(self, sock: socket.socket, total: int) -> None:
        left = total
        while left > 0 and not self._stop.is_set():
            block = BLOCK[:left]
            sock.sendall(block)
            self._count(len(block))
            left -= len(block)

    def _drip(self, sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.drip_s):
                return
            sock.sendall(data[i:i + 1])

    def _handle(self, sock: socket.socket) -> None:
        try:
            while True:  # keep-alive: several requests may come on one connection
                path = self._read_request(sock)
                if path is None:
                    return
                self._answer(sock, path.split("?")[0])
        except OSError:
            return  # the grader hung up on us: that is the point

    def _answer(self, sock: socket.socket, path: str) -> None:
        if path == "/slow-body":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n")
            self._drip(sock, b'{"ok": true, "drift": false, "predictions": [0.5]}'.ljust(60))
        elif path == "/slow-headers":
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            self._drip(sock, b"X-Padding: " + b"a" * 10_000 + b"\r\n\r\n")
        elif path == "/big":
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {HUGE}\r\n\r\n".encode())
            self._stream(sock, HUGE)
        elif path == "/big-unsized":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            self._stream(sock, HUGE)
            raise OSError("close-delimited body sent")
        elif path == "/gzip-bomb":
            body = gzip_bomb(HUGE)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        elif path == "/nested":
            body = b"[" * 100_000
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                         .encode() + body)
        elif path == "/predict-chunked":  # an honest answer, chunked: read whole, decoded
            body = b'{"predictions": [0.25]}'
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n")
        else:
            body = b'{"ok": true}'
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def gzip_bomb(size: int) -> bytes:
    """gzip of ``size`` zero bytes (about a thousandth of it), built without holding ``size`` bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [comp.compress(zeros) for _ in range(size // MiB)]
    return b"".join(parts) + comp.flush()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def _serving(**paths: str) -> Serving:
    return Serving(predict_path=paths.get("predict", "/predict"), ready_path=paths.get("ready", "/healthz"))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def peak_alloc(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` under tracemalloc; return its result and the peak bytes Python allocated."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- (a) slow senders: every call ends at its deadline ---------------------------------------

@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_request_gives_up_on_a_slow_sender_at_its_deadline(hostile: HostileServer, path: str) -> None:
    client = ServiceClient(hostile.url, _serving(), timeout_s=1.5)
    try:
        out, took = timed(lambda: client.request("GET", path))
    finally:
        client.close()
    assert took < 1.5 + SLACK_S, took
    assert not out.ok and "no complete response within 1.5 s (slow or stalled sender)" in (out.error or "")


def test_wait_ready_keeps_its_own_deadline_when_each_probe_is_slow(hostile: HostileServer) -> None:
    # Each probe may take 2 s; the whole wait is 1.2 s and must end then, not after the probe.
    client = ServiceClient(hostile.url, _serving(ready="/slow-headers"), timeout_s=5.0)
    try:
        out, took = timed(lambda: client.wait_ready(1.2, probe_s=2.0))
    finally:
        client.close()
    assert took < 1.2 + SLACK_S, took
    assert not out.ok and "slow or stalled sender" in (out.error or "")


def test_predict_on_a_slow_sender_is_an_error_not_a_hang(hostile: HostileServer) -> None:
    client = ServiceClient(hostile.url, _serving(predict="/slow-body"), timeout_s=1.0)
    try:
        out, took = timed(lambda: client.predict([{"amount": 1.0}]))
    finally:
        client.close()
    assert took < 1.0 + SLACK_S and not out.ok and out.predictions is None
    assert "within 1 s" in (out.error or "")


def test_observers_and_replayer_give_up_on_a_slow_sender(hostile: HostileServer) -> None:
    reading, took = timed(HttpDriftObserver(hostile.url, "/slow-headers", timeout_s=1.0).poll)
    assert took < 1.0 + SLACK_S and not reading.ok and "slow or stalled sender" in (reading.error or "")
    reading, took = timed(PrometheusDriftObserver(hostile.url, "/slow-body", "m", timeout_s=1.0).poll)
    assert took < 1.0 + SLACK_S and not reading.ok and "slow or stalled sender" in (reading.error or "")
    with Replayer(hostile.url, "/slow-headers", concurrency=2, timeout_s=1.0) as rep:
        stats, took = timed(lambda: rep.send([{"amount": 1.0}] * 4, rows_per_request=2))
    assert took < 1.0 + SLACK_S, took  # two requests in parallel, each cut at 1 s
    assert stats.errors == 2 and stats.status_counts == {"timeout": 2}
    assert "slow or stalled sender" in stats.first_error["error"]


def test_load_generator_times_out_slow_senders(hostile: HostileServer) -> None:
    plan = LoadPlan(rate_rps=10, duration_s=0.5, schedule="fixed", timeout_s=0.8)
    result, took = timed(lambda: run_open_loop(hostile.url, plan, lambda i: RequestSpec("GET", "/slow-body")))
    assert took < 0.5 + 0.8 + 1.5, took
    assert result.records and all(r.error == ERR_TIMEOUT for r in result.records)


# --- (b) huge answers: refused at the cap, never read whole -------------------------------------

@pytest.mark.parametrize("path", ["/big", "/big-unsized", "/gzip-bomb"])
def test_a_huge_response_is_an_over_cap_error_and_is_not_read(hostile: HostileServer, path: str) -> None:
    client = ServiceClient(hostile.url, _serving(), timeout_s=8.0)
    try:
        (out, took), peak = peak_alloc(lambda: timed(lambda: client.request("GET", path, keep_body=True)))
    finally:
        client.close()
    assert not out.ok and out.status == 200 and out.body is None
    assert "response exceeded 8 MiB cap" in (out.error or "")
    assert took < 5.0, took
    # 8 MiB of body at most, plus the buffer's own growth; nowhere near the 200 MB offered.
    assert peak < 3 * MAX_RESPONSE_BYTES, peak
    assert hostile.sent < 64 * MiB, hostile.sent  # stopped reading: the sender was cut off early
    assert len(out.body_excerpt) <= 400


def test_declared_oversize_is_refused_before_reading(hostile: HostileServer) -> None:
    client = ServiceClient(hostile.url, _serving(), timeout_s=5.0)
    try:
        out = client.request("GET", "/big")
    finally:
        client.close()
    assert "Content-Length: 209715200" in (out.error or "") and out.body_excerpt == ""


def test_observers_and_replayer_refuse_huge_answers(hostile: HostileServer) -> None:
    reading, peak = peak_alloc(HttpDriftObserver(hostile.url, "/big-unsized", timeout_s=5.0).poll)
    assert not reading.ok and "exceeded 8 MiB cap" in (reading.error or "") and peak < 3 * MAX_RESPONSE_BYTES
    assert len(json.dumps(reading.as_dict())) < 4000  # the reading quotes an excerpt, not the body
    reading = PrometheusDriftObserver(hostile.url, "/gzip-bomb", "m", timeout_s=5.0).poll()
    assert not reading.ok and "exceeded 8 MiB cap" in (reading.error or "")
    with Replayer(hostile.url, "/big", concurrency=2, timeout_s=5.0) as rep:
        stats, peak = peak_alloc(lambda: rep.send([{"amount": 1.0}] * 4, rows_per_request=2))
    assert stats.status_counts == {"too_large": 2} and "exceeded 1 MiB cap" in stats.first_error["error"]
    assert peak < 8 * MAX_LOAD_RESPONSE_BYTES


def test_nested_json_is_a_protocol_error_not_a_crash(hostile: HostileServer) -> None:
    client = ServiceClient(hostile.url, _serving(predict="/nested"), timeout_s=5.0)
    try:
        out = client.predict([{"amount": 1.0}])
    finally:
        client.close()
    assert not out.ok and "not JSON" in (out.error or "")
    reading = HttpDriftObserver(hostile.url, "/nested", timeout_s=5.0).poll()
    assert not reading.ok and "did not return JSON" in (reading.error or "")


def test_honest_answers_still_come_through_whole(hostile: HostileServer) -> None:
    client = ServiceClient(hostile.url, _serving(predict="/predict-chunked"), timeout_s=2.0)
    try:
        first, second = client.request("GET", "/ok", keep_body=True), client.request("GET", "/ok", keep_body=True)
        pred = client.predict([{"amount": 1.0}])
    finally:
        client.close()
    assert first.ok and second.ok and second.body == b'{"ok": true}' and first.error is None
    assert pred.ok and pred.predictions == [0.25]
    with Replayer(hostile.url, "/ok", concurrency=2, timeout_s=2.0) as rep:
        stats = rep.send([{"amount": 1.0}] * 6, rows_per_request=2)
    assert stats.ok == 3 and stats.status_counts == {"200": 3}


# --- (d) the load generator against a big-body server -----------------------------------------

@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_load_generator_records_over_cap_errors_not_oom(hostile: HostileServer, path: str) -> None:
    plan = LoadPlan(rate_rps=20, duration_s=0.5, schedule="fixed", timeout_s=5.0, keep_bodies=True)
    result, peak = peak_alloc(lambda: run_open_loop(hostile.url, plan, lambda i: RequestSpec("GET", path)))
    assert len(result.records) == 10
    assert {r.error for r in result.records} == {"response exceeded 1 MiB cap"}
    assert all(r.body is None for r in result.records)
    # Ten requests in flight, each capped at 1 MiB (the unsized ones are read up to the cap).
    assert peak < 10 * 2 * MAX_LOAD_RESPONSE_BYTES + 16 * MiB, peak
    assert result.stats().error_rate == 1.0


def test_load_generator_still_reads_normal_bodies(hostile: HostileServer) -> None:
    plan = LoadPlan(rate_rps=50, duration_s=0.4, schedule="fixed", timeout_s=2.0, keep_bodies=True)
    result = run_open_loop(hostile.url, plan, lambda i: RequestSpec("GET", "/ok"))
    assert result.records and all(r.ok and r.body == b'{"ok": true}' for r in result.records)


# --- (c) the webhook receiver: what the candidate POSTs to the grader ------------------------------

def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; return everything read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the receiver may refuse before we finish: its answer is what counts
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def test_webhook_refuses_oversized_bodies_and_stays_healthy() -> None:
    with WebhookReceiver() as rec:
        port = rec.port
        announced = (f"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {50 * MiB}\r\nExpect: 100-continue\r\n\r\n").encode()
        (answer, took) = timed(lambda: _raw(port, announced))
        assert answer.startswith(b"HTTP/1.1 413") and took < 2.0
        # Chunked, no size announced: refused once the running total passes the cap.
        chunked = (b"POST /alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 20)
        answer = _raw(port, chunked)
        assert answer.startswith(b"HTTP/1.1 413")
        resp = httpx.post(rec.url_for(), content=b"{" + b" " * (2 * MiB) + b"}", timeout=10)
        assert resp.status_code == 413
        assert httpx.post(rec.url_for(), json={"drift": True, "features": ["amount"]}).status_code == 200
        assert WebhookObserver(rec).poll().features == frozenset({"amount"})
        assert [r["status"] for r in rec.records()] == [413, 413, 413, 200]


def test_webhook_cuts_off_a_trickling_sender_at_its_deadline() -> None:
    with WebhookReceiver(request_deadline_s=1.0) as rec:
        with socket.create_connection(("127.0.0.1", rec.port), timeout=5) as sock:
            start = time.monotonic()
            sock.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            answer = b""
            try:
                for _ in range(20):  # a byte every 0.2 s: each recv is quick, the whole is not
                    time.sleep(0.2)
                    sock.sendall(b" ")
            except OSError:
                pass  # closed on us: expected
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError:
                pass
            took = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408") and took < 1.0 + 1.0, (answer[:40], took)
        # Headers trickled byte by byte are cut off too (no answer needed, just the close).
        with socket.create_connection(("127.0.0.1", rec.port), timeout=5) as sock:
            start = time.monotonic()
            try:
                for byte in b"POST /alerts HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.05)
            except OSError:
                pass
            took = time.monotonic() - start
        assert took < 1.0 + 0.5, took
        assert httpx.post(rec.url_for(), json={"drift": False}).status_code == 200
        assert any(r["status"] == 408 for r in rec.records())


def test_webhook_caps_connections_and_firing_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_mod, "MAX_FIRING_ALERTS", 5)
    with WebhookReceiver(request_deadline_s=2.0) as rec:
        idle = [socket.create_connection(("127.0.0.1", rec.port), timeout=5)
                for _ in range(webhook_mod.MAX_CONNECTIONS + 8)]
        try:
            time.sleep(0.3)
            refused = 0
            for sock in idle[webhook_mod.MAX_CONNECTIONS:]:
                sock.settimeout(1.0)
                try:
                    refused += sock.recv(1) == b""  # closed without a thread spent on it
                except (TimeoutError, ConnectionResetError):
                    refused += 1
            assert refused == 8
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)  # the held slots are released once their connections close
        alerts = {"alerts": [{"status": "firing", "labels": {"feature": f"f{i}"}} for i in range(6)]}
        resp = httpx.post(rec.url_for(), json=alerts, timeout=5)
        assert resp.status_code == 400 and "more than 5" in resp.text
        assert WebhookObserver(rec).poll().firing is False  # refused whole: nothing applied
        assert httpx.post(rec.url_for(), json={"drift": True}, timeout=5).status_code == 200


# --- (e) the contract file -------------------------------------------------------------------

BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{k}: &{k} [{', '.join(['*' + p] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi")))


def _bad_contracts(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a takehome.yaml in its own directory, what the error must say)."""
    out = {}
    for name, content, needle in [
        ("bomb", BOMB.encode(), "are not allowed in takehome.yaml"),
        ("alias", (VALID_CONTRACT + "extra: *lol\n").encode(), "YAML aliases (*lol) are not allowed"),
        ("binary", bytes(range(256)) * 64, "not a text file"),
        ("latin1", VALID_CONTRACT.replace("python", "pythön").encode("latin-1"), "not UTF-8 text (byte 0xf6"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "takehome.yaml").write_bytes(content)
        out[name] = (tmp_path / name / "takehome.yaml", needle)
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "takehome.yaml", "wb") as fh:
        fh.write(VALID_CONTRACT.encode())
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(50 * 1024):
            fh.write(line)
    out["big"] = (big / "takehome.yaml", "bytes; the limit is 256 KiB")
    return out


def test_bad_contract_files_give_a_clear_contract_error_quickly(tmp_path: Path) -> None:
    for name, (path, needle) in _bad_contracts(tmp_path).items():
        start = time.monotonic()
        tracemalloc.start()
        try:
            with pytest.raises(ContractError) as info:
                load_contract(path.parent)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert needle in str(info.value), (name, str(info.value))
        assert time.monotonic() - start < 1.0, name
        assert peak < 4 * CONTRACT_MAX_BYTES, (name, peak)  # the 50 MB file is not read whole
    assert f"is {(tmp_path / 'big' / 'takehome.yaml').stat().st_size} bytes" in _error(tmp_path / "big")


def _error(repo: Path) -> str:
    with pytest.raises(ContractError) as info:
        load_contract(repo)
    return str(info.value)


def test_alias_error_keeps_the_line_number_and_valid_contracts_still_parse() -> None:
    text = VALID_CONTRACT + "x: &anchor 1\n"
    with pytest.raises(ContractError, match=r"line 13, column 4: YAML anchors \(&anchor\)"):
        parse_contract(text)
    with pytest.raises(ContractError, match=r"predict_path \(line 3\)"):  # validation errors still name their line
        parse_contract(VALID_CONTRACT.replace("  predict_path: /predict\n", "  predict_path: predict\n"))
    assert parse_contract(VALID_CONTRACT).serving.predict_path == "/predict"
    with pytest.raises(ContractError, match="nested too deeply"):
        parse_contract("a: " + "[" * 50_000)
    with pytest.raises(ContractError, match="limit is 256 KiB"):
        parse_contract(VALID_CONTRACT + "#" * CONTRACT_MAX_BYTES)


def _selfcheck() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("selfcheck_hostile", ROOT / "assignment" / "selfcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("with_pyyaml", [True, False])
def test_selfcheck_refuses_the_same_contract_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  with_pyyaml: bool) -> None:
    sc = _selfcheck()
    assert sc.CONTRACT_MAX_BYTES == CONTRACT_MAX_BYTES
    if not with_pyyaml:
        monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError: the tiny parser
    for name, (path, needle) in _bad_contracts(tmp_path).items():
        start = time.monotonic()
        with pytest.raises(SystemExit) as info:
            sc.read_contract(str(path))
        message = str(info.value.code)
        assert "not allowed" in message if name in ("bomb", "alias") else needle in message, (name, message)
        assert "the grader refuses it too" in message and time.monotonic() - start < 1.0
    good = tmp_path / "good.yaml"
    good.write_text(VALID_CONTRACT)
    assert sc.read_contract(str(good))["serving"]["predict_path"] == "/predict"


# --- report fields quoting candidate output ------------------------------------------------------

def test_every_report_string_is_capped(tmp_path: Path) -> None:
    flood = "A" * (5 * MiB)
    outcome = Outcome.failed("v1_served", "deploy failed", deploy={"stdout_tail": flood, "lines": [flood] * 3},
                             **{"k" * 100_000: "long key"})
    item = ItemResult(id="deployment.v1_served", title="t", section="deployment", points=0, max_points=4,
                      status="fail", message=outcome.message, evidence=outcome.evidence)
    report = GradeReport(run_id="r", runtime="local", candidate=CandidateInfo(repo="x"), error=flood,
                         sections=[SectionResult(id="deployment", title="D", points=0, max_points=4, items=[item])],
                         phases=[PhaseResult(name="start", status="failed", started_at="now", duration_s=1.0,
                                             message=flood, error=flood, details={"log_tail": flood})])
    capped = bound_report(report)
    assert capped is not report and report.error == flood  # a copy: the original is untouched
    texts = [capped.error, capped.phases[0].message, capped.phases[0].error, capped.phases[0].details["log_tail"],
             capped.sections[0].items[0].evidence["deploy"]["stdout_tail"],
             *capped.sections[0].items[0].evidence["deploy"]["lines"]]
    assert all(len(t) <= EVIDENCE_MAX_CHARS and t.startswith("AAAA") and t.endswith("AAAA") for t in texts)
    assert all(len(k) <= EVIDENCE_MAX_CHARS for k in capped.sections[0].items[0].evidence)
    paths = write_reports(report, tmp_path / "out", formats=["json"])
    assert paths["json"].stat().st_size < 12 * EVIDENCE_MAX_CHARS  # not 25 MB of "A"
    small = GradeReport(run_id="r", runtime="local", candidate=CandidateInfo(repo="x"), error="short")
    assert bound_report(small) is small
    assert clip_text("x" * 100, 50) != "x" * 100 and len(clip_text("x" * 100, 50)) <= 50

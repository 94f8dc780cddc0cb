"""How fast can the open-loop generator go before it saturates, and how much tail does it add?

Starts a trivial aiohttp server (uvloop) in a subprocess on 127.0.0.1, so server and generator do
not share a GIL, then

1. runs ``harness.load`` at increasing rates, printing achieved rate, send lag, latency
   percentiles and the saturation verdict (if ``wrk`` is on PATH, also the same server closed-loop);
2. measures the generator's own tail at the grader's rates (50 and 200 req/s) in a process that
   holds what a grading holds (the grader's modules, pandas, scipy and the reference models loaded),
   with the collector left running (before) and the heap frozen during the schedule (after;
   the real gradings record the same in their latency evidence, generator_gc_pause_max_ms);
3. measures a 1 s stall on a server whose listen backlog is 64, with one connection per request
   in flight (before) and a bounded keep-alive pool (after), against the analytic p99 of the stall.

Bounded: about 5 s per rate and 8 s per tail run, under three minutes in all.

    python benchmarks/load_benchmark.py [--rates 500,1000,2000,3000,4000] [--seconds 5] [--tail-seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from harness.load import LoadPlan, RequestSpec, run_open_loop

BODY = b'{"instances": [[1.0, 2.0, 3.0]]}'
ROOT = Path(__file__).resolve().parents[1]


def serve(port: int, stall_at_s: float = 0.0, backlog: int = 128) -> None:
    """The server side: a constant tiny JSON reply, like a health-check-cheap model. With
    ``stall_at_s``, the first request after that many seconds holds every request for 1 s (a GC
    pause or model reload), and ``backlog`` bounds the kernel's queue of unaccepted connections."""
    import asyncio

    from aiohttp import web

    state = {"t0": -1.0, "stalled": False}

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        if stall_at_s and request.path != "/health":
            now = time.monotonic()
            if state["t0"] < 0:
                state["t0"] = now
            if not state["stalled"] and now - state["t0"] >= stall_at_s:
                state["stalled"] = True
                time.sleep(1.0)  # blocks the loop, as a GC pause or CPU-bound model would: nothing is accepted
        return web.json_response({"predictions": [0.5]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", predict)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=backlog)


def start_server(port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), *extra])
    wait_up(f"http://127.0.0.1:{port}/health")
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def grading_heap() -> list[object]:
    """Load what a grading process holds, so the collector has a realistic heap to walk."""
    import joblib
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401

    import grader.cli  # noqa: F401 - the grader's own modules and what they import, as in a grading

    # Our own artifacts, built by make artifacts (the grader loads the same to compute references).
    return [joblib.load(p) for p in sorted((ROOT / "build" / "artifacts" / "models").rglob("model.joblib"))]


def generator_tail(seconds: float) -> None:
    """Send lag and latency p99.9 at the grader's rates, collector running vs kept quiet."""
    held = grading_heap()
    print(f"\n-- generator tail at the grader's rates (heap: {len(held)} reference models, "
          f"{len(__import__('gc').get_objects()):,} tracked objects) --")
    print(f"{'rate':>5} {'collector':>10} {'lag p99':>8} {'lag p99.9':>9} {'lag max':>8} {'p99':>7} "
          f"{'p99.9':>7} {'max':>7} {'gc runs':>7} {'gc max':>7}")
    port = free_port()
    server = start_server(port)
    try:
        for rate in (50.0, 200.0):
            for quiet in (False, True):
                plan = LoadPlan(rate_rps=rate, duration_s=seconds, warmup_s=1.0, schedule="poisson", seed=2,
                                timeout_s=5.0, connections=32, quiet_gc=quiet)
                # Allocate per request as the grader does (a JSON body per row), so gen-2 comes due.
                res = run_open_loop(f"http://127.0.0.1:{port}", plan,
                                    lambda i: RequestSpec("POST", "/v1/models/m:predict",
                                                          json.dumps({"instances": [[float(i)] * 30]}).encode(),
                                                          {"Content-Type": "application/json"}))
                st = res.stats()
                lag999 = st.lag_hist.get_value_at_percentile(99.9) / 1000.0
                print(f"{rate:5.0f} {'quiet' if quiet else 'running':>10} {st.send_lag_p99_ms or 0:8.2f} "
                      f"{lag999:9.2f} {st.send_lag_max_ms or 0:8.2f} {st.p99_ms or 0:7.2f} {st.p999_ms or 0:7.2f} "
                      f"{st.max_ms or 0:7.2f} {res.meta['gc_collections']:7d} {res.meta['gc_pause_max_ms']:7.2f}")
                time.sleep(0.5)
    finally:
        stop_server(server)


def pool_under_stall() -> None:
    """A 1 s stall on a backlog-64 server at 200 req/s: one connection per request vs a pool of 32."""
    rate, duration, stall_at = 200.0, 6.0, 3.0
    # Analytic truth: requests due in the stall wait until it ends, so latency is (1 - u) s for u
    # uniform in the stall, and the fraction over x ms is (1 - x/1000) * 1 s * rate / (measured).
    measured = rate * (duration - 1.0)
    truth_p99 = 1000.0 * (1.0 - 0.01 * measured / rate)
    print(f"\n-- 1 s stall at {rate:g} req/s, listen backlog 64 (analytic p99 {truth_p99:.0f} ms) --")
    print(f"{'client connections':>22} {'p99':>8} {'p99.9':>8} {'max':>8} {'errors':>6} {'vs truth':>9}")
    for connections in (None, 32):
        port = free_port()
        server = start_server(port, "--stall-at", str(stall_at), "--backlog", "64")
        try:
            plan = LoadPlan(rate_rps=rate, duration_s=duration, warmup_s=1.0, schedule="fixed", timeout_s=5.0,
                            max_in_flight=2048, connections=connections)
            st = run_open_loop(f"http://127.0.0.1:{port}", plan,
                               lambda i: RequestSpec("POST", "/v1/models/m:predict", BODY)).stats()
        finally:
            stop_server(server)
        label = "one per request" if connections is None else f"pool of {connections}"
        p99 = st.p99_ms or 0.0
        print(f"{label:>22} {p99:8.1f} {st.p999_ms or 0:8.1f} {st.max_ms or 0:8.1f} {st.errors:6d} "
              f"{(p99 - truth_p99) / truth_p99:+9.1%}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"benchmark server at {url} did not come up")


def run_wrk(url: str, seconds: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("\nwrk not on PATH: skipped (apt-get install -y wrk)")
        return
    for conns in (1, 32):
        cmd = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
        print(
            f"wrk closed loop -t1 -c{conns:<3} {float(rps.group(1)) if rps else float('nan'):9.0f} req/s"
            f"   p50 {pct.get('50', '?'):>8}   p99 {pct.get('99', '?'):>8}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="500,1000,2000,3000,4000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tail-seconds", type=float, default=8.0)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stall-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--backlog", type=int, default=128, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.stall_at, args.backlog)
        return 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port)
    try:
        print(f"server: aiohttp+uvloop subprocess on {url}; generator: harness.load (uvloop) here")
        # Figures from a shared machine mean little without its load: print it with them.
        load1, _, _ = os.getloadavg()
        print(f"cpus: {os.cpu_count()}, load average (1 min) at start: {load1:.2f}")
        print(
            f"{'planned':>8} {'achieved':>9} {'lag p99':>8} {'lag max':>8} {'p50':>8} {'p99':>8} "
            f"{'p99.9':>8} {'max':>8} {'errors':>6}  verdict (SLO p99 100 ms)"
        )
        for rate in (float(r) for r in args.rates.split(",")):
            plan = LoadPlan(
                rate_rps=rate, duration_s=args.seconds, warmup_s=1.0, schedule="poisson", seed=1,
                timeout_s=5.0, max_in_flight=2048,
            )
            # A generator far behind its schedule would run long past the plan: cut it off (what
            # was due but unsent is then not counted; the send lag already shows saturation).
            stop = threading.Event()
            timer = threading.Timer(args.seconds + 2.0, stop.set)
            timer.start()
            try:
                res = run_open_loop(url, plan, lambda i: RequestSpec("POST", "/v1/models/m:predict", BODY), stop)
            finally:
                timer.cancel()
            st = res.stats()
            status, msg = st.verdict(p99_slo_ms=100.0, max_error_rate=0.001)
            print(
                f"{rate:8.0f} {st.achieved_rate_rps or 0:9.1f} {st.send_lag_p99_ms or 0:8.2f} "
                f"{st.send_lag_max_ms or 0:8.2f} {st.p50_ms or 0:8.2f} {st.p99_ms or 0:8.2f} "
                f"{st.p999_ms or 0:8.2f} {st.max_ms or 0:8.2f} {st.errors:6d}  {status}"
                + (f": {st.saturation_reason}" if st.saturated else "")
                + (" [cut off]" if res.stopped_early else "")
            )
            time.sleep(0.5)  # let TIME_WAIT sockets and the server settle between rates
        run_wrk(url + "/v1/models/m:predict", seconds=int(args.seconds))
    finally:
        stop_server(server)
    pool_under_stall()
    generator_tail(args.tail_seconds)  # last: it loads the heavy modules into this process
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

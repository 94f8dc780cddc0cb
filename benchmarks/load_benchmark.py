"""How fast can the open-loop generator go before it saturates? (and what does wrk say?)

Starts a trivial aiohttp server (uvloop) in a subprocess on 127.0.0.1, so server and generator do
not share a GIL, then runs ``harness.load`` at increasing rates, printing achieved rate, send lag,
latency percentiles and the saturation verdict. If ``wrk`` is on PATH it also measures the same
server closed-loop for comparison. Bounded: about 5 s per rate, under 90 s in all.

    python benchmarks/load_benchmark.py [--rates 500,1000,2000,3000,4000] [--seconds 5]
"""

from __future__ import annotations

import argparse
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


def serve(port: int) -> None:
    """The server side: a constant tiny JSON reply, like a health-check-cheap model."""
    import asyncio

    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"predictions": [0.5]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", predict)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


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
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_up(url + "/health")
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
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Signups per second (issue 19): `POST /subscribe` with distinct addresses against a real `digest serve`, each
signup's confirmation mail going to a local SMTP sink, measured with a real load generator.

    python benchmarks/signup_bench.py                      # 10 s per run, 50 connections, 3 runs
    python benchmarks/signup_bench.py --quick              # what `run.py --quick` does: short, no targets
    python benchmarks/signup_bench.py --against /tmp/main  # interleave runs of another checkout (A, B, A, B ...)

The load generator is Debian's `wrk` (installed through tests/debian_util.py when it is missing and we are root)
with a Lua script that posts a new address on every request; without `wrk`, an asyncio client with keep-alive
connections does the same. The form is posted as a page of the site posts it (`Sec-Fetch-Site: same-origin`), and
the per-IP limit is lifted (`DIGEST_SIGNUP_IP_LIMIT`): every request comes from 127.0.0.1. Each address is new,
so the per-address limit never applies. Reported: signups answered per second, p50 and p99 latency, and the time
until the sink had every confirmation (mails really sent, not only promised).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LUA = r"""
-- One new address per request: thread number, request number and the run's prefix.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  prefix = args[1]
  origin = args[2]
  counter = 0
end
function request()
  counter = counter + 1
  local body = "email=" .. prefix .. "-" .. id .. "-" .. counter .. "%40example.org"
  return wrk.format("POST", "/subscribe", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Origin"] = origin,
    ["Sec-Fetch-Site"] = "same-origin",
  }, body)
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "non2xx": %d, "errors": %d, ' ..
    '"p50": %f, "p99": %f}\n', summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


@dataclass(frozen=True)
class Load:
    """What one load run measured: requests answered 2xx, over how long, and latency percentiles (ms)."""

    answered: int
    seconds: float
    failed: int
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Result:
    """One run: the load, and when the sink had every confirmation."""

    load: Load
    mails: int
    mail_seconds: float  # from the first request until the last confirmation arrived (or the wait gave up)


class Sink:
    """An aiosmtpd server counting messages (the benchmark process only waits meanwhile, so it shares no GIL
    with anything measured)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.count = 0
        self.last = 0.0
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
                with sink._lock:
                    sink.count += 1
                    sink.last = time.perf_counter()
                return "250 OK"

        self.port = _free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str | None:
    """The path of `wrk`, installing Debian's package first when missing and allowed."""
    if shutil.which("wrk") is None:
        sys.path.insert(0, str(REPO))
        from tests.debian_util import ensure_packages

        ensure_packages(lambda: [] if shutil.which("wrk") else ["wrk"])
    return shutil.which("wrk")


def run_wrk(wrk: str, base: str, prefix: str, seconds: float, connections: int, folder: Path) -> Load:
    script = folder / "signup.lua"
    script.write_text(LUA)
    threads = min(2, connections)
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{round(seconds)}s", "--timeout", "10s", "-s",
         str(script), base, "--", prefix, base],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    answered = data["requests"] - data["non2xx"]
    return Load(answered, data["seconds"], data["non2xx"] + data["errors"], data["p50"], data["p99"])


def run_asyncio_client(base: str, prefix: str, seconds: float, connections: int) -> Load:
    """The same load without wrk: `connections` keep-alive HTTP/1.1 connections posting new addresses."""
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    failed = 0

    async def one(worker: int, stop_at: float) -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, int(port))
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            body = f"email={prefix}-{worker}-{n}%40example.org".encode()
            head = (
                f"POST /subscribe HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {base}\r\nSec-Fetch-Site: same-origin\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status:
                failed += 1
        writer.close()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(i, start + seconds) for i in range(connections)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    ordered = sorted(latencies) or [0.0]
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return Load(len(latencies) - failed, elapsed, failed, pick(0.50), pick(0.99))


def one_run(
    label: str, repo: Path, folder: Path, wrk: str | None, seconds: float, connections: int, prefix: str
) -> Result:
    """A fresh state, a sink and `digest serve` from `repo`; the load; then wait for every confirmation."""
    folder.mkdir(parents=True)
    sink = Sink()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        PYTHONPATH=str(repo),
        PYTHONDONTWRITEBYTECODE="1",
        DIGEST_SITE_URL=base + "/",
        DIGEST_SECRET_KEY="benchmark-secret-key-0123456789abcdef",
        DIGEST_STATE_PATH="state/digest.db",
        DIGEST_OUTPUT_DIR="site",
        DIGEST_WEB_STATIC="false",
        DIGEST_FROM_ADDRESS="Paper Digest <digest@localhost>",
        DIGEST_SMTP__HOST="127.0.0.1",
        DIGEST_SMTP__PORT=str(sink.port),
        DIGEST_SMTP__SECURITY="none",
        DIGEST_SIGNUP_IP_LIMIT="1000000000",  # every request comes from 127.0.0.1
        DIGEST_WEB_MAX_CLIENT_CONNECTIONS="0",
    )
    log = (folder / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_until_up(port, serve, folder)
        started = time.perf_counter()
        if wrk:
            load = run_wrk(wrk, base, prefix, seconds, connections, folder)
        else:
            load = run_asyncio_client(base, prefix, seconds, connections)
        mails = sink.wait_for(load.answered, timeout=max(30.0, load.answered / 20))
        mail_seconds = (sink.last or time.perf_counter()) - started
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        sink.stop()
    return Result(load, mails, mail_seconds)


def _wait_until_up(port: int, proc: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"digest serve exited {proc.returncode}: {(folder / 'serve.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("digest serve did not start within 30 s")


def measure(
    contestants: dict[str, Path], base: Path, quick: bool, log: Callable[[str], None], repeats: int | None = None
) -> dict[str, list[Result]]:
    """Runs of every contestant, interleaved (A, B, A, B ...) so that the machine's load hits them alike."""
    wrk = ensure_wrk()
    seconds, connections = (2, 10) if quick else (10, 50)
    repeats = repeats or (1 if quick else 3)
    results: dict[str, list[Result]] = {name: [] for name in contestants}
    for i in range(repeats):
        for name, repo in contestants.items():
            log(f"  signups ({name}): run {i + 1}/{repeats}, {connections} connections, {seconds:.0f} s")
            folder = base / f"signup-{name}-{i}"
            results[name].append(one_run(name, repo, folder, wrk, seconds, connections, f"r{i}{name}"))
    return results


def summary(name: str, runs: list[Result]) -> dict[str, Any]:
    rates = [r.load.per_second for r in runs]
    return {
        "name": name,
        "req_s": statistics.median(rates),
        "req_s_min": min(rates),
        "req_s_max": max(rates),
        "p50_ms": statistics.median(r.load.p50_ms for r in runs),
        "p99_ms": statistics.median(r.load.p99_ms for r in runs),
        "answered": sum(r.load.answered for r in runs),
        "failed": sum(r.load.failed for r in runs),
        "mails": sum(r.mails for r in runs),
        "mail_s": statistics.median(r.mails / r.mail_seconds if r.mail_seconds else 0.0 for r in runs),
    }


def scenario(base: Path, quick: bool, log: Callable[[str], None], row: Callable[..., Any]) -> list[Any]:
    """The rows of benchmarks/run.py: signups per second against this checkout (`row` is run.py's Row)."""
    s = summary("digest", measure({"digest": REPO}, base, quick, log)["digest"])
    tool = "wrk" if shutil.which("wrk") else "asyncio client"
    return [
        row("s signups", f"POST /subscribe, {tool}", None, None, f"{s['req_s']:,.0f} req/s",
            ">= 150 req/s", s["req_s"] >= 150, note=f"p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms; "
            f"{s['mails']}/{s['answered']} confirmations in the sink ({s['mail_s']:,.0f}/s end to end)"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description="Signups per second against digest serve (a report).")
    parser.add_argument("--quick", action="store_true", help="short runs, few connections")
    parser.add_argument("--against", type=Path, help="another checkout (e.g. main) to interleave with this one")
    parser.add_argument("--repeats", type=int, help="runs per contestant (default 3, 1 with --quick)")
    args = parser.parse_args()
    contestants = {"this": REPO}
    if args.against:
        contestants = {"other": args.against.resolve(), "this": REPO}
    base = Path(tempfile.mkdtemp(prefix="digest-signup-bench-"))
    load_before = os.getloadavg()[0]
    try:
        results = measure(contestants, base, args.quick, lambda m: print(m, file=sys.stderr, flush=True), args.repeats)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    rows = [summary(name, runs) for name, runs in results.items()]
    for s in rows:
        print(
            f"{s['name']:>6}: {s['req_s']:7.1f} req/s (runs {s['req_s_min']:.1f}..{s['req_s_max']:.1f}), p50 "
            f"{s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms; answered {s['answered']}, failed {s['failed']}, "
            f"confirmations received {s['mails']} ({s['mail_s']:.1f}/s end to end)"
        )
    if len(rows) == 2 and rows[0]["req_s"]:
        print(f"ratio this/other: {rows[1]['req_s'] / rows[0]['req_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

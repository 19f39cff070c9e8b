"""Scenario w (issue 19): `digest serve` serving the site's files next to `python -m http.server` and nginx, under
Debian's `wrk` (50 keep-alive connections), runs interleaved (every contestant once per round, file by file).

The site is a 10-paper issue of the synthetic corpus: the issue page (~50 KB) and the smallest topic RSS feed of at
least 2 KB (~3 KB). wrk and nginx are installed with apt through tests/debian_util.py when missing (CI is root);
without wrk the scenario reports "not available", without nginx it runs without that column. nginx gets a
throwaway configuration on a free port serving the same folder (as many workers as cores, access log buffered,
sendfile on). http.server is the standard library's threading server (HTTP/1.0: a connection per request).

SERVE_BENCH_BASELINE=/path/to/another/checkout adds that checkout's `digest serve` as one more contestant (run
with PYTHONPATH pointing at it), for before/after figures from the same interleaved run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONNECTIONS = 50
BASELINE = "digest serve, baseline checkout"


@dataclass
class Contestant:
    """A server under test: how to start it, and what wrk measured of it per file."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    results: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # rps, p50 ms, p99 ms


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_tools() -> tuple[str | None, str | None]:
    """wrk and nginx, installed through the tests' apt helper (one lock for every installer) when missing."""
    sys.path.insert(0, str(HERE.parent))
    from tests.debian_util import ensure_packages

    def nginx_path() -> str | None:
        return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)

    ensure_packages(lambda: [p for p, found in (("wrk", shutil.which("wrk")), ("nginx", nginx_path())) if not found])
    return shutil.which("wrk"), nginx_path()


def _wait_until_answers(contestant: Contestant, path: str, log_file: Path | None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if contestant.proc is not None and contestant.proc.poll() is not None:
            shown = log_file.read_text(errors="replace")[-2000:] if log_file else ""
            raise RuntimeError(f"{contestant.name} exited {contestant.proc.returncode}: {shown}")
        try:
            with socket.create_connection(("127.0.0.1", contestant.port), timeout=1) as sock:
                sock.sendall(f"GET /{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{contestant.name} did not answer within 60 s")


def _nginx_config(folder: Path, site: Path, port: int) -> Path:
    user = "user root root;\n" if os.geteuid() == 0 else ""  # the temp folders are private to this user
    temp = "".join(
        f"{kind}_temp_path {folder}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = folder / "nginx.conf"
    config.write_text(
        f"{user}worker_processes {os.cpu_count() or 1};\ndaemon off;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n{temp}access_log {folder}/access.log combined buffer=64k flush=1s;\n"
        "sendfile on; tcp_nopush on; keepalive_requests 100000;\n"
        "types { text/html html; application/rss+xml xml; application/json json; }\n"
        f"server {{ listen 127.0.0.1:{port}; root {site}; }}\n}}\n"
    )
    return config


def start(contestant: Contestant, ws: Any, site: Path, nginx: str | None, probe: str) -> None:
    """Start one server on a free port and wait until it answers."""
    contestant.port = port = free_port()
    logs = ws.root / f"{contestant.name.replace(' ', '-')}.log"
    with logs.open("wb") as out:
        if contestant.name.startswith("digest serve"):
            env = dict(ws.env)
            if "1 worker" in contestant.name:
                env["DIGEST_WEB_WORKERS"] = "1"
            if contestant.name == BASELINE:
                env["PYTHONPATH"] = os.environ["SERVE_BENCH_BASELINE"]
            args = [sys.executable, "-m", "digest", "serve", "--port", str(port)]
            contestant.proc = subprocess.Popen(args, env=env, cwd=ws.root, stdout=out, stderr=out)
        elif contestant.name == "http.server":
            args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
            contestant.proc = subprocess.Popen(args, cwd=ws.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            assert nginx is not None
            folder = ws.root / "nginx"
            folder.mkdir(exist_ok=True)
            config = _nginx_config(folder, site, port)
            contestant.proc = subprocess.Popen(
                [nginx, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")], stdout=out, stderr=out
            )
    _wait_until_answers(contestant, probe, logs)


def stop(contestant: Contestant) -> None:
    if contestant.proc is None or contestant.proc.poll() is not None:
        return
    contestant.proc.send_signal(signal.SIGTERM if contestant.name != "nginx" else signal.SIGQUIT)
    try:
        contestant.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        contestant.proc.kill()
        contestant.proc.wait()


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    """Requests per second, p50 and p99 latency in ms, and the count of errors (non-2xx/3xx and socket errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    for counts in re.findall(r"Socket errors: connect (\d+), read \d+, write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in counts)
    return rps, percentile("50"), percentile("99"), errors


def wrk(binary: str, url: str, seconds: float) -> tuple[float, float, float, int]:
    threads = str(min(2, os.cpu_count() or 1))
    args = [binary, "-t", threads, "-c", str(CONNECTIONS), "-d", f"{seconds:g}s", "--latency", "--timeout", "5s", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)


def serve_rows(
    base: Path, quick: bool, log: Callable[[str], None], workspace: Callable[..., Any], row: Callable[..., Any]
) -> list[Any]:
    """The rows of scenario w; `workspace` and `row` are run.py's Workspace and Row (no import cycle)."""
    wrk_binary, nginx = _ensure_tools()
    if wrk_binary is None:
        return [row("w serve", "", measured="not available (no wrk: apt-get install wrk)")]
    sys.path.insert(0, str(HERE))
    import corpus

    ws = workspace(base / "serve")
    corpus.write_corpus(ws.seeds, 10)
    ws.digest("render", "--now", "2000-01-03T08:00:00+00:00")
    site = ws.root / "site"
    feeds = sorted(
        (p for p in site.glob("topics/*/rss.xml") if p.stat().st_size >= 2000), key=lambda p: p.stat().st_size
    )
    files = {"small feed": feeds[0], "issue page": site / "issues" / "1" / "index.html"}
    paths = {label: path.relative_to(site).as_posix() for label, path in files.items()}
    names = (
        ["digest serve"]
        + ([] if quick else ["digest serve, 1 worker"])
        + ["http.server"]
        + (["nginx"] if nginx else [])
    )
    names += [BASELINE] if os.environ.get("SERVE_BENCH_BASELINE") else []
    contestants = [Contestant(name) for name in names]
    seconds, rounds = (1.0, 2) if quick else (5.0, 5)
    try:
        for contestant in contestants:
            log(f"  starting {contestant.name}")
            start(contestant, ws, site, nginx, paths["issue page"])
        for round_ in range(rounds):
            for label, path in paths.items():
                for contestant in contestants:
                    log(f"  wrk {label} on {contestant.name}, round {round_ + 1}/{rounds}")
                    rps, p50, p99, errors = wrk(wrk_binary, f"http://127.0.0.1:{contestant.port}/{path}", seconds)
                    if errors:
                        log(f"    {errors} errors")
                    contestant.results.setdefault(label, []).append((rps, p50, p99))
    finally:
        for contestant in contestants:
            stop(contestant)
    return _rows(contestants, files, rounds, seconds, row)


def _rows(contestants: list[Contestant], files: dict[str, Path], rounds: int, seconds: float, row: Any) -> list[Any]:
    rows = []
    load = os.getloadavg()[0]
    for label, path in files.items():
        size = f"{label} ({path.stat().st_size / 1000:.1f} KB), {CONNECTIONS} connections"
        medians: dict[str, tuple[float, float, float]] = {}
        for contestant in contestants:
            runs = contestant.results[label]
            rps, p50, p99 = (statistics.median(r[i] for r in runs) for i in range(3))
            medians[contestant.name] = (rps, p50, p99)
            spread = f"{min(r[0] for r in runs):,.0f}-{max(r[0] for r in runs):,.0f}"
            measured = f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            note = f"{label}: req/s range {spread} over {rounds} interleaved runs of {seconds:g} s; load {load:.1f}"
            rows.append(row(f"w serve: {contestant.name}", size, measured=measured, note=note))
        ours, stdlib = medians["digest serve"], medians["http.server"]
        rows.append(row("w serve: digest vs http.server", size, measured=f"{ours[0] / stdlib[0]:.1f}x req/s",
                        target=">= 3x", ok=ours[0] >= 3 * stdlib[0]))  # fmt: skip
        rows.append(row("w serve: digest p99", size, measured=f"{ours[2]:.1f} ms", target="< 50 ms", ok=ours[2] < 50))
        if "nginx" in medians:
            rows.append(row("w serve: nginx vs digest", size, measured=f"{medians['nginx'][0] / ours[0]:.1f}x req/s"))
    return rows

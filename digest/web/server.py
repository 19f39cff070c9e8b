"""Running the app under uvicorn so that it holds under load and abuse.

uvicorn offers `timeout_keep_alive` (idle keep-alive connections), `limit_concurrency` (beyond it, 503 at once) and
a cap on incomplete request data (`h11_max_incomplete_event_size`), but no timeout for receiving a request: its
keep-alive timer is reset by every byte, so a client sending one header byte every few seconds (slowloris) holds a
connection forever (uvicorn issue #157 lists `--timeout-request-start` as still to do). `HeaderDeadline` adds it at
the protocol level, where it belongs: every connection must deliver a complete request head within
`web_header_timeout` seconds of connecting (or of its previous response), else it is closed. Body reading has its
own limit in the app (`web_body_timeout`, digest.web.forms).

The same protocol keeps one client from taking every connection: a client address holding
`web_max_client_connections` already has its next connection answered 503 and closed at once (the proxies of
`trusted_proxies` are exempt: every reader comes through them). And a request that carries both Content-Length
and Transfer-Encoding (a request-smuggling shape) gets 400 and the connection is closed (RFC 9112 section 6.1).

Errors that repeat (an `accept()` failing with "Too many open files" thousands of times a second) are logged once
per `log_repeat_interval` with a count, so they cannot fill the disk. The access log is written in batches (at most
a second late), not one write per request.

`web_workers` processes serve one port (issue 19): the parent binds it (one SO_REUSEPORT socket per worker on
Linux, so the kernel spreads connections; one shared socket elsewhere), forks the workers, restarts one that dies
and stops them all on SIGTERM or Ctrl-C. What must hold across them lives outside any one process: signup limits
and consents in the state, the per-client connection cap in shared memory (`SharedClientCounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import mmap
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from digest.errors import DigestError, SettingsError
from digest.settings import Settings
from digest.web.logs import RedactTokens, RepeatFilter, buffer_access_log
from digest.web.static import SiteIndex, answer

log = logging.getLogger("digest.web")

_FD_RESERVE = 32  # descriptors kept for the state, templates, SMTP and the listening socket


_BUSY_TEXT = b"Too many connections from your address; try again in a minute.\n"
_BUSY_CLIENT = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 60\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


class AddressSet:
    """Addresses and networks (`10.0.0.0/8`), or `*` for any, as uvicorn reads `forwarded_allow_ips`."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = set(patterns)
        self.networks = []
        for pattern in patterns:
            with contextlib.suppress(ValueError):
                self.networks.append(ipaddress.ip_network(pattern, strict=False))

    def __contains__(self, address: object) -> bool:
        if "*" in self.patterns or address in self.patterns:
            return True
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class StrictFraming(h11.Connection):
    """h11 (which lets Transfer-Encoding win over Content-Length) refusing a request that carries both; and a
    request that `inline` answers at once (a built file) never reaches uvicorn's cycle: its end is read here and
    the next request taken, as uvicorn does after a response."""

    inline: Callable[[h11.Request], bool] | None = None

    def next_event(self) -> Any:
        answered = False
        while True:
            event = super().next_event()
            if isinstance(event, h11.Request):
                names = {name for name, _ in event.headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    # uvicorn answers a RemoteProtocolError with 400 and closes the connection.
                    raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
                if self.inline is not None and self.inline(event):
                    answered = True
                    if self.our_state is not h11.DONE:
                        return h11.NEED_DATA  # answered and closed (HTTP/1.0, Connection: close)
                    continue
            elif answered and isinstance(event, h11.EndOfMessage):
                answered = False
                self.start_next_cycle()
                continue
            return event


class ClientCounts:
    """Open connections per client address in this process (one worker: exact)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def admit(self, address: str, cap: int) -> bool:
        """Count one more connection from `address` unless `cap` are open already (then False, nothing counted)."""
        if self._open.get(address, 0) >= cap:
            return False
        self._open[address] = self._open.get(address, 0) + 1
        return True

    def remove(self, address: str) -> None:
        """Count one admitted connection from `address` fewer."""
        left = self._open.get(address, 1) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)


class SharedClientCounts(ClientCounts):
    """Open connections per client address across every worker process: a row of counters per worker in memory
    mapped before the fork (each worker changes only its own row, so a worker that dies is simply forgotten: its
    replacement clears the row), an address counted in the cell of its hash (salted per start: the workers are
    forked from one parent). Admitting is one check-and-count under a lock shared by the workers, so two workers
    accepting at the same instant cannot both take the last place or both refuse it. Two addresses sharing a cell
    count together, which can only refuse early (65,536 cells: rare), never let a client hold more."""

    CELLS = 65_536
    LOCK_WAIT = 0.1  # seconds; a worker killed inside the lock must not stop the others from accepting

    def __init__(self, workers: int) -> None:
        super().__init__()
        self.workers = workers
        self._memory = mmap.mmap(-1, workers * self.CELLS * 4)  # anonymous and shared with the forked workers
        self._cells = memoryview(self._memory).cast("i")
        self._lock = multiprocessing.get_context("fork").Lock()
        self.row = 0

    def take_row(self, row: int) -> None:
        """Become worker `row` (after the fork); a row left by a worker that died is cleared first."""
        self.row = row
        start = row * self.CELLS
        self._cells[start : start + self.CELLS] = memoryview(bytes(self.CELLS * 4)).cast("i")

    def admit(self, address: str, cap: int) -> bool:
        cell = hash(address) % self.CELLS
        locked = self._lock.acquire(timeout=self.LOCK_WAIT)
        try:
            if sum(self._cells[row * self.CELLS + cell] for row in range(self.workers)) >= cap:
                return False
            self._cells[self.row * self.CELLS + cell] += 1
            return True
        finally:
            if locked:
                self._lock.release()

    def remove(self, address: str) -> None:
        index = self.row * self.CELLS + hash(address) % self.CELLS
        self._cells[index] = max(0, self._cells[index] - 1)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (set `header_timeout` on a subclass), a cap
    on connections per client address (`per_client`, 0: none; the addresses in `exempt` are not counted), and
    strict request framing."""

    header_timeout = 10.0
    per_client = 0
    exempt: ClassVar[AddressSet] = AddressSet(())
    site: ClassVar[SiteIndex | None] = None  # the output folder's files, answered in the protocol
    _clients: ClassVar[ClientCounts] = ClientCounts()  # open connections per client address (one per subclass)
    _deadline: asyncio.TimerHandle | None = None
    _armed_for: object = None
    _counted: str | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = StrictFraming(h11.SERVER, config.h11_max_incomplete_event_size or 16 * 1024)
        if self.site is not None:
            self.conn.inline = self._answer_file

    def _answer_file(self, request: h11.Request) -> bool:
        """Answer a GET or HEAD of a built file right here (no ASGI cycle, no task: issue 19), headers and body in
        one write; False leaves the request to the app. Not while the client is not reading (write paused): the
        app's path waits for it, so pipelined requests cannot pile answers up in memory."""
        if self.site is None or self.flow.write_paused or request.method not in (b"GET", b"HEAD"):
            return False
        headers = dict(request.headers)  # h11 gives the names in lower case
        if b"content-length" in headers or b"transfer-encoding" in headers or b"upgrade" in headers:
            return False
        target, _, query = request.target.partition(b"?")
        try:
            path = unquote(target.decode("ascii"))
        except UnicodeDecodeError:
            return False
        method = request.method.decode("ascii")
        found = answer(self.site, method, path, headers)
        if found is None:
            return False
        status, response_headers, body = found
        self._unset_keepalive_if_required()
        if self.access_log:
            shown = quote(path) + ("?" + query.decode("ascii") if query else "")
            client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
            version = request.http_version.decode("ascii")
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', client, method, shown, version, status)
        head = h11.Response(
            status_code=status,
            headers=self.server_state.default_headers + response_headers,
            reason=STATUS_PHRASES[status],
        )
        data = self.conn.send(head) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        self.transport.write(data)
        self.server_state.total_requests += 1
        if self.conn.our_state is h11.MUST_CLOSE:
            self.conn.send(h11.ConnectionClosed())
            self.transport.close()
            self._disarm()
        else:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            self._arm()  # the next request on this connection gets its own deadline
        return True

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        address = self.client[0] if self.client else ""
        if self.per_client and address and address not in self.exempt:
            if not self._clients.admit(address, self.per_client):
                self.transport.write(_BUSY_CLIENT)
                self.transport.close()
                return
            self._counted = address
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._armed_for:
            self._disarm()  # a new request head is complete

    def on_response_complete(self) -> None:
        self._arm()  # the next request on this connection gets its own deadline (before pipelined ones start)
        super().on_response_complete()
        if self.transport.is_closing():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted is not None:
            self._clients.remove(self._counted)
            self._counted = None
        super().connection_lost(exc)


def protocol_with_deadline(
    seconds: float,
    per_client: int = 0,
    trusted_proxies: Sequence[str] = (),
    counts: ClientCounts | None = None,
    site: SiteIndex | None = None,
) -> type[HeaderDeadline]:
    """The protocol class uvicorn should build connections with (`counts`: shared by the workers; `site`: the
    files it answers itself)."""
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadline,),
        {
            "header_timeout": seconds,
            "per_client": per_client,
            "exempt": AddressSet(trusted_proxies),
            "_clients": counts if counts is not None else ClientCounts(),
            "site": site,
        },
    )


def connection_limit(wanted: int) -> int:
    """`web_max_connections`, lowered to what the open-file limit allows (each connection is a descriptor)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted + _FD_RESERVE <= soft:
        return wanted
    allowed = max(1, soft - _FD_RESERVE)
    log.warning("web_max_connections %d lowered to %d: the open-file limit is %d", wanted, allowed, soft)
    return allowed


def worker_count(wanted: int) -> int:
    """`web_workers` (0: one per CPU core), 1 where processes cannot be forked."""
    count = wanted or (os.cpu_count() or 1)
    if count > 1 and not hasattr(os, "fork"):
        log.warning("web_workers %d: this platform cannot fork worker processes; serving with one", count)
        return 1
    return count


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, bound before anything says "serving"; a port that is taken or not allowed is one
    DigestError naming host:port. `reuse_port`: one of several sockets on the port, each for one worker."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # proto given: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP (else Nagle's algorithm and
    # delayed ACKs stall every larger response).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = {
            errno.EADDRINUSE: "another program is listening there; stop it or choose another --port",
            errno.EACCES: "not allowed (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose another --port",
        }.get(exc.errno or 0, "check --host and --port")
        raise DigestError(f"cannot listen on {shown}: {exc.strerror or exc}: {hint}") from None
    return sock


def listen_for(host: str, port: int, workers: int) -> list[socket.socket]:
    """The sockets of `workers` processes: one each with SO_REUSEPORT (Linux spreads new connections over them
    evenly), else one that all share. The port is first bound without SO_REUSEPORT and let go, so that a port
    another program holds (another `digest serve` too, which would otherwise share it silently) is an error."""
    if workers == 1 or not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return [listen(host, port)]
    probe = listen(host, port)
    port = probe.getsockname()[1]
    probe.close()
    sockets: list[socket.socket] = []
    try:
        sockets += [listen(host, port, reuse_port=True) for _ in range(workers)]
    except DigestError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serve(settings: Settings, host: str, port: int, clock: Callable[[], datetime] | None = None) -> None:
    """Run the app under uvicorn in `web_workers` processes until Ctrl-C or SIGTERM (uvicorn shuts down
    gracefully on both); `clock` pins the time (tests)."""
    from digest.web import serves_site  # noqa: PLC0415 (the package imports this module: a cycle)

    output = Path(settings.output_dir)
    signup = bool(settings.secret_key.get_secret_value())
    if not signup and not serves_site(settings):
        raise SettingsError(
            f"nothing to serve: no site files ({output}/ missing or web_static off) and no secret_key for signup;"
            " run `digest render` or set DIGEST_SECRET_KEY"
        )
    workers = worker_count(settings.web_workers)
    sockets = listen_for(host, port, workers)
    if settings.web_static and not output.is_dir():
        log.warning("%s/: output folder not found: serving signup and unsubscribe only (run `digest render`)", output)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    repeat = RepeatFilter(settings.log_repeat_interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat)
    access = buffer_access_log()
    # No log line here names a thread, process or source line: skip finding them for every record (the logging
    # documentation's "Optimization" section), a few per cent of a busy server's time.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    shown_host = f"[{host}]" if ":" in host else host
    what = [f"{output}/"] if serves_site(settings) else []
    what += ["signup", "preferences", "unsubscribe"] if signup else []
    many = f" ({workers} worker processes)" if workers > 1 else ""
    log.info("serving %s on http://%s:%d/%s", ", ".join(what), shown_host, port, many)
    try:
        if workers == 1:
            with _stop_signals_end_the_run():
                _run_worker(settings, sockets[0], clock, ClientCounts(), 1)
        else:
            Workers(settings, sockets, clock, workers).run()
    finally:
        access.flush()
    log.info("stopped")


_STOPS = {signal.SIGTERM, signal.SIGINT}


class _StopSignal(Exception):
    """SIGTERM or SIGINT reached the one-process server outside uvicorn's own handlers."""


@contextlib.contextmanager
def _stop_signals_end_the_run() -> Iterator[None]:
    """uvicorn handles SIGTERM and SIGINT while it runs, then raises the one it caught again after its clean
    shutdown, which killed the process by that signal (exit -15) before the batched access log was flushed and
    "stopped" logged. Here that signal, or one that comes before uvicorn's handlers are in place, ends the run
    normally: the caller flushes the log and the exit code is 0. The one process and each forked worker run
    inside it."""

    def stop(signum: int, frame: object) -> None:
        raise _StopSignal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in _STOPS}
    try:
        yield
    except (_StopSignal, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_worker(
    settings: Settings, sock: socket.socket, clock: Callable[[], datetime] | None, counts: ClientCounts, workers: int
) -> None:
    """One process's uvicorn on `sock` (`workers`: how many share the port and the connection budget)."""
    import uvicorn  # noqa: PLC0415 (lazy: uvicorn and click only when used)

    from digest.web import create_app  # noqa: PLC0415 (the package imports this module: a cycle)

    app = create_app(settings, clock)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_deadline(
            settings.web_header_timeout,
            settings.web_max_client_connections,
            settings.trusted_proxies,
            counts,
            app.state.site_index,
        ),
        log_config=None,
        lifespan="on",
        proxy_headers=False,  # the app reads X-Forwarded-For itself, and takes only IP addresses (ForwardedClient)
        server_header=False,
        timeout_keep_alive=settings.web_keep_alive_timeout,
        # web_max_connections is the whole server's: each worker takes its share.
        limit_concurrency=connection_limit(-(-settings.web_max_connections // workers)),
        h11_max_incomplete_event_size=16 * 1024,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _die_with(parent: int) -> None:
    """Make this forked worker end at once when `parent` does, however it ends: a `kill -9` of `digest serve` must
    stop the whole server (no orphan keeps the port or sends signup mail), as it did with one process. Linux only
    (prctl PR_SET_PDEATHSIG); elsewhere the worker notices on its next restart check."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 (lazy: only forked workers on Linux need it)

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(0)


class Workers:
    """The parent of `web_workers` forked uvicorn processes: restarts one that dies (giving up when they keep
    dying), and on SIGTERM or SIGINT stops them all gracefully and returns."""

    RESTARTS = 5  # within RESTART_WINDOW seconds: then the workers are failing at start, not crashing by chance
    RESTART_WINDOW = 30.0

    def __init__(
        self, settings: Settings, sockets: list[socket.socket], clock: Callable[[], datetime] | None, count: int
    ) -> None:
        self.settings = settings
        self.count = count
        self.sockets = sockets if len(sockets) == count else sockets[:1] * count  # one each, or one shared
        self.clock = clock
        self.counts = SharedClientCounts(self.count)
        self.pids: dict[int, int] = {}  # pid -> worker number
        self.stopping = False
        self.restarts: list[float] = []

    def run(self) -> None:
        """Fork the workers and supervise them until they are stopped; DigestError if they keep failing."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for number in range(self.count):
                self._start(number)
            while self.pids:
                pid, status = os.wait()
                if pid not in self.pids or self.stopping:
                    self.pids.pop(pid, None)
                    continue
                number = self.pids.pop(pid)
                log.warning("web worker %d (pid %d) exited with %d; starting it again", number, pid,
                            os.waitstatus_to_exitcode(status))  # fmt: skip
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < self.RESTART_WINDOW] + [now]
                if len(self.restarts) > self.RESTARTS:
                    self._stop(signal.SIGTERM, None)
                    for left in list(self.pids):
                        os.waitpid(left, 0)
                    raise DigestError(f"web workers keep exiting ({self.RESTARTS} restarts in "
                                      f"{self.RESTART_WINDOW:.0f} s); see the lines above")  # fmt: skip
                self._start(number)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: object) -> None:
        self.stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _start(self, number: int) -> None:
        parent = os.getpid()
        # Stops are held across the fork: the child must not run the parent's handler (it would go on serving),
        # and each process takes a stop that came meanwhile once its own handling is in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        pid = os.fork()
        if pid:
            self.pids[pid] = number
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
            if self.stopping:  # stopped before this worker was started: it must hear it too
                self._stop(signal.SIGTERM, None)
            return
        code = 0
        try:
            _die_with(parent)
            # A stop that comes before uvicorn's own handlers are in place (while the app is built) must end this
            # worker too: ignored, it left the worker serving and the parent waiting for it forever. The one
            # uvicorn raises again after its clean shutdown ends it the same way, through os._exit below with
            # its logs flushed.
            with _stop_signals_end_the_run():
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
                self.counts.take_row(number)
                _run_worker(self.settings, self.sockets[number], self.clock, self.counts, self.count)
        except BaseException:
            log.exception("web worker %d failed", number)
            code = 1
        finally:
            for handler in logging.getLogger("uvicorn.access").handlers + logging.getLogger().handlers:
                handler.flush()
            os._exit(code)

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
per `log_repeat_interval` with a count, so they cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from digest.errors import DigestError, SettingsError
from digest.settings import Settings

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
    """h11 (which lets Transfer-Encoding win over Content-Length) refusing a request that carries both."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                # uvicorn answers a RemoteProtocolError with 400 and closes the connection.
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        return event


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (set `header_timeout` on a subclass), a cap
    on connections per client address (`per_client`, 0: none; the addresses in `exempt` are not counted), and
    strict request framing."""

    header_timeout = 10.0
    per_client = 0
    exempt: ClassVar[AddressSet] = AddressSet(())
    _clients: ClassVar[dict[str, int]] = {}  # open connections per client address (a fresh dict per subclass)
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
            self._counted = address
            self._clients[address] = self._clients.get(address, 0) + 1
            if self._clients[address] > self.per_client:
                self.transport.write(_BUSY_CLIENT)
                self.transport.close()
                return
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
            left = self._clients.get(self._counted, 1) - 1
            if left > 0:
                self._clients[self._counted] = left
            else:
                self._clients.pop(self._counted, None)
            self._counted = None
        super().connection_lost(exc)


def protocol_with_deadline(
    seconds: float, per_client: int = 0, trusted_proxies: Sequence[str] = ()
) -> type[HeaderDeadline]:
    """The protocol class uvicorn should build connections with."""
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadline,),
        {
            "header_timeout": seconds,
            "per_client": per_client,
            "exempt": AddressSet(trusted_proxies),
            "_clients": {},
        },
    )


class RepeatFilter(logging.Filter):
    """Let the same message (logger and format) through once per `interval` seconds; the next one that passes
    says how many were held back."""

    def __init__(self, interval: float, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval <= 0 or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        return True


class RedactTokens(logging.Filter):
    """Keep tokens out of the access log: query strings and the token part of /confirm/, /preferences/ and
    /my-data/."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact(target: str) -> str:
    """A request target without its secrets."""
    path = target.split("?", 1)[0]
    for prefix in ("/confirm/", "/preferences/", "/my-data/"):
        if prefix in path:
            head, _, rest = path.partition(prefix)
            path = head + prefix + "[redacted]" + ("/data.json" if rest.endswith("/data.json") else "")
    return path + ("?[redacted]" if "?" in target else "")


def connection_limit(wanted: int) -> int:
    """`web_max_connections`, lowered to what the open-file limit allows (each connection is a descriptor)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted + _FD_RESERVE <= soft:
        return wanted
    allowed = max(1, soft - _FD_RESERVE)
    log.warning("web_max_connections %d lowered to %d: the open-file limit is %d", wanted, allowed, soft)
    return allowed


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving"; a port that is taken or not allowed is one
    DigestError naming host:port."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # proto given: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP (else Nagle's algorithm and
    # delayed ACKs stall every larger response).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def serve(settings: Settings, host: str, port: int, clock: Callable[[], datetime] | None = None) -> None:
    """Run the app under uvicorn until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both); `clock` pins
    the time (tests)."""
    import uvicorn  # noqa: PLC0415 (lazy: uvicorn and click only when used)

    from digest.web import create_app, serves_site  # noqa: PLC0415 (the package imports this module: a cycle)

    output = Path(settings.output_dir)
    signup = bool(settings.secret_key.get_secret_value())
    if not signup and not serves_site(settings):
        raise SettingsError(
            f"nothing to serve: no site files ({output}/ missing or web_static off) and no secret_key for signup;"
            " run `digest render` or set DIGEST_SECRET_KEY"
        )
    sock = listen(host, port)
    if settings.web_static and not output.is_dir():
        log.warning("%s/: output folder not found: serving signup and unsubscribe only (run `digest render`)", output)
    app = create_app(settings, clock)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    repeat = RepeatFilter(settings.log_repeat_interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_deadline(
            settings.web_header_timeout, settings.web_max_client_connections, settings.trusted_proxies
        ),
        log_config=None,
        lifespan="on",
        proxy_headers=False,  # the app reads X-Forwarded-For itself, and takes only IP addresses (ForwardedClient)
        server_header=False,
        timeout_keep_alive=settings.web_keep_alive_timeout,
        limit_concurrency=connection_limit(settings.web_max_connections),
        h11_max_incomplete_event_size=16 * 1024,
    )
    server = uvicorn.Server(config)
    shown_host = f"[{host}]" if ":" in host else host
    what = [f"{output}/"] if serves_site(settings) else []
    what += ["signup", "preferences", "unsubscribe"] if signup else []
    log.info("serving %s on http://%s:%d/", ", ".join(what), shown_host, port)
    # uvicorn re-raises the captured SIGINT after a clean shutdown; a stop by Ctrl-C is not an error.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    log.info("stopped")

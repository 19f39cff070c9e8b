"""The output folder over HTTP: archive, issue pages, feeds.

Starlette's `StaticFiles` does the conditional GETs (ETag, Last-Modified, 304) and Range; this narrows it to the
output folder (no dotfiles, no `..`, no symlink leading outside), sets the feed content types explicitly, and serves
every file from a handle opened before the headers are sent: a render replacing the file meanwhile (an atomic
rename) cannot make the body disagree with its Content-Length, the reader simply gets the version it asked for.

`FastSite` answers the common request ahead of all that (issue 19: `os.path.realpath` per request, thread hops for
open and read, and the middlewares held `digest serve` near 800 req/s): a plain GET or HEAD of an already
canonical path to a built file of known type, up to `FAST_MAX_BYTES`, without a Range. Where a path leads is
resolved once and remembered (`SiteIndex`, forgotten whenever a build rewrites its marker); each request opens the
remembered real path with O_NOFOLLOW and asks the kernel where the handle points (`/proc/self/fd`), so a symlink
put in later still cannot lead out. Everything else (traversal attempts, hidden names, folders, ranges, errors,
other types) goes the `SiteFiles` way, so the fast path never serves what the slow one would refuse.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate, parsedate
from typing import BinaryIO
from urllib.parse import quote, unquote

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.build import media_type as built_media_type
from digest.output import BUILD_MARKER
from digest.render.feeds import is_subscription_feed

SUFFIX_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# The site's only scripts are its own files (the search page's search.js, manifest.js and shards): nothing inline,
# nothing from another origin, so that a rendering bug cannot become script injection.
SITE_CSP = "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"


def content_type(path: str) -> str | None:
    """The Content-Type for a file of the output folder (`path` relative to it): its row's in the table of
    outputs (mimetypes would say application/xml for a feed), else by its suffix (a file of the user's), else
    None to let Starlette guess."""
    media = built_media_type(path)
    if media is not None:
        return f"{media}; charset=utf-8"  # every file digest writes is UTF-8
    return SUFFIX_TYPES.get(os.path.splitext(path)[1].lower())


def is_hidden(path: str) -> bool:
    """True for any path with a component starting with a dot (`.digest-build.json`, `.x.tmp`, `..`)."""
    return path != "." and any(part.startswith(".") for part in path.replace("\\", "/").split("/"))


class OpenedFileResponse(FileResponse):
    """A FileResponse that sends an already opened file: headers and body come from the same inode."""

    def __init__(
        self, handle: BinaryIO, path: PathLike, status_code: int, media_type: str | None, headers: Mapping[str, str]
    ) -> None:
        stat_result = os.fstat(handle.fileno())
        super().__init__(path, status_code, headers, media_type, stat_result=stat_result)
        self._handle = handle

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        yield anyio.AsyncFile(self._handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # `pathsend` would hand the server the path to open again: exactly the race this class avoids.
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            self._handle.close()


class SiteFiles(StaticFiles):
    """StaticFiles for the output folder: dotfiles hidden, explicit content types, security headers; with a WebSub
    `hub`, the subscription feeds carry the `Link` headers WebSub section 4 requires (`rel=hub` and `rel=self`, the
    feed's canonical URL under `site_url`)."""

    def __init__(self, *, directory: PathLike, hub: str = "", site_url: str = "", follow_symlink: bool = False) -> None:
        super().__init__(directory=directory, html=True, follow_symlink=follow_symlink)
        self.hub = hub
        self.site_url = site_url

    async def get_response(self, path: str, scope: Scope) -> Response:
        # `path` is already percent-decoded and normalized; anything still hidden or climbing is refused here,
        # and lookup_path (follow_symlink=False) refuses what resolves outside the folder.
        if is_hidden(path) or "\x00" in path:
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        if isinstance(response, RedirectResponse):
            return directory_redirect(scope)
        if not isinstance(response, FileResponse) or isinstance(response, OpenedFileResponse):
            return response
        return await self._opened(response, path, scope)

    async def _opened(self, found: FileResponse, path: str, scope: Scope) -> Response:
        """Open the file StaticFiles found; its headers are recomputed from the open handle."""
        try:
            handle: BinaryIO = await anyio.to_thread.run_sync(open, found.path, "rb")
        except FileNotFoundError:
            raise HTTPException(status_code=404) from None
        headers = _extra_headers(found.media_type)
        feed = path.replace(os.sep, "/")
        if self.hub and found.status_code == 200 and is_subscription_feed(feed):
            headers["Link"] = f'<{self.hub}>; rel="hub", <{self.site_url}{feed}>; rel="self"'
        response = OpenedFileResponse(handle, found.path, found.status_code, found.media_type, headers)
        if response.status_code == 200 and self.is_not_modified(response.headers, Headers(scope=scope)):
            handle.close()
            return NotModifiedResponse(response.headers)
        return response

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file with its proper type (opened and checked for 304 in `get_response`)."""
        relative = os.path.relpath(os.path.abspath(full_path), os.path.abspath(self.directory or "."))
        media_type = content_type(relative.replace(os.sep, "/"))
        return FileResponse(full_path, status_code=status_code, media_type=media_type)


def directory_redirect(scope: Scope) -> Response:
    """The redirect from a folder's URL without its slash (`/issues/1`) to the folder (`/issues/1/`), relative
    (`./1/`): never built from the request's Host header, and right behind a proxy that serves the site under a
    path prefix."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    last = raw.rsplit(b"/", 1)[-1].decode("latin-1")
    location = "./" + quote(unquote(last), safe="") + "/"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return RedirectResponse(location, status_code=307)


def _extra_headers(media_type: str | None) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    if media_type is not None and media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = SITE_CSP
    return headers


# --- the fast path ---------------------------------------------------------------------------------------------

FAST_MAX_BYTES = 1 << 20  # larger files are streamed by SiteFiles in chunks from a worker thread
_INDEX_LIMIT = 20_000  # remembered paths; beyond it the index starts afresh (it only ever holds existing files)
_MARKER_CHECK_SECONDS = 0.5  # how often the build marker is looked at (a stat)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_PROC_FD = "/proc/self/fd/"
_NOT_CANONICAL = re.compile(r"//|/\.|\\|\x00|%")  # a dot after a slash: hidden names, `.` and `..`


@dataclass
class SiteEntry:
    """One servable file: its real path, the headers that do not depend on its version, and the headers of the
    version last seen (recomputed when its mtime or size changes)."""

    real_path: str
    fixed: list[tuple[bytes, bytes]]
    version: tuple[float, int] = (-1.0, -1)
    etag: bytes = b""
    last_modified: bytes = b""


class SiteIndex:
    """Where the output folder's URL paths lead, resolved once per build: a path maps to a regular file of the
    folder (real path inside its real root) with a content type digest knows, or is left to SiteFiles."""

    def __init__(
        self, directory: os.PathLike[str] | str, *, hub: str = "", site_url: str = "", is_route: Callable[[str], bool]
    ) -> None:
        self.directory = os.fspath(directory)
        self.hub = hub
        self.site_url = site_url
        self.is_route = is_route
        self.kernel_paths = os.path.isdir(_PROC_FD)  # Linux (and /proc mounted): where a handle points, in one call
        self._entries: dict[str, SiteEntry] = {}
        self._marker: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.root = os.path.realpath(self.directory)

    def lookup(self, path: str) -> SiteEntry | None:
        """The entry for a URL path (`/`, `/issues/1/`, `/rss.xml`), or None when SiteFiles should answer."""
        now = time.monotonic()
        if now - self._checked > _MARKER_CHECK_SECONDS:
            self._checked = now
            self._check_marker()
        entry = self._entries.get(path)
        if entry is None:
            entry = self._resolve(path)
            if entry is not None:
                if len(self._entries) >= _INDEX_LIMIT:
                    self._entries.clear()
                self._entries[path] = entry
        return entry

    def forget(self, path: str) -> None:
        """Drop a path whose file went away or changed shape (the next request resolves it again)."""
        self._entries.pop(path, None)

    def _check_marker(self) -> None:
        try:
            st = os.stat(os.path.join(self.directory, BUILD_MARKER))
            marker: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            marker = None
        if marker != self._marker:
            self._marker = marker
            self._entries.clear()
            self.root = os.path.realpath(self.directory)

    def _resolve(self, path: str) -> SiteEntry | None:
        if not path.startswith("/") or _NOT_CANONICAL.search(path) or self.is_route(path):
            return None
        relative = path[1:] + ("index.html" if path.endswith("/") else "")
        media = content_type(relative)
        if media is None or is_hidden(relative):
            return None
        real = os.path.realpath(os.path.join(self.root, relative))
        if not real.startswith(self.root + os.sep):
            return None
        try:
            if not stat.S_ISREG(os.stat(real).st_mode):
                return None
        except OSError:
            return None
        fixed = [(b"content-type", media.encode("latin-1"))]
        fixed += [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in _extra_headers(media).items()
        ]
        if self.hub and is_subscription_feed(relative):
            link = f'<{self.hub}>; rel="hub", <{self.site_url}{relative}>; rel="self"'
            fixed.append((b"link", link.encode("latin-1")))
        return SiteEntry(real, fixed)

    def open(self, path: str, entry: SiteEntry) -> tuple[int, os.stat_result] | None:
        """A handle on the entry's file and its stat, when it is still a regular file inside the folder and small
        enough; else None (and the path is forgotten if it no longer leads where it did)."""
        try:
            fd = os.open(entry.real_path, _OPEN_FLAGS)
        except OSError:
            self.forget(path)  # removed by a build, or replaced by a symlink (O_NOFOLLOW): resolve afresh
            return None
        try:
            where = os.readlink(_PROC_FD + str(fd)) if self.kernel_paths else os.path.realpath(entry.real_path)
            st = os.fstat(fd)
            if where != entry.real_path or not stat.S_ISREG(st.st_mode):
                self.forget(path)  # a folder on the way became a symlink, or the file a folder
                os.close(fd)
                return None
            if st.st_size > FAST_MAX_BYTES:
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        return fd, st


def _version_headers(entry: SiteEntry, st: os.stat_result) -> None:
    """ETag and Last-Modified exactly as Starlette's FileResponse makes them (the two paths must agree)."""
    version = (st.st_mtime, st.st_size)
    if entry.version != version:
        base = f"{st.st_mtime}-{st.st_size}".encode()
        entry.etag = f'"{hashlib.md5(base, usedforsecurity=False).hexdigest()}"'.encode()
        entry.last_modified = formatdate(st.st_mtime, usegmt=True).encode()
        entry.version = version


def _not_modified(entry: SiteEntry, request: Mapping[bytes, bytes]) -> bool:
    """Starlette's StaticFiles.is_not_modified, on raw headers."""
    if_none_match = request.get(b"if-none-match")
    if if_none_match:
        if if_none_match.strip() == b"*":
            return True
        return entry.etag in [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
    if_modified_since = request.get(b"if-modified-since")
    if if_modified_since is None:
        return False
    since = parsedate(if_modified_since.decode("latin-1"))
    modified = parsedate(entry.last_modified.decode("latin-1"))
    return since is not None and modified is not None and since >= modified


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    left = size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break  # shortened in place meanwhile: send what is there, with its own length
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def answer(index: SiteIndex, method: str, path: str, request: Mapping[bytes, bytes]) -> Answer | None:
    """The status, headers and body for a GET or HEAD of a servable file (304 when the client's copy is current),
    or None when SiteFiles should answer (a Range, a path the index does not serve, a file that changed shape)."""
    if method not in ("GET", "HEAD") or b"range" in request:  # ranges: SiteFiles checks and bounds them
        return None
    entry = index.lookup(path)
    opened = index.open(path, entry) if entry is not None else None
    if entry is None or opened is None:
        return None
    fd, st = opened
    try:
        _version_headers(entry, st)
        if _not_modified(entry, request):
            return 304, [(b"cache-control", b"no-cache"), (b"etag", entry.etag)], b""
        body = b"" if method == "HEAD" else _read_all(fd, st.st_size)
    finally:
        os.close(fd)
    length = st.st_size if method == "HEAD" else len(body)
    headers = [
        *entry.fixed,
        (b"accept-ranges", b"bytes"),
        (b"content-length", str(length).encode()),
        (b"last-modified", entry.last_modified),
        (b"etag", entry.etag),
    ]
    return 200, headers, body


class FastSite:
    """ASGI middleware (first in the stack): answers GET and HEAD of servable files from the `SiteIndex` in one
    read on the event loop (files of the page cache, at most FAST_MAX_BYTES), passing every other request on.
    `digest serve` answers most of them even earlier, in its protocol (digest.web.server), with `answer` too."""

    def __init__(self, app: ASGIApp, index: SiteIndex) -> None:
        self.app = app
        self.index = index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and not scope.get("root_path"):
            found = answer(self.index, scope["method"], scope["path"], dict(scope["headers"]))
        if found is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = found
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def route_matcher(patterns: Sequence[re.Pattern[str]]) -> Callable[[str], bool]:
    """Whether a path belongs to one of the app's own routes (never answered from the folder)."""
    return lambda path: any(pattern.match(path) for pattern in patterns)

"""The output folder over HTTP: archive, issue pages, feeds.

Starlette's `StaticFiles` does the conditional GETs (ETag, Last-Modified, 304) and Range; this narrows it to the
output folder (no dotfiles, no `..`, no symlink leading outside), sets the feed content types explicitly, and serves
every file from a handle opened before the headers are sent: a render replacing the file meanwhile (an atomic
rename) cannot make the body disagree with its Content-Length, the reader simply gets the version it asked for.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import BinaryIO
from urllib.parse import quote, unquote

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from digest.render.feeds import is_subscription_feed

# Explicit types for what `digest render` writes; mimetypes would say application/xml or application/json.
CONTENT_TYPES: Mapping[str, str] = {
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "issues.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
}
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
    """The Content-Type for a file of the output folder, or None to let Starlette guess."""
    name = os.path.basename(path)
    if name in CONTENT_TYPES:
        return CONTENT_TYPES[name]
    if name.startswith("feed-") and name.endswith(".json"):  # archive/feed-<k>.json, the JSON Feed archive pages
        return CONTENT_TYPES["feed.json"]
    return SUFFIX_TYPES.get(os.path.splitext(name)[1].lower())


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
        media_type = content_type(os.fspath(full_path))
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

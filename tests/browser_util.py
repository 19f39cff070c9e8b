"""Headless Chromium for tests that look at rendered pages the way a reader's browser does.

Shared by the render tests. `find_chromium()` provides the browser (installing Debian's `chromium` when running
as root); `measure_page()` screenshots a page at a given width and reports how wide its content really is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal

from tests.debian_util import ensure_packages

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Without the background-networking flags Chromium keeps trying to reach the (closed) network.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


#: Launch arguments for Playwright (it adds its own headless flag).
BROWSER_ARGS = [a for a in _FLAGS if a != "--headless"]


def _which() -> str | None:
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _has_cjk_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    listing = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(listing.stdout.strip())


def find_chromium() -> str | None:
    """Path of a Chromium binary. As root, installs what is missing with apt-get: Debian's `chromium`, and
    `fonts-noto-cjk` (without a CJK font every Chinese character renders as an empty box).

    Returns None when no browser can be provided (not root, no apt-get, install failed), so that callers can
    fail with a clear message.
    """
    ensure_packages(lambda: ([] if _which() else ["chromium"]) + ([] if _has_cjk_font() else ["fonts-noto-cjk"]))
    return _which()


def measure_page(
    html_path: Path,
    width: int,
    png_out: Path,
    *,
    height: int = 900,
    query: str = "",
    color_scheme: Literal["light", "dark"] = "light",
) -> int:
    """Open `html_path` in headless Chromium with a `width` x `height` CSS px viewport, save a full-page
    screenshot to `png_out`, and return the page's scrollWidth. `color_scheme` is what the page's
    `prefers-color-scheme` media query sees.

    A scrollWidth larger than `width` means something overflows horizontally (the reader must scroll sideways).
    Playwright drives Debian's Chromium (no browser download): unlike `chromium --screenshot`, it sets the
    viewport exactly, even below the 500 px minimum of a headless window.
    """
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium is not available (install it with `apt-get install -y chromium`)")
    png_out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=color_scheme)
            page.goto(html_path.resolve().as_uri() + (f"?{query}" if query else ""), wait_until="load")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(png_out), full_page=True)
            return int(page.evaluate("document.documentElement.scrollWidth"))
        finally:
            browser.close()

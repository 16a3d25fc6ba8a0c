"""Headless Chromium for the explore page's tests and benchmark: the system's browser, driven by
Playwright (``playwright`` from the dev extra; its own browser download is not used)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

# No sandbox (CI runs as root) and none of Chromium's own background requests, so any network
# request a test sees comes from the page.
FLAGS: tuple[str, ...] = ("--no-sandbox", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run")
INSTALL_HINT = "apt-get install -y chromium (or set GRIDSTUDY_CHROMIUM to a Chromium binary)"


def chromium_path() -> str | None:
    """The Chromium binary: $GRIDSTUDY_CHROMIUM, else chromium or chromium-browser on PATH."""
    if os.environ.get("GRIDSTUDY_CHROMIUM"):
        return os.environ["GRIDSTUDY_CHROMIUM"]
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any) -> Any:
    """A headless Chromium browser (raises RuntimeError when none is installed)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(f"no chromium found; {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=path, args=list(FLAGS))


def open_page(browser: Any, url: str, timeout_ms: int = 60_000,
              before: Callable[[Any], None] | None = None) -> tuple[Any, dict[str, list]]:
    """Open ``url`` in a new page and wait until the explorer says it is drawn.

    ``before(page)`` runs before the page loads. Returns the page and what it logged: console
    messages (type, text), uncaught page errors and every request beyond the page itself.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    if before is not None:
        before(page)
    log: dict[str, list] = {"console": [], "errors": [], "requests": []}
    page.on("console", lambda m: log["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url) if r.url != url else None)
    page.goto(url)
    page.wait_for_selector("html[data-ready='1']", timeout=timeout_ms)
    return page, log

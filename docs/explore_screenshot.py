"""Redraw docs/explore.png, the README's screenshot of ``gridstudy explore``.

Run from the repository root: ``PYTHONPATH=. python docs/explore_screenshot.py``. Writes the
reference study's page to a temporary file, opens it in headless Chromium (tests/browser.py),
and saves the top of the page as a 256-colour PNG (a plain screenshot is about 3 times larger).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image

from analysis.explore_page import write_explorer
from tests import browser

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "explore.png"


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        page_file = write_explorer(ROOT / "results" / "reference-cpu", Path(tmp) / "page.html")
        chrome = browser.launch(playwright)
        page, _ = browser.open_page(chrome, page_file.resolve().as_uri())
        page.set_viewport_size({"width": 1400, "height": 1480})
        page.wait_for_timeout(500)  # Bokeh re-lays out the plots to the new width
        png = page.screenshot()
        chrome.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

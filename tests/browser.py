"""Open a local HTML file in headless Chromium: its DOM after load, what it wrote to the console,
and a screenshot (tests that check a report the way a reader sees it).

Chromium is found on PATH (``chromium``, as Debian packages it); where there is none the test
skips, saying how to install it (``.ci/install-browser.sh``), unless ``TAKEHOME_REQUIRE_BROWSER=1``
(CI sets it: there a missing browser is a failure, not a skip).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Where screenshots are kept for people to look at (CI keeps this folder as an artifact).
ARTIFACTS = Path(os.environ.get("TAKEHOME_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent
                                / "reports" / "test-artifacts"))
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?:?\d*\] (.*)$")


@dataclass
class Page:
    dom: str
    console: list[str]  # every message the page wrote to the console (errors included)
    screenshot: Path


def browser() -> str:
    """The Chromium binary, or a skip (a failure under TAKEHOME_REQUIRE_BROWSER=1)."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    why = "no headless Chromium on PATH; run `sudo bash .ci/install-browser.sh` (Debian: apt-get install chromium)"
    if os.environ.get("TAKEHOME_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    pytest.skip(why)


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="takehome-chromium-") as profile:
        return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
                              capture_output=True, text=True, timeout=timeout_s)


def open_page(html: Path, screenshot_name: str, width: int = 1400, height: int = 2400,
              timeout_s: float = 90.0) -> Page:
    """Load ``html`` twice (once for the DOM and console, once for the screenshot)."""
    url = html.resolve().as_uri()
    dumped = _run(["--dump-dom", url], timeout_s)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [m.group(1) for line in dumped.stderr.splitlines() if (m := _CONSOLE.search(line))]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / screenshot_name
    taken = _run([f"--window-size={width},{height}", f"--screenshot={shot}", "--hide-scrollbars", url], timeout_s)
    assert taken.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    return Page(dumped.stdout, console, shot)

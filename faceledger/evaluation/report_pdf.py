"""The audit's HTML report printed as PDF by headless Chromium, for a reader to attach.

The page is self-contained (inline SVG, no scripts, no fetches), so the browser prints exactly what
a reader sees; it runs with networking off and a throwaway profile, and never leaves a file behind
but the PDF.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from faceledger.errors import ToolMissingError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a browser that reads one local file and talks to no one.
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--no-pdf-header-footer", "--print-to-pdf-no-header")


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise ToolMissingError("printing a report as PDF needs headless Chromium, and none is on PATH: install it "
                           "(Debian/Ubuntu: `apt-get install chromium`; Fedora: `dnf install chromium`; macOS: "
                           "`brew install --cask chromium`) or open the HTML report in a browser and print it")


def html_to_pdf(page: str, pdf: Path, *, timeout: float = 180.0) -> Path:
    """Print the HTML text ``page`` to ``pdf`` (A4 by Chromium's default, backgrounds kept)."""
    browser = find_browser()
    pdf = Path(pdf).resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faceledger-pdf-") as tmp:
        source = Path(tmp) / "report.html"
        source.write_text(page)
        run = subprocess.run([browser, *HEADLESS, f"--user-data-dir={Path(tmp) / 'profile'}",
                              f"--print-to-pdf={pdf}", source.as_uri()], capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        raise ToolMissingError(f"{browser} could not print the report (exit {run.returncode}): "
                               f"{run.stderr.strip()[-500:]}")
    return pdf

"""scripts/screenshots.py: the per-post email and the digest in headless Chromium at 600 and 375 px."""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")


def _script():
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(not os.environ.get("CI") and (not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None),
                    reason="needs Debian's chromium at /usr/bin/chromium and playwright (apt-get install chromium)")
def test_screenshots_at_both_widths(tmp_path):
    written = _script().shoot(_script().render_demo(), tmp_path)
    assert sorted(p.name for p in written) == ["digest-375.png", "digest-600.png", "post-375.png", "post-600.png"]
    for path in written:
        width, height = _png_size(path)
        assert width == int(path.stem.rsplit("-", 1)[1]) and height > 1200  # the whole email, footer included


def test_placeholders_name_what_the_image_shows():
    svg = _script().placeholder("https://harborwellness.example/a.jpg", 'Tea & "calm"')
    assert svg.startswith("<svg") and "Tea &amp; &quot;calm&quot;" in svg

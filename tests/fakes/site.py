"""Fake blog site: serves images for thumbnail tests (no auth).

``/images/hero.png`` (a small PNG), ``/images/huge.png`` (1.5 MB), ``/images/page.html``
(not an image) and ``/images/moved.png`` (a 302 to ``fake.redirect_to``); ``fake.add(path,
bytes, content_type, status=200)`` adds more.
"""

from __future__ import annotations

import base64

from .server import FakeAPI, Reply, Request, reply, route

# A 1x1 transparent PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


class SiteFake(FakeAPI):
    name = "site"

    def reset_state(self) -> None:
        self.files: dict[str, tuple[bytes, str, int]] = {
            "/images/hero.png": (PNG, "image/png", 200),
            "/images/huge.png": (PNG + b"\0" * 1_500_000, "image/png", 200),
            "/images/page.html": (b"<html><body>not an image</body></html>", "text/html", 200),
        }
        self.redirect_to = "http://127.0.0.2:9/elsewhere.png"

    def add(self, path: str, data: bytes, content_type: str, status: int = 200) -> None:
        with self.lock:
            self.files[path] = (data, content_type, status)

    @route("GET", r"/images/moved\.png", auth=False)
    def moved(self, req: Request) -> Reply:
        return reply(302, None, Location=self.redirect_to)

    @route("GET", r"/.+", auth=False)
    def file(self, req: Request) -> Reply:
        found = self.files.get(req.path)
        if found is None:
            return reply(404, "not found")
        data, ctype, status = found
        return Reply(status, data, {"Content-Type": ctype})

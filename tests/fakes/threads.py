"""Fake Threads API (graph.threads.net): containers, their status, publishing, permalinks.

``POST /v1.0/{user}/threads`` creates a container; ``GET /v1.0/{id}?fields=status`` answers
IN_PROGRESS for ``fake.in_progress_polls`` reads, then ``fake.container_outcome`` (FINISHED,
ERROR or EXPIRED; "IN_PROGRESS" keeps it there forever); ``POST /v1.0/{user}/threads_publish
?creation_id=`` publishes it once (a second publish is refused); ``GET /v1.0/{user}/threads`` lists
the published posts newest first (``since`` in epoch seconds). Graph error shape and codes.

Documented rules it enforces (no machine-readable schema exists for the Threads API):
- ``text`` at most 500 characters, "Emojis are counted as the number of UTF-8 bytes"
  (developers.facebook.com/docs/threads/posts, and /reference/publishing);
- ``media_type`` TEXT, IMAGE, VIDEO or CAROUSEL; TEXT needs ``text`` (docs/threads/posts);
- IMAGE needs ``image_url``, a public http(s) URL Meta fetches itself: the fake fetches it too
  when the container is made, and a container whose image is not a JPEG or PNG of at most 8 MB
  ends ERROR (docs/threads/overview, "Image specifications"); ``alt_text`` at most 1,000
  characters (docs/threads/reference/publishing);
- ``link_attachment`` only on TEXT posts, an http(s) URL (docs/threads/posts, "Links");
- a container is published once; a second ``threads_publish`` of it is refused (error 24,
  subcode 4279021), and a container not published within 24 hours is EXPIRED
  (docs/threads/troubleshooting).
"""

from __future__ import annotations

import time
from typing import Any

import regex

from .facebook import GraphFake
from .server import Reply, Request, reply, route


def threads_count(text: str) -> int:
    """Meta's count: a grapheme is one character, an emoji its UTF-8 bytes (docs/threads/posts)."""
    return sum(len(g.encode()) if regex.search(r"\p{Extended_Pictographic}|\p{Regional_Indicator}", g) else 1
               for g in regex.findall(r"\X", text))


class ThreadsFake(GraphFake):
    name = "threads"
    TOKEN = "threads-fake-token"
    token_env = "SYN_FAKE_THREADS_TOKEN"
    USER_ID = "17841400000000001"
    USERNAME = "harborwellness"

    def reset_state(self) -> None:
        super().reset_state()
        self.containers: dict[str, dict[str, Any]] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.in_progress_polls = 1
        self.container_outcome = "FINISHED"
        self.error_message = "Media processing failed"

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "token_env": self.token_env, "poll_interval": 0.05, "publish_wait": 2}

    def _user_ok(self, user: str) -> bool:
        return user in ("me", self.USER_ID)

    @route("POST", r"/(?P<version>v\d+\.\d+)/(?P<user>[^/]+)/threads")
    def create_container(self, req: Request, version: str, user: str) -> Reply:
        if not self._user_ok(user):
            return self.error(400, "Invalid user id", 100)
        params = req.params()
        media_type = params.get("media_type")
        if media_type not in ("TEXT", "IMAGE"):
            return self.error(400, "Param media_type must be one of {TEXT, IMAGE, VIDEO, CAROUSEL}", 100)
        text = params.get("text") or ""
        if (media_type == "TEXT" and not text) or threads_count(text) > 500:
            return self.error(400, "Param text must be 1 to 500 characters", 100)
        link = params.get("link_attachment")
        if link is not None and (media_type != "TEXT" or not regex.match(r"https?://\S+$", link)):
            return self.error(400, "Param link_attachment must be a valid URL on a TEXT post", 100)
        image_error = None
        if media_type == "IMAGE":
            image_url = params.get("image_url") or ""
            if not regex.match(r"https?://\S+$", image_url):
                return self.error(400, "Param image_url must be a valid URL", 100)
            if len(params.get("alt_text") or "") > 1000:
                return self.error(400, "Param alt_text must be at most 1000 characters", 100)
            image_error = self._fetch_image(image_url)
        with self.lock:
            cid = str(18000000000000000 + self.next_id())
            self.containers[cid] = {"params": params, "polls": 0, "published": None, "image_error": image_error}
        return reply(200, {"id": cid})

    @route("POST", r"/(?P<version>v\d+\.\d+)/(?P<user>[^/]+)/threads_publish")
    def publish(self, req: Request, version: str, user: str) -> Reply:
        cid = req.params().get("creation_id")
        with self.lock:
            container = self.containers.get(cid or "")
            if container is None:
                return self.error(400, "The media container was not found", 24, 4279009)
            if container["published"]:
                return self.error(400, "The media container has already been published", 24, 4279021)
            if self._status(container, peek=True) != "FINISHED":
                return self.error(400, "The media is not ready for publishing, please wait for a moment", 9007,
                                  2207027)
            media_id = str(17900000000000000 + self.next_id())
            container["published"] = media_id
            self.posts[media_id] = {"container": cid, "created": time.time(), **container["params"]}
        return reply(200, {"id": media_id})

    @staticmethod
    def _fetch_image(url: str) -> str | None:
        """What Meta's fetch of URL would complain about, or None for a usable image."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a local test server
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
                data = resp.read(8 * 1024 * 1024 + 1)
        except (urllib.error.URLError, OSError) as exc:
            return f"Media download has failed. ({type(exc).__name__})"
        if ctype not in ("image/jpeg", "image/png") or len(data) > 8 * 1024 * 1024:
            return "The image format is not supported or the file is too large."
        return None

    def _status(self, container: dict[str, Any], peek: bool = False) -> str:
        if container["published"]:
            return "PUBLISHED"
        if container.get("image_error"):
            return "ERROR"
        if container["polls"] < self.in_progress_polls:
            if not peek:
                container["polls"] += 1
            return "IN_PROGRESS"
        return self.container_outcome

    @route("GET", r"/(?P<version>v\d+\.\d+)/(?P<user>[^/]+)/threads")
    def list_threads(self, req: Request, version: str, user: str) -> Reply:
        if not self._user_ok(user):
            return self.error(400, "Invalid user id", 100)
        since = float(req.query.get("since") or 0)
        with self.lock:
            posts = sorted(self.posts.items(), key=lambda item: item[1]["created"], reverse=True)
        data = [{"id": mid, "text": p.get("text"), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000",
                                                                           time.gmtime(p["created"])),
                 "permalink": f"https://www.threads.net/@{self.USERNAME}/post/C{mid[-8:]}"}
                for mid, p in posts if p["created"] >= since]
        return reply(200, {"data": data[: int(req.query.get("limit") or 25)], "paging": {}})

    @route("GET", r"/(?P<version>v\d+\.\d+)/(?P<node>[^/]+)")
    def node(self, req: Request, version: str, node: str) -> Reply:
        with self.lock:
            if self._user_ok(node):
                return reply(200, {"id": self.USER_ID, "username": self.USERNAME})
            if node in self.containers:
                status = self._status(self.containers[node])
                body = {"id": node, "status": status}
                if status == "ERROR":
                    body["error_message"] = self.containers[node].get("image_error") or self.error_message
                return reply(200, body)
            if node in self.posts:
                return reply(200, {"id": node,
                                   "permalink": f"https://www.threads.net/@{self.USERNAME}/post/C{node[-8:]}"})
        return self.error(400, f"Unsupported get request. Object with ID '{node}' does not exist", 100, 33,
                          type_="THApiException")

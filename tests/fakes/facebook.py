"""Fake Facebook Graph API (Pages): POST /{version}/{page_id}/feed, GET /{version}/{page_id}/posts,
GET /{version}/{page_id}.

Errors use the Graph shape ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``: a bad or expired token is code 190 (HTTP 400), a repeated message code 506,
a rate limit code 32 with an ``X-Business-Use-Case-Usage`` header giving
``estimated_time_to_regain_access`` in minutes (the Graph API does not answer 429).

Documented rules it enforces (no machine-readable schema exists for the Graph API):
- the version in the path is kept with each post (``fake.posts[id]["version"]``): Meta answers an
  expired one with the oldest version still served rather than an error
  (developers.facebook.com/docs/graph-api/changelog/versions), so tests assert what was asked for;
- ``POST /feed`` takes ``message`` and/or ``link`` as form fields (docs/graph-api/reference/page/feed,
  "Publishing"); anything else is (#100) Invalid parameter;
- ``POST /photos`` takes the image as multipart ``source`` (or ``url``), ``published``, ``caption``/
  ``message`` and ``alt_text_custom`` (docs/graph-api/reference/page/photos): an image of at most
  4 MB, else (#324) "Requires upload file"; ``published=false`` keeps it unpublished, to attach;
- ``POST /feed`` with ``attached_media[N]={"media_fbid": id}`` attaches unpublished photos of this
  page, each once (docs/pages-api/posts, "Publish a post with photos"); not with ``link``;
- the same message twice is (#506) "Duplicate status message";
- ``GET /posts`` lists the page's posts newest first, ``since`` (epoch seconds) bounding them
  (docs/graph-api/reference/page/feed, "Reading"; ``/posts`` is the page's own posts).
A 5xx fault carries Graph's code 2 "An unexpected error has occurred" body (arsduo/koala#699);
``fake.graph_faults(code=1, transient=True)`` makes status faults answer code 1 "An unknown error
occurred" (facebookarchive/php-graph-sdk#1141) and/or ``is_transient: true``, on any status.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route


class GraphFake(FakeAPI):
    """What the Facebook and Threads fakes share: Bearer token check and the Graph error shape."""

    TOKEN = "graph-fake-token"
    token_env = "SYN_FAKE_GRAPH_TOKEN"

    FAULT_MESSAGES = {1: "An unknown error occurred", 2: "An unexpected error has occurred. Please retry your "
                                                       "request later."}

    def reset_state(self) -> None:
        self.tokens = {self.TOKEN}
        self.fault_code, self.fault_transient = 2, False
        self.bearer_accepted = True  # False: only the access_token parameter counts (as Meta documents)

    def graph_faults(self, code: int = 2, transient: bool = False) -> None:
        """Injected status faults answer Graph CODE (1 or 2), with ``is_transient`` if TRANSIENT
        (then on any status, 400 included: Graph flags passing errors on 4xx answers too)."""
        with self.lock:
            self.fault_code, self.fault_transient = code, transient

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def env(self) -> dict[str, str]:
        return {self.token_env: self.TOKEN}

    def error(self, status: int, message: str, code: Any = None, subcode: Any = None,
              type_: str = "OAuthException", transient: bool = False) -> Reply:
        body: dict[str, Any] = {"message": message, "type": type_, "code": code if code is not None else 1,
                                "fbtrace_id": "AbCdEfGhIjK"}
        if subcode is not None:
            body["error_subcode"] = subcode
        if transient:
            body["is_transient"] = True
        return reply(status, {"error": body})

    def authorize(self, req: Request) -> Reply | None:
        bearer = req.bearer() if self.bearer_accepted else None
        token = req.params().get("access_token") or bearer
        if token is None:  # what Graph answers a call that carries no token it reads
            return self.error(400, "An access token is required to request this resource.", 104)
        if token in self.tokens:
            return None
        return self.error(400, "Error validating access token: Session has expired.", 190, 463)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(400, "(#32) Page request limit reached", 32)
        usage = {"104000000000001": [{"type": "pages", "call_count": 100, "total_cputime": 12, "total_time": 14,
                                      "estimated_time_to_regain_access": max(1, math.ceil(retry_after / 60))}]}
        answer.headers["X-Business-Use-Case-Usage"] = json.dumps(usage)
        return answer

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(400, "Error validating access token: The session has been invalidated.", 190, 460)
        if status >= 500 or self.fault_transient:
            return self.error(status, self.FAULT_MESSAGES[self.fault_code], self.fault_code,
                              transient=self.fault_transient)
        if status == 400:
            return self.error(400, "(#100) Invalid parameter", 100, type_="OAuthException")
        return super().fault_reply(status, fault)


class FacebookFake(GraphFake):
    name = "facebook"
    TOKEN = "fb-fake-page-token"
    token_env = "SYN_FAKE_FB_PAGE_TOKEN"
    PAGE_ID = "104000000000001"
    PAGE_NAME = "Harbor Wellness Counseling"

    def reset_state(self) -> None:
        super().reset_state()
        self.posts: dict[str, dict[str, Any]] = {}
        self.photos: dict[str, dict[str, Any]] = {}  # id -> {"bytes", "published", "alt_text", "attached"}
        self.refusals: list[tuple[int, str, int, int | None]] = []  # (status, message, code, subcode)

    def refuse_next(self, message: str, code: int, subcode: int | None = None, status: int = 400) -> None:
        """The next POST /feed answers this Graph error (e.g. 368 "already posted", koala#422)."""
        with self.lock:
            self.refusals.append((status, message, code, subcode))

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "page_id": self.PAGE_ID, "page_token_env": self.token_env}

    @route("POST", r"/(?P<version>v\d+\.\d+)/(?P<page>[^/]+)/feed")
    def feed(self, req: Request, version: str, page: str) -> Reply:
        if page != self.PAGE_ID:
            return self.error(400, "(#100) Unsupported post request. Object with ID does not exist.", 100, 33,
                              type_="GraphMethodException")
        with self.lock:
            refusal = self.refusals.pop(0) if self.refusals else None
        if refusal is not None:
            status, message, code, subcode = refusal
            return self.error(status, message, code, subcode)
        if req.json is not None:
            return self.error(400, "(#100) The parameters must be form-encoded", 100)
        params = req.form or {}
        attached = {k: v for k, v in params.items() if re.fullmatch(r"attached_media\[\d+\]", k)}
        unknown = set(params) - {"message", "link", "published", "scheduled_publish_time"} - set(attached)
        if unknown:
            return self.error(400, f"(#100) Invalid parameter: {', '.join(sorted(unknown))}", 100)
        message, link = params.get("message"), params.get("link")
        if not message and not link and not attached:
            return self.error(400, "(#100) Missing message or attachment", 100)
        if attached and link:
            return self.error(400, "(#100) Cannot specify both link and attached_media", 100)
        photo_ids = []
        for value in attached.values():
            try:
                photo_ids.append(str(json.loads(value)["media_fbid"]))
            except (ValueError, KeyError, TypeError):
                return self.error(400, "(#100) attached_media must be {\"media_fbid\": <photo id>}", 100)
        with self.lock:
            for photo_id in photo_ids:
                photo = self.photos.get(photo_id)
                if photo is None or photo["published"] or photo["attached"]:
                    return self.error(400, f"(#100) Invalid media_fbid: {photo_id}", 100)
            if message and any(p.get("message") == message for p in self.posts.values()):
                return self.error(400, "(#506) Duplicate status message", 506)
            post_id = f"{page}_{900000000000 + self.next_id()}"
            for photo_id in photo_ids:
                self.photos[photo_id]["attached"] = post_id
            self.posts[post_id] = {"message": message, "link": link, "version": version, "created": time.time(),
                                   "photos": photo_ids}
        return reply(200, {"id": post_id})

    PHOTO_MAX = 4 * 1024 * 1024

    @route("POST", r"/(?P<version>v\d+\.\d+)/(?P<page>[^/]+)/photos")
    def photos_upload(self, req: Request, version: str, page: str) -> Reply:
        if page != self.PAGE_ID:
            return self.error(400, "(#100) Unsupported post request. Object with ID does not exist.", 100, 33,
                              type_="GraphMethodException")
        params = req.form or {}
        unknown = set(params) - {"published", "caption", "message", "alt_text_custom", "url", "temporary"}
        if unknown:
            return self.error(400, f"(#100) Invalid parameter: {', '.join(sorted(unknown))}", 100)
        source = (req.files or {}).get("source")
        if source is None or not source[2] or len(source[2]) > self.PHOTO_MAX:
            return self.error(400, "(#324) Requires upload file", 324)
        if not source[1].startswith("image/"):
            return self.error(400, "(#324) Missing or invalid image file", 324)
        with self.lock:
            photo_id = str(950000000000 + self.next_id())
            self.photos[photo_id] = {"bytes": source[2], "published": params.get("published", "true") != "false",
                                     "alt_text": params.get("alt_text_custom"), "attached": None}
        return reply(200, {"id": photo_id})

    @route("GET", r"/(?P<version>v\d+\.\d+)/(?P<page>[^/]+)/posts")
    def page_posts(self, req: Request, version: str, page: str) -> Reply:
        if page != self.PAGE_ID:
            return self.error(400, "(#100) Object with ID does not exist.", 100, 33, type_="GraphMethodException")
        since = float(req.query.get("since") or 0)
        limit = int(req.query.get("limit") or 25)
        with self.lock:
            posts = sorted(self.posts.items(), key=lambda item: item[1]["created"], reverse=True)
        data = [{"id": pid, "message": p["message"],
                 "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(p["created"]))}
                for pid, p in posts if p["created"] >= since][:limit]
        return reply(200, {"data": data, "paging": {}})

    @route("GET", r"/(?P<version>v\d+\.\d+)/(?P<page>[^/]+)")
    def page(self, req: Request, version: str, page: str) -> Reply:
        if page != self.PAGE_ID:
            return self.error(400, "(#803) Some of the aliases you requested do not exist", 803)
        return reply(200, {"name": self.PAGE_NAME, "id": self.PAGE_ID})

r"""Fake LinkedIn REST API: POST /rest/posts, image upload, GET /v2/userinfo and /rest/me.

Every /rest call must carry ``LinkedIn-Version: YYYYMM`` (else 400). Like LinkedIn, only the
last twelve monthly versions are active (older or future ones, and any listed in
``fake.retired_versions``, answer 426 NONEXISTENT_VERSION) and ``X-Restli-Protocol-Version: 2.0.0``. A created
post answers 201 with an empty body and its URN in ``x-restli-id``. Images: ``POST
/rest/images?action=initializeUpload`` answers an ``uploadUrl`` on this fake and an image URN;
``PUT`` the bytes there. Errors: ``{"status", "serviceErrorCode", "code", "message"}``; the same
commentary twice answers 422 "Content is a duplicate of urn:li:share:...".

Documented rules it enforces (LinkedIn publishes no machine-readable schema; sources are
learn.microsoft.com/linkedin/marketing/community-management/shares/posts-api and
…/shares/little-text-format):
- required ``author`` (a person or organization URN), ``commentary``, ``visibility`` (PUBLIC,
  CONNECTIONS, LOGGED_IN, CONTAINER), ``distribution.feedDistribution`` (MAIN_FEED, NONE),
  ``lifecycleState`` (PUBLISHED, DRAFT);
- ``commentary`` is little text of at most 3000 characters, whose reserved characters
  ``| { } @ [ ] ( ) < > # * _ ~ \`` must be escaped unless they form a template
  (``{hashtag|\#|Tag}``, ``@[Name](urn:li:…)``): LinkedIn cuts the text at an unescaped one,
  so this fake refuses it (422) to make the loss visible;
- ``content.article`` needs ``source`` and ``title``; its ``thumbnail`` an uploaded image URN;
- ``GET /rest/images/{urn}`` answers the image's ``status`` (WAITING_UPLOAD until the PUT,
  then PROCESSING for ``fake.processing_polls`` reads, then AVAILABLE, or PROCESSING_FAILED when
  ``fake.processing_fails``) as the Images API documents (…/community-management/shares/images-api).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import unquote

from .server import FakeAPI, Fault, Reply, Request, reply, route

# Templates little text allows: hashtags and mentions; everything else reserved must be escaped.
_LITTLE_TEMPLATES = re.compile(r"\{hashtag\|\\#\|[^{}|]+\}|@\[[^\]]*\]\(urn:li:[a-z]+:[^)]+\)")
_RESERVED = set("|{}@[]()<>#*_~")


def _bare_reserved(text: str) -> str | None:
    """The first reserved character not escaped with a backslash nor part of a template."""
    text = _LITTLE_TEMPLATES.sub("", text)
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in _RESERVED:
            return text[i]
        i += 1
    return None


def version_active(version: str, today: date) -> bool:
    """LinkedIn's rule: monthly versions are "supported and stable for a minimum of one year before
    sunset" (learn.microsoft.com/linkedin/marketing/versioning); a retired one answers
    ``{"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version … is not active"}``
    (ComposioHQ/composio#3113). Here: active from its month for twelve months, not longer."""
    year, month = int(version[:4]), int(version[4:6])
    age = (today.year * 12 + today.month) - (year * 12 + month)
    return 0 <= age <= 12


class LinkedInFake(FakeAPI):
    name = "linkedin"
    TOKEN = "li-fake-token"
    AUTHOR = "urn:li:organization:5515715"

    def reset_state(self) -> None:
        self.tokens = {self.TOKEN}
        self.posts: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}  # urn -> {"upload": id, "bytes": b"" | None}
        self.retired_versions: set[str] = set()
        self.processing_polls = 1
        self.processing_fails = False

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "token_env": "SYN_FAKE_LI_TOKEN", "author_urn": self.AUTHOR}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_LI_TOKEN": self.TOKEN}

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        body: dict[str, Any] = {"status": status, "message": message}
        if isinstance(code, int):
            body["serviceErrorCode"] = code
        elif code:
            body["code"] = code
        return reply(status, body)

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return reply(401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN",
                               "message": "The token used in the request has been revoked by the user"})
        if status == 400:
            return self.error(400, "/commentary :: field is required but not found and has no default value", 100)
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.")
        answer.headers["Retry-After"] = str(retry_after)
        return answer

    def authorize(self, req: Request) -> Reply | None:
        if req.bearer() not in self.tokens:
            return reply(401, {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                               "message": "Invalid access token"})
        if req.path.startswith("/rest/"):
            version = req.header("linkedin-version") or ""
            if not re.fullmatch(r"20\d{4}(\.\d{2})?", version):
                return self.error(400, "A version must be present. Please specify a version by adding the "
                                       "LinkedIn-Version header.", "VERSION_MISSING")
            if version in self.retired_versions or not version_active(version, date.today()):
                return self.error(426, f"Requested version {version} is not active", "NONEXISTENT_VERSION")
            if req.header("x-restli-protocol-version") != "2.0.0":
                return self.error(400, "X-Restli-Protocol-Version 2.0.0 is required", "INVALID_PROTOCOL")
        return None

    @route("POST", r"/rest/posts")
    def create_post(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "Request body must be a JSON object", 100)
        for key in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if key not in body:
                return self.error(422, f"/{key} :: field is required but not found and has no default value", 100)
        if body["visibility"] not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN", "CONTAINER"):
            return self.error(422, f"/visibility :: {body['visibility']!r} is not a valid value", 100)
        if (body["distribution"] or {}).get("feedDistribution") not in ("MAIN_FEED", "NONE"):
            return self.error(422, "/distribution/feedDistribution :: must be MAIN_FEED or NONE", 100)
        if body["lifecycleState"] not in ("PUBLISHED", "DRAFT"):
            return self.error(422, f"/lifecycleState :: {body['lifecycleState']!r} is not a valid value", 100)
        commentary = str(body["commentary"])
        if len(commentary) > 3000:
            return self.error(422, "/commentary :: length must be at most 3000 characters", 100)
        bare = _bare_reserved(commentary)
        if bare is not None:
            return self.error(422, f"/commentary :: unescaped reserved character {bare!r} (little text format)", 100)
        if not re.fullmatch(r"urn:li:(person|organization):[A-Za-z0-9_-]+", str(body["author"])):
            return self.error(422, f"/author :: {body['author']!r} is not a valid person or organization URN", 100)
        article = (body.get("content") or {}).get("article")
        if article is not None:
            if not article.get("source") or not article.get("title"):
                return self.error(422, "/content/article/source and title are required", 100)
            thumb = article.get("thumbnail")
            if thumb is not None and (thumb not in self.images or self.images[thumb]["bytes"] is None):
                return self.error(422, f"/content/article/thumbnail :: {thumb} is not an uploaded image", 100)
        with self.lock:
            for urn, post in self.posts.items():
                if post["commentary"] == body["commentary"]:
                    return self.error(422, f"Content is a duplicate of {urn}", "DUPLICATE_POST")
            urn = f"urn:li:share:{7200000000000000000 + self.next_id()}"
            self.posts[urn] = body
        return reply(201, None, **{"x-restli-id": urn, "x-linkedin-id": urn})

    @route("POST", r"/rest/images")
    def initialize_upload(self, req: Request) -> Reply:
        if req.query.get("action") != "initializeUpload":
            return self.error(400, "action=initializeUpload is required", 100)
        owner = ((req.json or {}).get("initializeUploadRequest") or {}).get("owner")
        if not owner:
            return self.error(422, "/initializeUploadRequest/owner :: field is required", 100)
        with self.lock:
            n = self.next_id()
            urn = f"urn:li:image:C4E10AQF{n:08d}"
            self.images[urn] = {"upload": str(n), "bytes": None, "owner": owner}
        return reply(200, {"value": {"uploadUrlExpiresAt": 1900000000000,
                                     "uploadUrl": f"{self.base_url}/dms-uploads/{n}/uploaded-image/0",
                                     "image": urn}})

    @route("GET", r"/rest/images/(?P<urn>[^/]+)")
    def image_status(self, req: Request, urn: str) -> Reply:
        urn = unquote(urn)
        with self.lock:
            image = self.images.get(urn)
            if image is None:
                return self.error(404, f"Image {urn} not found", 404)
            if image["bytes"] is None:
                status = "WAITING_UPLOAD"
            elif self.processing_fails:
                status = "PROCESSING_FAILED"
            elif image.setdefault("polls", 0) < self.processing_polls:
                image["polls"] += 1
                status = "PROCESSING"
            else:
                status = "AVAILABLE"
        return reply(200, {"id": urn, "status": status, "owner": image["owner"]})

    @route("PUT", r"/dms-uploads/(?P<upload>\d+)/uploaded-image/0")
    def upload(self, req: Request, upload: str) -> Reply:
        with self.lock:
            for image in self.images.values():
                if image["upload"] == upload:
                    image["bytes"] = req.body
                    image["content_type"] = req.header("content-type")
                    return reply(201, None)
        return self.error(404, "upload not found", 404)

    @route("GET", r"/v2/userinfo")
    def userinfo(self, req: Request) -> Reply:
        return reply(200, {"sub": "782bbtaQ", "name": "Dana Harbor", "given_name": "Dana", "family_name": "Harbor",
                           "locale": {"country": "US", "language": "en"}, "email_verified": True})

    @route("GET", r"/rest/me")
    def me(self, req: Request) -> Reply:
        return reply(200, {"id": "782bbtaQ", "localizedFirstName": "Dana", "localizedLastName": "Harbor"})

"""Fake X API v2: POST /2/tweets, GET /2/users/me, POST /2/oauth2/token.

Auth: an OAuth 2.0 user Bearer token (issued ones, rotated by the refresh endpoint) or an
OAuth 1.0a header whose HMAC-SHA1 signature is verified with oauthlib against the consumer and
token secrets. Errors are RFC 7807 problems like X's; identical text twice answers 403
"duplicate content"; a 429 carries x-rate-limit-limit/-remaining/-reset (epoch seconds).

Strict: every ``POST /2/tweets`` body is validated against ``CreatePostsRequest`` of the official
X v2 OpenAPI (``../shared/specs/x-v2-openapi.json``, ``additionalProperties: false``), and the text
against X's weighted 280 (docs.x.com counting-characters: URLs 23, emoji and CJK 2); a violation
answers X's 400 ``invalid-request`` problem. ``fake.usage_capped`` answers the monthly product cap
as X does: 429 ``UsageCapExceeded`` with ``x-rate-limit-remaining`` far from 0 (xdevplatform/xdk#25).

Media: ``POST /2/media/upload`` (``MediaUploadRequest`` of the spec: base64 ``media`` in a JSON
body, ``media_category``; the bytes must be an image of at most 5 MB, docs.x.com media best
practices) answers ``MediaUploadResponse``; ``POST /2/media/metadata``
(``CreateMediaMetadataRequest``) sets ``alt_text`` on a known media id; a post's
``media.media_ids`` must name uploaded media (X answers 400 otherwise).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import unicodedata
from typing import Any
from urllib.parse import urlencode

import regex
from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import signature, utils

from .server import FakeAPI, Fault, Reply, Request, reply, route
from .specs import openapi_problems, openapi_validator

SPEC = "x-v2-openapi.json"


_URL = re.compile(r"https?://\S+")


def x_weight(text: str) -> int:
    """X's documented count (docs.x.com/fundamentals/counting-characters): a URL is 23, code
    points in the Latin-1 and general-punctuation ranges weigh 1, everything else (emoji, CJK) 2."""
    text = unicodedata.normalize("NFC", text)
    weight = 23 * len(_URL.findall(text))
    text = _URL.sub("", text)
    light = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
    for g in regex.findall(r"\X", text):
        if regex.search(r"\p{Extended_Pictographic}", g):
            weight += 2  # an emoji sequence counts 2 however many code points it has
        else:
            weight += sum(1 if any(lo <= ord(c) <= hi for lo, hi in light) else 2 for c in g)
    return weight


class XFake(FakeAPI):
    name = "x"
    ACCESS_TOKEN = "x-fake-access-token-1"
    REFRESH_TOKEN = "x-fake-refresh-token-1"
    CLIENT_ID = "x-fake-client-id"
    CONSUMER_KEY = "x-fake-consumer-key"
    CONSUMER_SECRET = "x-fake-consumer-secret"
    OAUTH1_TOKEN = "1500000000000000000-x-fake-token"
    OAUTH1_TOKEN_SECRET = "x-fake-token-secret"
    USER = {"id": "1500000000000000000", "name": "Harbor Wellness", "username": "harborwellness"}

    def reset_state(self) -> None:
        self.access_tokens = {self.ACCESS_TOKEN}
        self.refresh_token = self.REFRESH_TOKEN
        self.posts: dict[str, dict[str, Any]] = {}
        self.refreshes = 0
        self.daily_cap_reset: int | None = None  # seconds: 429s say the 24-hour user cap is spent
        self.usage_capped = False  # the app's monthly post cap is spent
        self.media: dict[str, dict[str, Any]] = {}  # media id -> {"bytes", "category", "alt_text"}
        openapi_validator(SPEC, "CreatePostsRequest")  # strict from the start: fails without the spec
        openapi_validator(SPEC, "MediaUploadRequest")

    # -- test controls ------------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now answers 401 (a refresh gets a new one)."""
        with self.lock:
            self.access_tokens.clear()

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "token_env": "SYN_FAKE_X_TOKEN"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_X_TOKEN": self.ACCESS_TOKEN, "SYN_FAKE_X_REFRESH": self.REFRESH_TOKEN,
                "SYN_FAKE_X_CLIENT_ID": self.CLIENT_ID, "SYN_FAKE_X_CK": self.CONSUMER_KEY,
                "SYN_FAKE_X_CS": self.CONSUMER_SECRET, "SYN_FAKE_X_AT": self.OAUTH1_TOKEN,
                "SYN_FAKE_X_ATS": self.OAUTH1_TOKEN_SECRET}

    def oauth1_options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "consumer_key_env": "SYN_FAKE_X_CK", "consumer_secret_env": "SYN_FAKE_X_CS",
                "access_token_env": "SYN_FAKE_X_AT", "access_token_secret_env": "SYN_FAKE_X_ATS"}

    def refresh_options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "token_env": "SYN_FAKE_X_TOKEN", "refresh_token_env": "SYN_FAKE_X_REFRESH",
                "client_id_env": "SYN_FAKE_X_CLIENT_ID"}

    # -- shapes -------------------------------------------------------------------------------

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        titles = {400: "Invalid Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        if status == 400:
            return reply(400, {"errors": [{"parameters": {}, "message": message}], "title": "Invalid Request",
                               "detail": "One or more parameters to your request was invalid.",
                               "type": "https://api.twitter.com/2/problems/invalid-request"})
        return reply(status, {"title": titles.get(status, "Error"), "detail": message, "type": "about:blank",
                              "status": status}, **{"Content-Type": "application/problem+json"})

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "Too Many Requests")
        answer.headers.update({"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                               "x-rate-limit-reset": str(int(time.time()) + retry_after)})
        if self.daily_cap_reset is not None:
            answer.headers.update({"x-user-limit-24hour-limit": "17", "x-user-limit-24hour-remaining": "0",
                                   "x-user-limit-24hour-reset": str(int(time.time()) + self.daily_cap_reset)})
        return answer

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "Unauthorized")
        return super().fault_reply(status, fault)

    # -- auth ---------------------------------------------------------------------------------

    def authorize(self, req: Request) -> Reply | None:
        token = req.bearer()
        if token is not None:
            return None if token in self.access_tokens else self.error(401, "Unauthorized")
        auth = req.header("authorization") or ""
        if auth.startswith("OAuth ") and self._oauth1_valid(req, auth):
            return None
        return self.error(401, "Unauthorized")

    def _oauth1_valid(self, req: Request, auth: str) -> bool:
        fields = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(auth)}
        if fields.get("oauth_consumer_key") != self.CONSUMER_KEY or fields.get("oauth_token") != self.OAUTH1_TOKEN:
            return False
        if fields.get("oauth_signature_method") != "HMAC-SHA1":
            return False
        ctype = (req.header("content-type") or "").split(";")[0].strip()
        body = req.body.decode() if ctype == "application/x-www-form-urlencoded" else None
        query = urlencode(req.query)
        params = signature.collect_parameters(uri_query=query, body=body, headers={"Authorization": auth},
                                              exclude_oauth_signature=True)
        base = signature.signature_base_string(
            req.method, signature.base_string_uri(f"http://{req.header('host')}{req.path}"),
            signature.normalize_parameters(params))
        secrets = Client(self.CONSUMER_KEY, client_secret=self.CONSUMER_SECRET,
                         resource_owner_secret=self.OAUTH1_TOKEN_SECRET)
        expected = signature.sign_hmac_sha1_with_client(base, secrets)
        return signature.safe_string_equals(expected, fields.get("oauth_signature", ""))

    # -- endpoints ----------------------------------------------------------------------------

    def usage_cap(self) -> Reply:
        answer = reply(429, {"account_id": 1500000000000000000, "product_name": "standard-basic",
                             "title": "UsageCapExceeded", "period": "Monthly", "scope": "Product",
                             "detail": "Usage cap exceeded: Monthly product cap",
                             "type": "https://api.twitter.com/2/problems/usage-capped"},
                       **{"Content-Type": "application/problem+json"})
        answer.headers.update({"x-rate-limit-limit": "40000", "x-rate-limit-remaining": "39999",
                               "x-rate-limit-reset": str(int(time.time()) + 900)})
        return answer

    @route("POST", r"/2/tweets")
    def create_post(self, req: Request) -> Reply:
        if self.usage_capped:
            return self.usage_cap()
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object")
        problems = openapi_problems(SPEC, "CreatePostsRequest", body)
        if problems:
            return self.error(400, problems[0])
        if isinstance(body.get("text"), str) and x_weight(body["text"]) > 280:
            return self.error(400, "Your Tweet text is too long.")
        text = body.get("text")
        if not isinstance(text, str) or not (text or body.get("media")):
            return self.error(400, "The `text` field is required")
        media_ids = (body.get("media") or {}).get("media_ids") or []
        with self.lock:
            unknown = [m for m in media_ids if m not in self.media]
        if unknown:
            return self.error(400, f"Your media IDs are invalid: {', '.join(unknown)}")
        with self.lock:
            if any(p["text"] == text for p in self.posts.values()):
                return self.error(403, "You are not allowed to create a Tweet with duplicate content.")
            post_id = str(1_800_000_000_000_000_000 + self.next_id())
            self.posts[post_id] = {"id": post_id, "text": text, "body": body}
        return reply(201, {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}})

    IMAGE_MAX = 5 * 1024 * 1024

    @route("POST", r"/2/media/upload")
    def media_upload(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object")
        problems = openapi_problems(SPEC, "MediaUploadRequest", body)
        if problems:
            return self.error(400, problems[0])
        try:
            data = base64.b64decode(body["media"], validate=True)
        except (binascii.Error, ValueError):
            return self.error(400, "media: not valid base64")
        if body["media_category"] == "tweet_image":
            if len(data) > self.IMAGE_MAX:
                return self.error(400, f"File size exceeds {self.IMAGE_MAX} bytes.")
            if not data.startswith((b"\x89PNG", b"\xff\xd8", b"GIF8", b"RIFF")):
                return self.error(400, "media type unrecognized.")
        with self.lock:
            media_id = str(1_900_000_000_000_000_000 + self.next_id())
            self.media[media_id] = {"bytes": data, "category": body["media_category"], "alt_text": None}
        return reply(200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(data),
                                    "expires_after_secs": 86400, "image": {"image_type": "image/png"}}})

    @route("POST", r"/2/media/metadata")
    def media_metadata(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object")
        problems = openapi_problems(SPEC, "CreateMediaMetadataRequest", body)
        if problems:
            return self.error(400, problems[0])
        with self.lock:
            media = self.media.get(body["id"])
            if media is None:
                return self.error(400, "The media ID is invalid")
            alt = ((body.get("metadata") or {}).get("alt_text") or {}).get("text")
            media["alt_text"] = alt
        return reply(200, {"data": {"id": body["id"], "associated_metadata": True}})

    @route("GET", r"/2/users/me")
    def users_me(self, req: Request) -> Reply:
        return reply(200, {"data": dict(self.USER)})

    @route("POST", r"/2/oauth2/token", auth=False)
    def token(self, req: Request) -> Reply:
        form = req.form or {}
        invalid = reply(400, {"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != self.CLIENT_ID:
            return invalid
        with self.lock:
            if form.get("refresh_token") != self.refresh_token:
                return invalid
            self.refreshes += 1
            access = f"x-fake-access-token-r{self.refreshes}"
            self.refresh_token = f"x-fake-refresh-token-r{self.refreshes}"  # rotated: the old one is spent
            self.access_tokens.add(access)
        return reply(200, {"token_type": "bearer", "expires_in": 7200, "access_token": access,
                           "scope": "tweet.write users.read tweet.read offline.access",
                           "refresh_token": self.refresh_token})

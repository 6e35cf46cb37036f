"""Facebook Pages via the Graph API: ``POST /{version}/{page_id}/feed`` with message + link.

Payload: ``{"message": ..., "link": ...}`` (Facebook builds the link card from the page's
Open Graph tags). Sent form-encoded, as the Graph API documents.

Options: ``page_id`` (required), ``page_token_env`` (the variable holding a long-lived *Page*
access token with ``pages_manage_posts`` and ``pages_read_engagement``), ``version`` (Graph API
version, default in ``versions.py`` with its sunset date; ``check()`` warns 60 days ahead), ``api_base`` (default https://graph.facebook.com), ``timeout``.

The Graph API error shape ``{"error": {"message", "type", "code", "error_subcode",
"is_transient"}}`` is classified here once, for Facebook and for Threads (which speaks it too):
code 190/102 (token expired or invalid), 104/2500 (no token read at all) and 10/200-299
(permission missing) -> AuthExpired;
4/17/32/613 and 80000-80014 (application, user, page and business-use-case limits) ->
RateLimited, reset from ``X-Business-Use-Case-Usage``' ``estimated_time_to_regain_access``
when given; 506 (duplicate status) -> Permanent "duplicate"; 368 "already posted" ->
Duplicate, 368 subcode 1390008 ("We limit how often you can post") -> RateLimited (an hour),
other 368 (blocked as abusive) -> Permanent; ``is_transient``, codes 1/2 and any 5xx -> Retryable
on reads, but **OutcomeUnknown on a create** (``POST /feed``, ``threads_publish``): Facebook has
created the post on exactly these answers (arsduo/koala#699: code 2 "An unexpected error has
occurred" on HTTP 500, seven identical posts; facebookarchive/php-graph-sdk#1141: code 1, "the
link gets posted"), and its duplicate refusal (506) did not fire then.

Images (option ``media = "image"``): the post's image is uploaded unpublished first (``POST
/{page_id}/photos``, multipart ``source``, ``published=false``, the alt text as
``alt_text_custom``; at most 4 MB, JPEG, PNG, GIF, BMP or TIFF, else re-encoded), then the page
post attaches it (``attached_media[0]={"media_fbid": <photo id>}``) with the link at the end of
the message, as Meta documents for a post with photos (Pages API, "Publish a post with photos").
The unpublished upload may be repeated by a retry; the page post is the one create, looked up
as below. A failed upload posts the card (``link``) instead.

Exactly once on Facebook: a Page post has no idempotency key, so an unknown outcome is settled by
``lookup``: ``GET /{page}/posts?since=<first attempt - 5 min>&fields=id,message,created_time``,
matched on our message. The engine asks it before any resend (``Provider.lookup``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from urllib.parse import quote

import requests

from syndicate.providers.base import Job, OutcomeUnknown, ProviderError, RateLimited, Retryable, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider, body_of, reset_from_headers
from syndicate.providers.versions import GRAPH_DEFAULT, graph_sunset, sunset_note

GRAPH_AUTH_CODES = frozenset({"190", "102", "10", *(str(c) for c in range(200, 300))})
GRAPH_RATE_CODES = frozenset({"4", "17", "32", "613", *(str(c) for c in range(80000, 80015))})
GRAPH_TRANSIENT_CODES = frozenset({"1", "2"})
# "An access token is required to request this resource" (104) and "An active access token must
# be used to query information about the current user" (2500): Graph found no token at all.
GRAPH_NO_TOKEN_CODES = frozenset({"104", "2500"})
NO_TOKEN_ADVICE = ("the API read no access token from the Authorization header (scheme Bearer); if the token "
                   "variable is set, this host does not take that header (review finding T3): report it")
GRAPH_BLOCKED_CODE = "368"
GRAPH_POSTING_TOO_FAST = "1390008"  # 368's subcode for "We limit how often you can post"
# Meta's error guide: 368 "Temporarily blocked ... Wait and retry"; how long is not said.
POSTING_TOO_FAST_WAIT = timedelta(hours=1)
# Page photos (developers.facebook.com/docs/graph-api/reference/page/photos): at most 4 MB.
IMAGE_MAX_BYTES = 4_000_000
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff")


class GraphApiProvider(HttpProvider):
    """What Facebook and Threads share: Bearer page/user token, Graph error codes."""

    auth_codes = GRAPH_AUTH_CODES | GRAPH_NO_TOKEN_CODES
    rate_limit_codes = GRAPH_RATE_CODES
    token_option: ClassVar[str] = "page_token_env"
    token_what: ClassVar[str] = "access token"

    def auth_headers(self) -> dict[str, str]:
        # The token goes in a header, never in the URL (URLs end up in logs and exception texts).
        return {"Authorization": f"Bearer {self.secret(self.token_option, self.token_what)}"}

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        info = super().parse_error(resp)
        if info.code in GRAPH_TRANSIENT_CODES:
            return ErrorInfo(info.message, info.code, info.subcode, transient=True)
        if info.code in GRAPH_NO_TOKEN_CODES:
            return ErrorInfo(f"{info.message} ({NO_TOKEN_ADVICE})", info.code, info.subcode)
        return info

    def is_duplicate(self, resp: requests.Response, info: ErrorInfo) -> bool:
        if info.code == GRAPH_BLOCKED_CODE and "already posted" in info.message.lower():
            return True  # 368 "You've already posted this" (arsduo/koala#422)
        return info.code == "506" or super().is_duplicate(resp, info)

    def error_for(self, resp: requests.Response, *, idempotent: bool = False, what: str = "") -> ProviderError:
        info = self.parse_error(resp)
        if info.code == GRAPH_BLOCKED_CODE and info.subcode == GRAPH_POSTING_TOO_FAST:
            return RateLimited(self._message(info.message, resp.status_code),
                               reset_at=datetime.now(UTC) + POSTING_TOO_FAST_WAIT, status=resp.status_code)
        error = super().error_for(resp, idempotent=idempotent, what=what)
        if (not idempotent and resp.status_code >= 500 and isinstance(error, Retryable)
                and not isinstance(error, RateLimited)):
            # Any 5xx on a create may come after the post was made (see the module doc).
            doing = f" ({what})" if what else ""
            return OutcomeUnknown(self._message(f"{info.message}{doing}; the post may have gone through",
                                                resp.status_code), status=resp.status_code)
        return error

    def rate_limit_reset(self, resp: requests.Response, info: ErrorInfo) -> datetime | None:
        minutes = []
        for header in ("X-Business-Use-Case-Usage", "X-Ad-Account-Usage"):
            try:
                usage = json.loads(resp.headers.get(header) or "{}")
            except ValueError:
                continue
            entries = [e for v in usage.values() for e in (v if isinstance(v, list) else [v])] \
                if isinstance(usage, dict) else []
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("estimated_time_to_regain_access"), int | float):
                    minutes.append(entry["estimated_time_to_regain_access"])
        if minutes and max(minutes) > 0:
            return datetime.now(UTC) + timedelta(minutes=max(minutes))
        return reset_from_headers(resp.headers)


class FacebookProvider(GraphApiProvider):
    name = "facebook"
    service = "Facebook"
    default_api_base = "https://graph.facebook.com"
    deduplicates = False
    # Facebook refuses an identical message (506), but not reliably on a retry after a lost
    # answer (see the module doc): an unknown outcome is looked up instead.
    rejects_duplicates = False
    looks_up = True
    dedup_window = timedelta(days=2)  # the lookup reads posts made since the first attempt
    token_option = "page_token_env"
    token_what = "Page access token"

    @property
    def version(self) -> str:
        return str(self.options.get("version") or GRAPH_DEFAULT)

    @property
    def page_id(self) -> str:
        return str(self.option("page_id"))

    def send(self, job: Job) -> SendResult:
        body = {k: v for k, v in body_of(job.payload).items() if v is not None}
        if self.options.get("media") == "image" and self.has_image(job) and (photo := self._upload_photo(job)):
            body = {"message": photo_message(body), "attached_media[0]": json.dumps({"media_fbid": photo})}
        resp = self.request("POST", f"/{self.version}/{quote(self.page_id, safe='')}/feed", data=body,
                            what="publishing to the page")
        post_id = self.json_of(resp).get("id")
        post_id = str(post_id) if post_id else None
        return SendResult(ref=post_id, url=f"https://www.facebook.com/{post_id}" if post_id else None)

    def lookup(self, job: Job) -> SendResult | None:
        """The page post an earlier attempt made: among the page's posts since the first
        attempt, the one carrying our message (Facebook refuses a second identical one anyway)."""
        body = body_of(job.payload)
        # The card's message, or the photo post's (the link at its end): whichever went out.
        messages = {m for m in ((body.get("message") or "").strip(), photo_message(body).strip()) if m}
        if not messages:
            return None
        since = (job.first_attempt_at or datetime.now(UTC)) - timedelta(minutes=5)
        resp = self.request("GET", f"/{self.version}/{quote(self.page_id, safe='')}/posts",
                            params={"fields": "id,message,created_time", "since": str(int(since.timestamp())),
                                    "limit": "100"}, what="looking for the post an earlier attempt made")
        for post in self.json_of(resp).get("data") or []:
            if isinstance(post, dict) and (post.get("message") or "").strip() in messages and post.get("id"):
                post_id = str(post["id"])
                return SendResult(ref=post_id, url=f"https://www.facebook.com/{post_id}",
                                  details={"found_by": "lookup"})
        return None

    def _upload_photo(self, job: Job) -> str | None:
        """The id of the post's image uploaded unpublished to the page, or None (the post keeps
        its link card)."""
        image = self.site_image(job, max_bytes=IMAGE_MAX_BYTES, accept=IMAGE_TYPES)
        if image is None:
            self.media_fallback(job, "no usable image on the site's own host")
            return None
        fields = {"published": "false", **({"alt_text_custom": image.alt} if image.alt else {})}
        try:
            resp = self.request("POST", f"/{self.version}/{quote(self.page_id, safe='')}/photos", idempotent=True,
                                files={"source": (f"image.{image.content_type.split('/')[-1]}", image.data,
                                                  image.content_type)},
                                data=fields, what="uploading the image")
        except ProviderError as exc:
            self.media_fallback(job, str(exc))
            return None
        photo = self.json_of(resp).get("id")
        if not photo:
            self.media_fallback(job, "the photo upload answered without an id")
            return None
        return str(photo)

    def check(self) -> str:
        resp = self.request("GET", f"/{self.version}/{quote(self.page_id, safe='')}",
                            params={"fields": "id,name"}, what="reading the page")
        page = self.json_of(resp)
        sunset = graph_sunset(self.version)
        return (f"Facebook page {page.get('name', '?')} ({page.get('id', self.page_id)}), Graph {self.version} "
                f"(available until {sunset or '?'}){sunset_note('Graph API', 'version', self.version, sunset)}")


def photo_message(body: dict) -> str:
    """A photo post's message: the card's message with the link at its end (no card shows it)."""
    message, link = (body.get("message") or "").strip(), (body.get("link") or "").strip()
    if link and link not in message:
        return f"{message}\n\n{link}" if message else link
    return message

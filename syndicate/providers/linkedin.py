"""LinkedIn Posts API (versioned REST): ``POST /rest/posts``.

Payload: the Posts API body (``author``, ``commentary``, ``visibility``, ``distribution``,
``content.article{source,title,description}``, ``lifecycleState``, ``isReshareDisabledByAuthor``).
If the payload carries the ``_thumbnail_url`` hint (see ``http.py``) and the image is on the
site, it is uploaded first (``POST /rest/images?action=initializeUpload``, then ``PUT`` to the
returned ``uploadUrl``), and once LinkedIn has processed it (``GET /rest/images/{urn}`` says
``AVAILABLE``; the Images API processes uploads asynchronously, and a post citing an image still
``PROCESSING`` can be dropped later) its URN is set as ``content.article.thumbnail``. A thumbnail
that cannot be had within ``image_wait`` seconds (default 5) never stops the post.

The created post's URN comes back in the ``x-restli-id`` header; its public URL is
https://www.linkedin.com/feed/update/<urn>/.

Options: ``author_urn`` (read by the renderer: urn:li:organization:<id> or urn:li:person:<id>),
``token_env`` (a 3-legged OAuth 2.0 access token with ``w_member_social`` for a member
or ``w_organization_social`` for a page; LinkedIn tokens last 60 days), ``linkedin_version``
(``LinkedIn-Version`` header, YYYYMM, default in ``versions.py`` with its sunset date; LinkedIn
retires versions after about a year and then answers 426 NONEXISTENT_VERSION; ``check()`` warns
60 days ahead), ``api_base`` (default https://api.linkedin.com), ``timeout``,
``image_hosts``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from syndicate.providers.base import Job, OutcomeUnknown, Permanent, RateLimited, Retryable, SendResult
from syndicate.providers.http import THUMBNAIL_HINT, ErrorInfo, HttpProvider, body_of
from syndicate.providers.versions import LINKEDIN_DEFAULT, linkedin_sunset, sunset_note

log = logging.getLogger(__name__)

# LinkedIn's codes for a token that is expired, revoked or not a token at all.
_AUTH_CODES = frozenset({"EXPIRED_ACCESS_TOKEN", "REVOKED_ACCESS_TOKEN", "INVALID_ACCESS_TOKEN",
                         "65600", "65601", "65602"})


class LinkedInProvider(HttpProvider):
    name = "linkedin"
    service = "LinkedIn"
    default_api_base = "https://api.linkedin.com"
    deduplicates = False
    rejects_duplicates = True  # identical text is refused: a lost answer's retry fails as Duplicate
    default_rate = "150/24h"  # posts per member per day
    auth_codes = _AUTH_CODES
    duplicate_markers = ("duplicate",)  # 422 "Content is a duplicate of urn:li:share:..."
    image_max_bytes = 5_000_000

    @property
    def version(self) -> str:
        return str(self.options.get("linkedin_version") or LINKEDIN_DEFAULT)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('token_env', 'access token')}",
                "LinkedIn-Version": self.version, "X-Restli-Protocol-Version": "2.0.0"}

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("message"):
            code = data.get("code") if isinstance(data.get("code"), str) else data.get("serviceErrorCode")
            message = str(data["message"])
            if resp.status_code == 426:  # the LinkedIn-Version we send has been retired
                message += f" (set channel option linkedin_version to a current YYYYMM; sent {self.version})"
            return ErrorInfo(message=message, code=None if code is None else str(code))
        return super().parse_error(resp)

    # -- the post -----------------------------------------------------------------------------

    def send(self, job: Job) -> SendResult:
        body = copy.deepcopy(body_of(job.payload))
        article = (body.get("content") or {}).get("article")
        if isinstance(article, dict) and not article.get("thumbnail"):
            image = self.upload_thumbnail(job.payload.get(THUMBNAIL_HINT), owner=body.get("author"))
            if image:
                article["thumbnail"] = image
        resp = self.request("POST", "/rest/posts", json=body, what="creating the post")
        urn = resp.headers.get("x-restli-id") or resp.headers.get("x-linkedin-id")
        return SendResult(ref=urn, url=f"https://www.linkedin.com/feed/update/{urn}/" if urn else None)

    def upload_thumbnail(self, url: str | None, owner: Any) -> str | None:
        """The URN of the uploaded thumbnail, or None. Nothing has been posted yet, so a lost
        upload is harmless; only rate limits and bad credentials stop the send."""
        if not url or not owner:
            return None
        image = self.fetch_site_image(url)
        if image is None:
            return None
        data, content_type = image
        try:
            resp = self.request("POST", "/rest/images", params={"action": "initializeUpload"},
                                json={"initializeUploadRequest": {"owner": owner}},
                                what="initializing the thumbnail upload")
            value = self.json_of(resp).get("value") or {}
            upload_url, urn = value.get("uploadUrl"), value.get("image")
            if not upload_url or not urn:
                return None
            # Our token goes only to LinkedIn's own hosts, whatever uploadUrl says.
            self.request("PUT", upload_url, data=data, headers={"Content-Type": content_type},
                         signed=self._trusted_upload_host(upload_url), idempotent=True,
                         what="uploading the thumbnail")
            return str(urn) if self._image_available(str(urn)) else None
        except RateLimited:
            raise
        except (Permanent, Retryable, OutcomeUnknown) as exc:
            log.warning("LinkedIn channel %s: thumbnail skipped: %s", self.channel_name, exc)
            return None

    def _image_available(self, urn: str) -> bool:
        """Poll the image's status (WAITING_UPLOAD, PROCESSING, AVAILABLE, PROCESSING_FAILED) with
        a doubling interval, for at most ``image_wait`` seconds."""
        deadline = time.monotonic() + float(self.options.get("image_wait", 5))
        interval = 0.2
        while True:
            resp = self.request("GET", f"/rest/images/{quote(urn, safe='')}", what="reading the thumbnail status")
            status = str(self.json_of(resp).get("status") or "")
            if status == "AVAILABLE":
                return True
            if status == "PROCESSING_FAILED" or time.monotonic() + interval > deadline:
                log.warning("LinkedIn channel %s: thumbnail %s is %s; posting without it", self.channel_name, urn,
                            status or "of unknown status")
                return False
            time.sleep(interval)
            interval = min(interval * 2, 2.0)

    def _trusted_upload_host(self, upload_url: str) -> bool:
        host = (urlsplit(upload_url).hostname or "").lower()
        return host == (urlsplit(self.api_base).hostname or "").lower() or host.endswith(".linkedin.com")

    # -- check --------------------------------------------------------------------------------

    def check(self) -> str:
        """A versioned read (``GET /rest/me``) with the same headers as the post: a retired
        LinkedIn-Version fails here (426) as it would on ``POST /rest/posts``."""
        try:
            me = self.json_of(self.request("GET", "/rest/me", what="reading the member"))
            who = " ".join(str(me.get(k, "")) for k in ("localizedFirstName", "localizedLastName")).strip()
            who = f"member {who or me.get('id', '?')}"
        except Permanent as exc:
            if exc.status != 403:  # 426: the version is retired; the message names the option
                raise
            # Refused for scope (no r_liteprofile), not for version: the version was accepted.
            who = "token accepted (it may not read profiles)"
        sunset = linkedin_sunset(self.version)
        return (f"LinkedIn {who}, LinkedIn-Version {self.version} (sunset {sunset or '?'})"
                f"{self._author_note()}{sunset_note('LinkedIn', 'linkedin_version', self.version, sunset)}")

    def _author_note(self) -> str:
        author = self.options.get("author_urn")
        return f"; posting as {quote(str(author), safe=':')}" if author else ""

"""Mastodon: one status per delivery via ``POST /api/v1/statuses`` on the channel's instance.

Payload: ``{"status", "visibility", "language"}`` (Mastodon counts every URL as 23 characters;
500 characters on most instances).

Mastodon deduplicates: the request carries ``Idempotency-Key: <delivery key>``, and the
instance answers a repeated key with the status it already created instead of a second one.
So an outcome-unknown send may be retried safely, *within the instance's memory of the key*
(one hour on stock Mastodon, kept in its Redis): a retry much later could post twice.

Images (option ``media = "image"``): the post's image is uploaded first with ``POST
/api/v2/media`` (multipart ``file``, the image's alt text as ``description``), within the
instance's own limits (``GET /api/v2/instance``: ``configuration.media_attachments``
``image_size_limit``, ``image_matrix_limit``, ``supported_mime_types``; stock 16 MB and
33,177,600 pixels when it does not say); a 202 (still processing) is read again with ``GET
/api/v1/media/:id`` until it has a ``url``. The status then carries ``media_ids``. A retry may
upload again (an unattached upload is cleaned up by the instance); the status keeps its
Idempotency-Key, so it is made once. A failed upload posts the card (the link) instead.

Options: ``instance`` (e.g. https://mastodon.social; required unless ``api_base`` is set),
``token_env`` (an access token of an application with the ``write:statuses`` scope, created
under Preferences -> Development on the instance; add ``read:accounts`` for ``check()``),
``timeout``. Errors are ``{"error": "..."}``; a 429 carries X-RateLimit-Reset (ISO 8601).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from syndicate.providers.base import Job, ProviderError, Retryable, SendResult
from syndicate.providers.http import HttpProvider, body_of
from syndicate.render.textlength import URL_WEIGHT

# Stock Mastodon (app/models/media_attachment.rb): IMAGE_LIMIT 16 MB, MAX_MATRIX_LIMIT 7680x4320.
IMAGE_MAX_BYTES = 16 * 1024 * 1024
IMAGE_MAX_PIXELS = 33_177_600
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DESCRIPTION_MAX = 1500  # MediaAttachment::MAX_DESCRIPTION_LENGTH
PROCESSING_WAIT = 10.0  # seconds to wait for a 202 upload to finish processing


class MastodonProvider(HttpProvider):
    name = "mastodon"
    service = "Mastodon"
    default_api_base = ""
    deduplicates = True
    dedup_window = timedelta(minutes=55)  # stock Mastodon keeps Idempotency-Keys for one hour
    default_rate = "300/3h"  # statuses per account on stock Mastodon

    @property
    def api_base(self) -> str:
        base = self.options.get("api_base") or self.options.get("instance")
        if not base:
            self.option("instance")  # raises Permanent naming the missing option
        base = str(base).rstrip("/")
        return base if base.startswith(("http://", "https://")) else f"https://{base}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('token_env', 'access token')}"}

    def send(self, job: Job) -> SendResult:
        body = {k: v for k, v in body_of(job.payload).items() if v is not None}
        if self.options.get("media") == "image" and self.has_image(job) and (media_id := self._upload_image(job)):
            body["media_ids"] = [media_id]
        resp = self.request("POST", "/api/v1/statuses", json=body, headers={"Idempotency-Key": job.key},
                            what="posting the status")
        status = self.json_of(resp)
        status_id = str(status["id"]) if status.get("id") else None
        return SendResult(ref=status_id, url=status.get("url") or status.get("uri"))

    def _media_limits(self) -> tuple[int, int, tuple[str, ...]]:
        """(bytes, pixels, image types) the instance accepts (``GET /api/v2/instance``); stock
        Mastodon's when it does not say."""
        try:
            info = self.json_of(self.request("GET", "/api/v2/instance", signed=False, what="reading the instance"))
        except ProviderError:
            info = {}
        media: dict[str, Any] = (info.get("configuration") or {}).get("media_attachments") or {}
        size, pixels = media.get("image_size_limit"), media.get("image_matrix_limit")
        types = tuple(t for t in media.get("supported_mime_types") or () if str(t).startswith("image/"))
        return (size if isinstance(size, int) and size > 0 else IMAGE_MAX_BYTES,
                pixels if isinstance(pixels, int) and pixels > 0 else IMAGE_MAX_PIXELS,
                types or IMAGE_TYPES)

    def _upload_image(self, job: Job) -> str | None:
        """The id of the post's uploaded image, ready to attach, or None (the status keeps its
        link card)."""
        size, pixels, types = self._media_limits()
        image = self.site_image(job, max_bytes=size, accept=types, max_pixels=pixels)
        if image is None:
            self.media_fallback(job, "no usable image on the site's own host")
            return None
        extension = image.content_type.split("/")[-1]
        try:
            resp = self.request("POST", "/api/v2/media", idempotent=True, what="uploading the image",
                                files={"file": (f"image.{extension}", image.data, image.content_type)},
                                data={"description": image.alt[:DESCRIPTION_MAX]} if image.alt else None)
            media = self.json_of(resp)
            if not media.get("id"):
                raise Retryable("Mastodon: the image upload answered without an id")
            if resp.status_code == 202 or not media.get("url"):
                self._wait_processed(str(media["id"]))
        except ProviderError as exc:
            self.media_fallback(job, str(exc))
            return None
        return str(media["id"])

    def _wait_processed(self, media_id: str) -> None:
        """Until the upload has a ``url`` (``GET /api/v1/media/:id`` answers 206 while processing)."""
        deadline, interval = time.monotonic() + PROCESSING_WAIT, 0.25
        while True:
            resp = self.request("GET", f"/api/v1/media/{media_id}", what="reading the image's processing")
            if resp.status_code == 200 and self.json_of(resp).get("url"):
                return
            if time.monotonic() + interval > deadline:
                raise Retryable(f"Mastodon: the image was still processing after {PROCESSING_WAIT:g} s")
            time.sleep(interval)
            interval = min(interval * 2, 2.0)

    def check(self) -> str:
        account = self.json_of(self.request("GET", "/api/v1/accounts/verify_credentials",
                                            what="verifying the credentials"))
        return (f"Mastodon @{account.get('acct', '?')} on {self.api_base} "
                f"({account.get('display_name') or account.get('username', '?')}){self._limits_note()}")

    def _limits_note(self) -> str:
        """The instance's own text limits (``GET /api/v2/instance``) against what we render by."""
        try:
            info = self.json_of(self.request("GET", "/api/v2/instance", signed=False, what="reading the instance"))
        except ProviderError:  # older instances (< 4.0) have no v2: nothing to compare
            return ""
        statuses = (info.get("configuration") or {}).get("statuses") or {}
        limit, per_url = statuses.get("max_characters"), statuses.get("characters_reserved_per_url")
        ours = int(self.options.get("max_characters", 500))
        if isinstance(limit, int) and limit < ours:
            return (f"; WARNING: the instance allows {limit} characters but option max_characters is {ours}: "
                    f"set max_characters = {limit}")
        if isinstance(per_url, int) and per_url > URL_WEIGHT:
            return f"; WARNING: the instance counts a link as {per_url} characters, the renderer as {URL_WEIGHT}"
        if isinstance(limit, int) and limit > ours:
            return f"; the instance allows {limit} characters (option max_characters is {ours})"
        return ""

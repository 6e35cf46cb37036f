"""Fake Mastodon instance: POST /api/v1/statuses, GET /api/v1/accounts/verify_credentials.

Bearer token; errors ``{"error": "..."}``; 429 with X-RateLimit-Limit/-Remaining/-Reset (ISO
8601, as Mastodon sends it). ``Idempotency-Key`` works as on Mastodon: a repeated key answers
the status created the first time (``fake.statuses`` holds each status once).

Documented rules it enforces (Mastodon publishes no machine-readable schema):
- the length as ``StatusLengthValidator`` counts it: ``status`` plus ``spoiler_text``, every
  URL 23 characters (mastodon/mastodon app/validators/status_length_validator.rb), at most 500
  (stock ``MAX_CHARS``; docs.joinmastodon.org/methods/statuses/#create: 422 "Text character
  limit of 500 exceeded");
- ``visibility`` public, unlisted, private or direct; ``language`` an ISO 639 code
  (docs.joinmastodon.org/methods/statuses/#create);
- ``GET /api/v2/instance`` publishes ``configuration.statuses.max_characters`` and
  ``characters_reserved_per_url`` (docs.joinmastodon.org/methods/instance/#v2), and
  ``configuration.media_attachments`` (``image_size_limit``, ``image_matrix_limit``,
  ``supported_mime_types``);
- ``POST /api/v2/media`` takes multipart ``file`` (an image within those limits, else 422) and
  ``description`` (at most 1,500 characters); it answers 200 with the attachment, or 202 with
  ``url: null`` while ``fake.processing_reads`` reads of ``GET /api/v1/media/:id`` (206) are left
  (docs.joinmastodon.org/methods/media/#v2);
- a status's ``media_ids`` must name this account's processed, unattached uploads (422
  otherwise), at most 4 (docs.joinmastodon.org/methods/statuses/#create).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import regex

from .server import FakeAPI, Fault, Reply, Request, reply, route

_URL = re.compile(r"https?://\S+")


def mastodon_count(text: str) -> int:
    """StatusLengthValidator: graphemes, a URL counted as 23."""
    return len(regex.findall(r"\X", _URL.sub("x" * 23, text)))


class MastodonFake(FakeAPI):
    name = "mastodon"
    TOKEN = "masto-fake-token"
    ACCOUNT = {"id": "109000000000000001", "username": "harbor", "acct": "harbor",
               "display_name": "Harbor Wellness Counseling"}

    def reset_state(self) -> None:
        self.tokens = {self.TOKEN}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, str] = {}  # key -> status id
        self.max_characters = 500
        self.media: dict[str, dict[str, Any]] = {}  # id -> {"bytes", "type", "description", "reads_left", ...}
        self.processing_reads = 0  # an upload answers 202 and stays processing for this many reads
        self.image_size_limit = 16 * 1024 * 1024
        self.image_matrix_limit = 33_177_600

    def options(self) -> dict[str, Any]:
        return {"instance": self.base_url, "token_env": "SYN_FAKE_MASTO_TOKEN"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_MASTO_TOKEN": self.TOKEN}

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        return reply(status, {"error": message})

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "The access token is invalid")
        if status == 400:
            return self.error(422, "Validation failed: Text character limit of 500 exceeded")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        reset = (datetime.now(UTC) + timedelta(seconds=retry_after)).isoformat(timespec="milliseconds")
        answer = self.error(429, "Too many requests")
        answer.headers.update({"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                               "X-RateLimit-Reset": reset.replace("+00:00", "Z")})
        return answer

    def authorize(self, req: Request) -> Reply | None:
        return None if req.bearer() in self.tokens else self.error(401, "The access token is invalid")

    @route("POST", r"/api/v1/statuses")
    def create_status(self, req: Request) -> Reply:
        params = req.params()
        key = req.header("idempotency-key")
        with self.lock:
            if key and key in self.idempotency:
                return reply(200, self.statuses[self.idempotency[key]])
            text = params.get("status")
            if not text:
                return self.error(422, "Validation failed: Text can't be blank")
            if mastodon_count(text) + mastodon_count(params.get("spoiler_text") or "") > self.max_characters:
                return self.error(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
            language = params.get("language")
            if language is not None and not re.fullmatch(r"[a-z]{2,3}", str(language)):
                return self.error(422, "Validation failed: Language is not a valid ISO 639 code")
            visibility = params.get("visibility", "public")
            if visibility not in ("public", "unlisted", "private", "direct"):
                return self.error(422, "Validation failed: Visibility is not included in the list")
            media_ids = params.get("media_ids") or []
            if not isinstance(media_ids, list) or len(media_ids) > 4:
                return self.error(422, "Validation failed: media_ids must be a list of at most 4 ids")
            for media_id in media_ids:
                media = self.media.get(str(media_id))
                if media is None or media["attached"]:
                    return self.error(422, f"Validation failed: media {media_id} not found")
                if media["reads_left"] > 0:
                    return self.error(422, "Cannot attach files that have not finished processing. "
                                           "Try again in a moment!")
            status_id = str(112000000000000000 + self.next_id())
            status = {"id": status_id, "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                      "url": f"{self.base_url}/@harbor/{status_id}",
                      "uri": f"{self.base_url}/users/harbor/statuses/{status_id}",
                      "content": f"<p>{text}</p>", "visibility": visibility, "language": params.get("language"),
                      "account": dict(self.ACCOUNT)}
            if media_ids:
                status["media_attachments"] = [self._attachment(str(m)) for m in media_ids]
                for media_id in media_ids:
                    self.media[str(media_id)]["attached"] = status_id
            self.statuses[status_id] = status
            if key:
                self.idempotency[key] = status_id
        return reply(200, status)

    @route("GET", r"/api/v2/instance", auth=False)
    def instance(self, req: Request) -> Reply:
        return reply(200, {"domain": "mastodon.fake", "title": "Fake Mastodon", "version": "4.3.0",
                           "configuration": {"statuses": {"max_characters": self.max_characters,
                                                          "max_media_attachments": 4,
                                                          "characters_reserved_per_url": 23},
                                             "media_attachments": {
                                                 "supported_mime_types": ["image/jpeg", "image/png", "image/gif",
                                                                          "image/webp", "video/mp4"],
                                                 "image_size_limit": self.image_size_limit,
                                                 "image_matrix_limit": self.image_matrix_limit}}})

    def _attachment(self, media_id: str) -> dict[str, Any]:
        media = self.media[media_id]
        processing = media["reads_left"] > 0
        return {"id": media_id, "type": "image", "description": media["description"],
                "url": None if processing else f"{self.base_url}/system/media/{media_id}.png",
                "preview_url": f"{self.base_url}/system/media/{media_id}-small.png",
                "meta": {"original": {"width": media["width"], "height": media["height"]}}}

    @route("POST", r"/api/v2/media")
    def upload_media(self, req: Request) -> Reply:
        import io

        from PIL import Image

        upload = (req.files or {}).get("file")
        if upload is None:
            return self.error(422, "Validation failed: File can't be blank")
        _name, ctype, data = upload
        description = (req.form or {}).get("description")
        if description is not None and len(description) > 1500:
            return self.error(422, "Validation failed: Description is too long (maximum is 1500 characters)")
        if len(data) > self.image_size_limit:
            return self.error(422, f"Validation failed: File file size must be less than {self.image_size_limit} Bytes")
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                kind = Image.MIME.get(img.format or "")
        except OSError:
            return self.error(422, "Validation failed: File content type is invalid")
        if kind != ctype or kind not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
            return self.error(422, "Validation failed: File content type is invalid")
        if width * height > self.image_matrix_limit:
            return self.error(422, "Validation failed: File dimensions are larger than the limit")
        with self.lock:
            media_id = str(113000000000000000 + self.next_id())
            self.media[media_id] = {"bytes": data, "type": ctype, "description": description, "width": width,
                                    "height": height, "reads_left": self.processing_reads, "attached": None}
            body = self._attachment(media_id)
        return reply(202 if self.processing_reads else 200, body)

    @route("GET", r"/api/v1/media/(?P<media_id>\d+)")
    def read_media(self, req: Request, media_id: str) -> Reply:
        with self.lock:
            media = self.media.get(media_id)
            if media is None:
                return self.error(404, "Record not found")
            if media["reads_left"] > 0:
                media["reads_left"] -= 1
                return reply(206, self._attachment(media_id) | {"url": None})
            return reply(200, self._attachment(media_id))

    @route("GET", r"/api/v1/accounts/verify_credentials")
    def verify_credentials(self, req: Request) -> Reply:
        return reply(200, {**self.ACCOUNT, "url": f"{self.base_url}/@harbor", "source": {"privacy": "public"}})

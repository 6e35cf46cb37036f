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
  ``characters_reserved_per_url`` (docs.joinmastodon.org/methods/instance/#v2).
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
            status_id = str(112000000000000000 + self.next_id())
            status = {"id": status_id, "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                      "url": f"{self.base_url}/@harbor/{status_id}",
                      "uri": f"{self.base_url}/users/harbor/statuses/{status_id}",
                      "content": f"<p>{text}</p>", "visibility": visibility, "language": params.get("language"),
                      "account": dict(self.ACCOUNT)}
            self.statuses[status_id] = status
            if key:
                self.idempotency[key] = status_id
        return reply(200, status)

    @route("GET", r"/api/v2/instance", auth=False)
    def instance(self, req: Request) -> Reply:
        return reply(200, {"domain": "mastodon.fake", "title": "Fake Mastodon", "version": "4.3.0",
                           "configuration": {"statuses": {"max_characters": self.max_characters,
                                                          "max_media_attachments": 4,
                                                          "characters_reserved_per_url": 23}}})

    @route("GET", r"/api/v1/accounts/verify_credentials")
    def verify_credentials(self, req: Request) -> Reply:
        return reply(200, {**self.ACCOUNT, "url": f"{self.base_url}/@harbor", "source": {"privacy": "public"}})

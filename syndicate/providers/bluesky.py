"""Bluesky (AT Protocol): one ``app.bsky.feed.post`` record per delivery.

Payload: the post record ``{"$type", "text", "createdAt", "langs", "facets", "embed"}`` with an
``app.bsky.embed.external`` link card built by the renderer (Bluesky does not fetch cards
itself). Here the adapter adds what only it can:

* a session: ``com.atproto.server.createSession`` with the handle and an *app password*, kept
  per account in the process and in the ledger (``providers/tokens.py``, as X's tokens), since
  createSession is limited to 30 per 5 minutes and 300 a day per account and Celery recycles its
  worker processes; a process that starts finds the stored pair (checked with ``getSession``).
  It is renewed with ``com.atproto.server.refreshSession`` when the access JWT expires
  (``ExpiredToken``), once across all processes (the refresh JWT rotates), or created anew when
  the refresh JWT has expired too;
* the card's ``thumb``: the ``_thumbnail_url`` hint's image, fetched only from the site's own
  host(s) (at most 10 MB), re-encoded smaller when it is over 1,000,000 bytes (the lexicon's
  ``thumb maxSize``), uploaded with ``com.atproto.repo.uploadBlob``; otherwise the card goes
  without a thumbnail;
* with option ``media = "image"``, an ``app.bsky.embed.images`` embed instead of the card: the
  post's image (site's own hosts only), re-encoded when over 1,000,000 bytes (the images
  lexicon now allows 2 MB, "formerly limited to 1 MB": the smaller size goes everywhere),
  uploaded with ``uploadBlob``, with the image's alt text and its ``aspectRatio``; the link stays
  in the text with its facet. A failed upload keeps the card;
* ``createdAt`` set to the moment of the first attempt (a stale one, from planning time, would
  sort the post back in time on the timeline; a later one would make a retry's record differ).

Exactly once: the record key is a TID derived from the delivery (its first attempt's time and a
clock id from its key: ``record_key``), and the record is written with
``com.atproto.repo.putRecord`` ("creating or updating it as needed"). A retry after a lost answer
writes the very same record under the same key instead of a second post, so ``deduplicates``
is True. (``createRecord`` with an existing rkey answers an error, 500 in indigo#873, which a
retry could not tell from a real failure.) The public URL is
https://bsky.app/profile/<handle>/post/<rkey>.

Options: ``identifier`` (handle, DID or e-mail; or ``identifier_env``), ``app_password_env``
(Settings -> Privacy and security -> App passwords), ``api_base`` (the PDS or entryway,
default https://bsky.social), ``timeout``, ``image_hosts``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from syndicate.ledger.db import open_ledger
from syndicate.providers import tokens
from syndicate.providers.base import (
    AuthExpired,
    Job,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    RateLimited,
    Retryable,
    SendResult,
)
from syndicate.providers.http import THUMBNAIL_HINT, ErrorInfo, HttpProvider, body_of, shrink_image

log = logging.getLogger(__name__)

_AUTH_ERRORS = frozenset({"ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthMissing",
                          "AccountTakedown", "AccountDeactivated"})


IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
FETCH_MAX_BYTES = 10_000_000  # a featured image larger than this is not worth shrinking
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable (atproto "tid" format)


def record_key(first_attempt: datetime, delivery_key: str) -> str:
    """The TID record key of a delivery's post: 53 bits of microseconds since the epoch (its
    first attempt) and a 10-bit clock id from the delivery key, as 13 base32-sortable characters.
    The same delivery always gets the same key."""
    micros = int(first_attempt.timestamp() * 1_000_000) & ((1 << 53) - 1)
    clock_id = int.from_bytes(hashlib.sha256(delivery_key.encode()).digest()[:2], "big") & 0x3FF
    value = (micros << 10) | clock_id
    return "".join(_TID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Session:
    access: str
    refresh: str
    did: str
    handle: str


# One session per (api_base, identifier) for the whole process.
_SESSIONS: dict[tuple[str, str], _Session] = {}
_SESSIONS_LOCK = threading.Lock()


def clear_sessions() -> None:
    """Forget every cached session (tests)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


class BlueskyProvider(HttpProvider):
    name = "bluesky"
    service = "Bluesky"
    default_api_base = "https://bsky.social"
    deduplicates = True  # putRecord under a key derived from the delivery: a retry rewrites the same record
    default_rate = "1600/1h"  # 5000 points/hour per account; a created record costs 3
    auth_codes = _AUTH_ERRORS
    image_max_bytes = 1_000_000

    # -- session ------------------------------------------------------------------------------

    @property
    def identifier(self) -> str:
        if self.options.get("identifier_env"):
            return str(self.secret("identifier_env", "identifier"))
        return str(self.option("identifier")).lstrip("@")

    @property
    def _key(self) -> tuple[str, str]:
        return (self.api_base, self.identifier)

    def session_info(self) -> _Session:
        with _SESSIONS_LOCK:
            current = _SESSIONS.get(self._key)
        if current is None:
            current = self._stored_session() or self._create_session()
        self._remember(current.access)
        self._remember(current.refresh)
        return current

    @property
    def _account(self) -> str:
        return f"bluesky:{self.api_base}:{self.identifier}"

    def _ledger(self):
        return open_ledger(self.settings.store_url)

    def _stored_session(self) -> _Session | None:
        """The pair another process (or an earlier one) kept in the ledger, if it still works."""
        pair = tokens.load(self._ledger(), self._account, settings=self.settings)
        if pair is None or not pair.access:
            return None
        self._remember(pair.access)
        self._remember(pair.refresh)
        stale = _Session(access=pair.access, refresh=pair.refresh or "", did="", handle="")
        try:
            return self._confirm(stale)
        except AuthExpired:
            pass
        try:
            return self._confirm(self._refresh_session(stale))
        except AuthExpired:
            return None

    def _confirm(self, session: _Session) -> _Session:
        """SESSION with its DID and handle read from ``getSession`` (the ledger keeps only the JWTs)."""
        if session.did:
            return session
        resp = self.request("GET", "/xrpc/com.atproto.server.getSession", signed=False,
                            headers={"Authorization": f"Bearer {session.access}"}, what="resuming the session")
        info = self.json_of(resp)
        return self._store({"accessJwt": session.access, "refreshJwt": session.refresh, **info}, keep=False)

    def _create_session(self) -> _Session:
        password = self.secret("app_password_env", "app password")
        resp = self.request("POST", "/xrpc/com.atproto.server.createSession", signed=False, idempotent=True,
                            json={"identifier": self.identifier, "password": password},
                            what="signing in")
        return self._store(self.json_of(resp))

    def _refresh_session(self, stale: _Session) -> _Session:
        """A renewed session, refreshed once across processes: the refresh JWT rotates, so a
        second process using the same one would be refused (``tokens.rotate``)."""
        answer: dict[str, Any] = {}

        def refresh_call(stored: tokens.TokenPair) -> tokens.TokenPair:
            resp = self.request("POST", "/xrpc/com.atproto.server.refreshSession", signed=False, idempotent=True,
                                headers={"Authorization": f"Bearer {stored.refresh}"},
                                what="refreshing the session")
            answer.update(self.json_of(resp))
            if not answer.get("accessJwt"):
                raise AuthExpired("Bluesky: the refresh answer had no accessJwt")
            return tokens.TokenPair(access=answer["accessJwt"], refresh=answer.get("refreshJwt"))

        try:
            pair = tokens.rotate(self._ledger(), self._account,
                                 tokens.TokenPair(access=stale.access, refresh=stale.refresh), refresh_call,
                                 settings=self.settings)
        except AuthExpired:  # the refresh JWT has expired too (or was revoked): sign in again
            return self._create_session()
        if answer:  # this process refreshed
            return self._store({"did": stale.did, "handle": stale.handle, **answer}, keep=False)
        # Another process had refreshed first: use its pair.
        return self._confirm(_Session(access=pair.access or "", refresh=pair.refresh or "", did=stale.did,
                                      handle=stale.handle))

    def _store(self, data: dict[str, Any], *, keep: bool = True) -> _Session:
        """Remember the session in this process and, with KEEP, as the account's pair in the ledger."""
        if not data.get("accessJwt") or not data.get("did"):
            raise AuthExpired("Bluesky: the session answer had no accessJwt/did")
        session = _Session(access=data["accessJwt"], refresh=data.get("refreshJwt", ""), did=data["did"],
                           handle=data.get("handle") or self.identifier)
        self._remember(session.access)
        self._remember(session.refresh)
        if keep:
            tokens.save(self._ledger(), self._account, tokens.TokenPair(access=session.access,
                                                                        refresh=session.refresh),
                        settings=self.settings)
        with _SESSIONS_LOCK:
            _SESSIONS[self._key] = session
        return session

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session_info().access}"}

    def call(self, method: str, nsid: str, **kwargs: Any) -> requests.Response:
        """An authenticated XRPC call; an expired session is renewed and the call made once more.
        A refused call created nothing, so repeating it is safe."""
        session = self.session_info()
        try:
            return self.request(method, f"/xrpc/{nsid}", **kwargs)
        except AuthExpired:
            with _SESSIONS_LOCK:
                current = _SESSIONS.get(self._key)
            if current is None or current.access == session.access:  # else another instance renewed it
                self._refresh_session(session)
        return self.request(method, f"/xrpc/{nsid}", **kwargs)

    # -- errors -------------------------------------------------------------------------------

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return ErrorInfo(message=str(data.get("message") or data["error"]), code=data["error"])
        return super().parse_error(resp)

    def is_rate_limited(self, resp: requests.Response, info: ErrorInfo) -> bool:
        return resp.status_code == 429 or info.code == "RateLimitExceeded"

    # -- the post -----------------------------------------------------------------------------

    def send(self, job: Job) -> SendResult:
        record = copy.deepcopy(body_of(job.payload))
        record.setdefault("$type", "app.bsky.feed.post")
        first_attempt = job.first_attempt_at or datetime.now(UTC)
        record["createdAt"] = _timestamp(first_attempt)
        embed = record.get("embed")
        if self.options.get("media") == "image" and self.has_image(job) and (images := self._images_embed(job)):
            record["embed"] = embed = images
        if isinstance(embed, dict) and embed.get("$type") == "app.bsky.embed.external":
            external = embed.get("external")
            if isinstance(external, dict) and not external.get("thumb"):
                blob = self.upload_thumbnail(job.payload.get(THUMBNAIL_HINT))
                if blob:
                    external["thumb"] = blob
        session = self.session_info()
        rkey = record_key(first_attempt, job.key)
        resp = self.call("POST", "com.atproto.repo.putRecord", what="creating the post",
                         json={"repo": session.did, "collection": "app.bsky.feed.post", "rkey": rkey,
                               "record": record})
        answer = self.json_of(resp)
        uri = answer.get("uri") or f"at://{session.did}/app.bsky.feed.post/{rkey}"
        handle = self.session_info().handle
        return SendResult(ref=uri, url=f"https://bsky.app/profile/{handle}/post/{rkey}",
                          details={"cid": answer.get("cid")})

    def upload_thumbnail(self, url: str | None) -> dict[str, Any] | None:
        image = self.fetch_site_image(url, FETCH_MAX_BYTES)
        if image is None:
            return None
        data, content_type = image
        if len(data) > self.image_max_bytes:
            data, content_type = shrink_image(data, self.image_max_bytes), "image/jpeg"
            if data is None:
                log.info("Bluesky channel %s: thumbnail %s could not be made small enough; skipped",
                         self.channel_name, url)
                return None
        try:
            resp = self.call("POST", "com.atproto.repo.uploadBlob", data=data, idempotent=True,
                             headers={"Content-Type": content_type}, what="uploading the thumbnail")
        except (RateLimited, AuthExpired):
            raise
        except (Permanent, Retryable, OutcomeUnknown) as exc:
            log.warning("Bluesky channel %s: thumbnail skipped: %s", self.channel_name, exc)
            return None
        blob = self.json_of(resp).get("blob")
        return blob if isinstance(blob, dict) else None

    def _images_embed(self, job: Job) -> dict[str, Any] | None:
        """An ``app.bsky.embed.images`` embed of the post's uploaded image, or None (the post
        keeps its link card). The blob may be uploaded again by a retry; the record is one."""
        image = self.site_image(job, max_bytes=self.image_max_bytes, accept=IMAGE_TYPES)
        if image is None:
            self.media_fallback(job, "no usable image on the site's own host")
            return None
        try:
            resp = self.call("POST", "com.atproto.repo.uploadBlob", data=image.data, idempotent=True,
                             headers={"Content-Type": image.content_type}, what="uploading the image")
        except ProviderError as exc:
            self.media_fallback(job, str(exc))
            return None
        blob = self.json_of(resp).get("blob")
        if not isinstance(blob, dict):
            self.media_fallback(job, "the upload answered without a blob")
            return None
        return {"$type": "app.bsky.embed.images",
                "images": [{"image": blob, "alt": image.alt,
                            "aspectRatio": {"width": image.width, "height": image.height}}]}

    def check(self) -> str:
        info = self.json_of(self.call("GET", "com.atproto.server.getSession", what="reading the session"))
        return f"Bluesky @{info.get('handle', '?')} ({info.get('did', '?')}) on {self.api_base}"

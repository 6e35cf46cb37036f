"""X (Twitter) API v2: one post per delivery via ``POST /2/tweets``.

Payload: ``{"text": ...}`` (the CreatePostsRequest body; X counts every URL as 23 characters).

Auth, one of:

* OAuth 2.0 user context (PKCE app, scopes ``tweet.read tweet.write users.read offline.access``):
  ``token_env`` names the variable holding the access token; optionally ``refresh_token_env``
  and ``client_id_env`` (+ ``client_secret_env`` for a confidential client) let the adapter
  refresh it via ``POST /2/oauth2/token`` on a 401 (once) or when it is about to expire.
  X rotates refresh tokens and accepts each once: the newest pair is kept in the ledger
  (``providers/tokens.py``), so every worker process uses it and exactly one of them spends a
  refresh token; after a restart the stored pair wins over the spent one in the environment.
  To start over after authorizing the app again, put the new refresh token in the variable: a
  different first refresh token starts a new entry.
* OAuth 1.0a user context: ``consumer_key_env``, ``consumer_secret_env``, ``access_token_env``,
  ``access_token_secret_env`` (signed by oauthlib, not by hand).

Images (option ``media = "image"``): the post's image is uploaded with ``POST /2/media/upload``
(``MediaUploadRequest``: base64 ``media``, ``media_category = tweet_image``; at most 5 MB, JPEG,
PNG, GIF or WEBP, else re-encoded), its alt text set with ``POST /2/media/metadata``
(``alt_text.text``, at most 1,000 characters), and the post sent with ``media.media_ids``. The
token needs the ``media.write`` scope. A failed upload posts the card instead.

Other options: ``username`` (for the public URL; else https://x.com/i/web/status/<id>),
``api_base`` (default https://api.x.com), ``timeout``.

X does not deduplicate by key (it rejects identical text with 403 "duplicate content", which
is a Permanent error here), so ``deduplicates`` is False.

The monthly usage cap is not a rate limit: X answers 429 ``UsageCapExceeded`` (problem type
``usage-capped``, period Monthly) while ``x-rate-limit-remaining`` is far from 0
(xdevplatform/xdk#25), and pay-per-use accounts out of credit get 402. Waiting for the 15-minute
reset and trying again would be refused (and may be billed) every time until the month turns,
so both are AuthExpired: a person must raise the plan or top up, then ``resolve --retry``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from typing import Any

import requests
from requests_oauthlib import OAuth1

from syndicate.ledger.db import open_ledger
from syndicate.ledger.models import utcnow
from syndicate.providers import tokens
from syndicate.providers.base import AuthExpired, Job, Permanent, ProviderError, Retryable, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider, body_of, generic_error_info, reset_from_headers

# X problem types / reasons meaning "these credentials can't do this": a human must fix them.
_BILLING_PROBLEMS = ("usage-capped", "UsageCapExceeded", "CreditsDepleted")
_BILLING_ADVICE = ("the X account's monthly usage cap (or its credit) is spent: a person must raise the plan "
                   "in the X developer console, or wait for the cap to reset, then resolve --retry")
# docs.x.com media best practices: images up to 5 MB, JPG, PNG, GIF, WEBP; alt text 1,000 characters
IMAGE_MAX_BYTES = 5_000_000
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ALT_TEXT_MAX = 1000
_AUTH_PROBLEMS = ("unsupported-authentication", "client-forbidden", "client-not-enrolled",
                  "oauth1-permissions", "not-authorized-for-resource")


class XProvider(HttpProvider):
    name = "x"
    service = "X"
    default_api_base = "https://api.x.com"
    deduplicates = False
    rejects_duplicates = True  # identical text is refused: a lost answer's retry fails as Duplicate
    # POST /2/tweets per user on the docs.x.com per-endpoint table; Free and Basic tiers allow
    # fewer (tweepy discussion #2129): set option rate_limit to the tier's. The 24-hour caps come
    # back as a 429 whose x-user/app-limit-24hour-reset is honoured.
    default_rate = "100/15m"

    def __init__(self, settings, channel_name, channel):
        super().__init__(settings, channel_name, channel)
        self._oauth1: OAuth1 | None = None
        self._account: str | None = None  # the ledger's key for this app's rotated tokens
        self._tokens: tokens.TokenPair | None = None

    # -- auth ---------------------------------------------------------------------------------

    @property
    def uses_oauth1(self) -> bool:
        return bool(self.options.get("consumer_key_env"))

    def _auth(self) -> OAuth1 | None:
        if not self.uses_oauth1:
            return None
        if self._oauth1 is None:
            self._oauth1 = OAuth1(
                self.secret("consumer_key_env", "API key"),
                client_secret=self.secret("consumer_secret_env", "API key secret"),
                resource_owner_key=self.secret("access_token_env", "access token"),
                resource_owner_secret=self.secret("access_token_secret_env", "access token secret"),
                signature_type="auth_header",
            )
        return self._oauth1

    def _can_refresh(self) -> bool:
        return bool(self.options.get("refresh_token_env") and self.options.get("client_id_env"))

    def _oauth2_tokens(self) -> tokens.TokenPair:
        if self._tokens is not None:
            return self._tokens
        access = self.secret("token_env", "OAuth 2.0 user access token", required=not self._can_refresh())
        pair = tokens.TokenPair(access=access, refresh=None)
        if self._can_refresh():
            refresh = self.secret("refresh_token_env", "OAuth 2.0 refresh token")
            client_id = self.secret("client_id_env", "OAuth 2.0 client id")
            fingerprint = hashlib.sha256(refresh.encode()).hexdigest()[:32]
            self._account = f"x:{self.api_base}:{client_id}:{fingerprint}"
            pair = (tokens.load(self._ledger(), self._account, settings=self.settings)
                    or tokens.TokenPair(access=access, refresh=refresh))
            self._remember(pair.access)
            self._remember(pair.refresh)
        self._tokens = pair
        return pair

    def _ledger(self):
        return open_ledger(self.settings.store_url)

    def auth_headers(self) -> dict[str, str]:
        if self.uses_oauth1:
            return {}
        pair = self._oauth2_tokens()
        if not pair.fresh(utcnow()) and self._can_refresh():
            self._refresh()
            pair = self._tokens
        return {"Authorization": f"Bearer {pair.access}"}

    def _refresh(self) -> None:
        """New tokens, refreshed once across every worker process (providers/tokens.py)."""
        current = self._oauth2_tokens()
        self._tokens = tokens.rotate(self._ledger(), self._account, current, self._refresh_call,
                                     settings=self.settings)
        self._remember(self._tokens.access)
        self._remember(self._tokens.refresh)

    def _refresh_call(self, stored: tokens.TokenPair) -> tokens.TokenPair:
        client_id = self.secret("client_id_env", "OAuth 2.0 client id")
        client_secret = self.secret("client_secret_env", "OAuth 2.0 client secret", required=False)
        data = {"grant_type": "refresh_token", "refresh_token": stored.refresh, "client_id": client_id}
        try:
            resp = self.request("POST", "/2/oauth2/token", data=data, signed=False, idempotent=True,
                                what="refreshing the access token",
                                **({"auth": (client_id, client_secret)} if client_secret else {}))
        except Permanent as exc:  # invalid_grant & co: the refresh token is no good any more
            raise AuthExpired(f"{exc} (refresh token rejected: authorize the app again and store "
                              f"the new refresh token in ${self.options.get('refresh_token_env')})",
                              status=exc.status) from None
        answer = self.json_of(resp)
        if not answer.get("access_token"):
            raise AuthExpired("X: token refresh answered without an access_token")
        expires_in = answer.get("expires_in")
        return tokens.TokenPair(access=answer["access_token"], refresh=answer.get("refresh_token") or stored.refresh,
                                expires_at=utcnow() + timedelta(seconds=float(expires_in)) if expires_in else None)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request with this channel's auth; an OAuth 2.0 401 is refreshed and retried once."""
        auth = self._auth()
        if auth is not None:
            kwargs["auth"] = auth
        try:
            return self.request(method, path, **kwargs)
        except AuthExpired as exc:
            # A 401 means the request was refused, so nothing was created: safe to repeat once.
            if auth is not None or exc.status != 401 or not self._can_refresh():
                raise
        self._refresh()
        return self.request(method, path, **kwargs)

    # -- errors -------------------------------------------------------------------------------

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        data = self._safe_json(resp)
        info = generic_error_info(data)
        if isinstance(data, dict) and info is not None:
            reason = data.get("reason") or str(data.get("type") or "").rsplit("/", 1)[-1] or info.code
            message = info.message
            if reason in _BILLING_PROBLEMS or resp.status_code == 402:
                message = f"{message} ({_BILLING_ADVICE})"
            return ErrorInfo(message=message, code=reason, subcode=info.subcode)
        return info or super().parse_error(resp)

    @staticmethod
    def _safe_json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    def _billing(self, resp: requests.Response, info: ErrorInfo) -> bool:
        return resp.status_code == 402 or any(p == info.code for p in _BILLING_PROBLEMS)

    def is_rate_limited(self, resp: requests.Response, info: ErrorInfo) -> bool:
        return not self._billing(resp, info) and super().is_rate_limited(resp, info)

    def is_auth_error(self, resp: requests.Response, info: ErrorInfo) -> bool:
        if resp.status_code == 401 or self._billing(resp, info):
            return True
        return resp.status_code == 403 and bool(info.code) and any(p in info.code for p in _AUTH_PROBLEMS)

    def rate_limit_reset(self, resp: requests.Response, info: ErrorInfo) -> datetime | None:
        # Hitting the 24-hour posting cap: the per-15-minute reset would be far too early.
        resets = [reset_from_headers(resp.headers, [f"x-{who}-limit-24hour-reset"])
                  for who in ("user", "app") if resp.headers.get(f"x-{who}-limit-24hour-remaining") == "0"]
        resets = [r for r in resets if r is not None]
        if resets:
            return max(resets)
        return reset_from_headers(resp.headers)

    # -- the calls ----------------------------------------------------------------------------

    def send(self, job: Job) -> SendResult:
        body = body_of(job.payload)
        if self.options.get("media") == "image" and self.has_image(job) and (media_id := self._upload_image(job)):
            body = {**body, "media": {"media_ids": [media_id]}}
        resp = self.call("POST", "/2/tweets", json=body, what="creating the post")
        data = self.json_of(resp).get("data") or {}
        post_id = str(data["id"]) if data.get("id") else None
        return SendResult(ref=post_id, url=self.public_url(post_id), details={"text": data.get("text")})

    def _upload_image(self, job: Job) -> str | None:
        """The media id of the post's uploaded image, or None (the post keeps its card). An
        upload may be repeated by a retry: an unused media id simply expires."""
        image = self.site_image(job, max_bytes=IMAGE_MAX_BYTES, accept=IMAGE_TYPES)
        if image is None:
            self.media_fallback(job, "no usable image on the site's own host")
            return None
        try:
            resp = self.call("POST", "/2/media/upload", idempotent=True, what="uploading the image",
                             json={"media": base64.b64encode(image.data).decode("ascii"),
                                   "media_category": "tweet_image"})
            media_id = str((self.json_of(resp).get("data") or {}).get("id") or "")
            if not media_id:
                raise Retryable("X: the image upload answered without a media id")
            if image.alt:
                self.call("POST", "/2/media/metadata", idempotent=True, what="setting the image's alt text",
                          json={"id": media_id, "metadata": {"alt_text": {"text": image.alt[:ALT_TEXT_MAX]}}})
        except ProviderError as exc:
            self.media_fallback(job, str(exc))
            return None
        return media_id

    def public_url(self, post_id: str | None) -> str | None:
        if not post_id:
            return None
        username = self.options.get("username")
        if username:
            return f"https://x.com/{str(username).lstrip('@')}/status/{post_id}"
        return f"https://x.com/i/web/status/{post_id}"

    def check(self) -> str:
        resp = self.call("GET", "/2/users/me", what="reading the account")
        user = self.json_of(resp).get("data") or {}
        mode = "OAuth 1.0a user context" if self.uses_oauth1 else "OAuth 2.0 user token"
        refresh = " (refreshable)" if not self.uses_oauth1 and self._can_refresh() else ""
        return f"X @{user.get('username', '?')} ({user.get('name', '?')}), {mode}{refresh}"

"""Mastodon: one status per delivery via ``POST /api/v1/statuses`` on the channel's instance.

Payload: ``{"status", "visibility", "language"}`` (Mastodon counts every URL as 23 characters;
500 characters on most instances).

Mastodon deduplicates: the request carries ``Idempotency-Key: <delivery key>``, and the
instance answers a repeated key with the status it already created instead of a second one.
So an outcome-unknown send may be retried safely, *within the instance's memory of the key*
(one hour on stock Mastodon, kept in its Redis): a retry much later could post twice.

Options: ``instance`` (e.g. https://mastodon.social; required unless ``api_base`` is set),
``token_env`` (an access token of an application with the ``write:statuses`` scope, created
under Preferences -> Development on the instance; add ``read:accounts`` for ``check()``),
``timeout``. Errors are ``{"error": "..."}``; a 429 carries X-RateLimit-Reset (ISO 8601).
"""

from __future__ import annotations

from datetime import timedelta

from syndicate.providers.base import Job, ProviderError, SendResult
from syndicate.providers.http import HttpProvider, body_of
from syndicate.render.textlength import URL_WEIGHT


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
        resp = self.request("POST", "/api/v1/statuses", json=body, headers={"Idempotency-Key": job.key},
                            what="posting the status")
        status = self.json_of(resp)
        status_id = str(status["id"]) if status.get("id") else None
        return SendResult(ref=status_id, url=status.get("url") or status.get("uri"))

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

"""Buttondown: one email per delivery, sent (or scheduled) to the newsletter's subscribers.

``POST /v1/emails`` ``{subject, body, status, metadata, description}`` with ``status``
``about_to_send`` (Buttondown starts sending within minutes) or ``scheduled`` with a
``publish_date`` when option ``schedule_after`` (minutes) is set. The body is our HTML,
marked ``<!-- buttondown-editor-mode: fancy -->`` so Buttondown takes it as HTML rather than
Markdown (whose indented lines would become code blocks); the footer's unsubscribe link
becomes Buttondown's ``{{ unsubscribe_url }}`` (see ``campaign.py``). The preheader goes
into ``description`` (archive and previews).

Headers: ``X-API-Version: 2026-04-01`` on every call (pinned, so the behaviour does not drift
with the newsletter's setting; option ``api_version``), and on the create
``X-Buttondown-Live-Dangerously: true`` when the status is ``about_to_send``: from 2026-04-01,
"Creating an email with status 'about_to_send' ... requires the X-Buttondown-Live-Dangerously
header on first use per API key" (``enums.json`` ``sending_requires_confirmation``, which is
AuthExpired here, with a hint, should it still come).

Exactly once: the create carries ``X-Idempotency-Key`` derived from the delivery key (docs
``api-idempotency-keys``: a repeat "will return the same response as if we sent the request
only once"; how long Buttondown keeps a key is not documented), and the email carries
``metadata.syndicate_delivery`` = the delivery key. An ambiguous answer to the create (a lost
answer, 502/503/504) is OutcomeUnknown; before any later attempt the engine asks ``lookup``,
which reads the emails created since the day before the first attempt, **newest first**
(``ordering=-creation_date&creation_date__start=...``; the API's default order is oldest first,
so page 1 of a plain ``GET /v1/emails`` is the newsletter's oldest emails). Buttondown itself
refuses a second email with the same subject (``email_duplicate``); that answer is resolved the
same way: our own earlier email is a success, anything else is Permanent (a Duplicate).

Options: ``api_key_env`` (the API key from Settings -> API), ``api_base`` (default
``https://api.buttondown.com``), ``api_version`` (default 2026-04-01), ``schedule_after``,
``archival_mode`` (``enabled``, ``disabled``, ``enabled_for_subscribers``, ...: who sees it in
the archive), ``email_type`` (deprecated by Buttondown in favour of ``archival_mode`` and
``filters``; still sent when set), ``template`` (e.g. ``naked``: our HTML is the whole email,
no Buttondown scaffolding; a paid feature), ``timeout``. Auth: ``Authorization: Token <key>``.
Errors are ``{"code", "detail"}``, validation errors a 422 whose ``detail`` lists ``{type, loc,
msg}``; 429 carries Retry-After.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from syndicate.providers import campaign
from syndicate.providers.base import Duplicate, Job, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider

UNSUB_TAG = "{{ unsubscribe_url }}"
HTML_MODE = "<!-- buttondown-editor-mode: fancy -->\n"
KEY_FIELD = "syndicate_delivery"
API_VERSION = "2026-04-01"
CONFIRMATION_CODE = "sending_requires_confirmation"
MAX_IDEMPOTENCY_KEY = 200  # docs api-idempotency-keys: "up to 200 characters"
LOOKUP_PAGES = 5  # pages of 100 read newest first: far more than a day's emails


def idempotency_key(delivery_key: str) -> str:
    """The create's X-Idempotency-Key: the delivery key, hashed where it is too long."""
    key = f"syndicate-{delivery_key}"
    return key if len(key) <= MAX_IDEMPOTENCY_KEY else f"syndicate-{hashlib.sha256(key.encode()).hexdigest()}"


class ButtondownProvider(HttpProvider):
    name = "buttondown"
    service = "Buttondown"
    default_api_base = "https://api.buttondown.com"
    # An ambiguous create is settled by lookup (metadata carries the delivery key), not resent blind.
    looks_up = True
    dedup_window = campaign.LOOKUP_WINDOW

    def auth_headers(self) -> dict[str, str]:
        # The pinned version travels with the credentials: every call speaks the same API.
        return {"Authorization": f"Token {self.secret('api_key_env', 'API key')}",
                "X-API-Version": str(self.options.get("api_version") or API_VERSION)}

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403) or info.code == CONFIRMATION_CODE

    def is_duplicate(self, resp, info) -> bool:
        return info.code == "email_duplicate"

    def parse_error(self, resp) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and "detail" in data:
            detail = data["detail"]
            if isinstance(detail, list):  # validation: one entry per invalid field
                detail = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
                                   if isinstance(item, dict) else str(item) for item in detail)
            if data.get("code") == CONFIRMATION_CODE:
                detail = (f"{detail} (this API key must confirm live sending once: Syndicate sends "
                          f"X-Buttondown-Live-Dangerously; check option api_version and any proxy in between)")
            return ErrorInfo(message=str(detail), code=data.get("code"))
        return super().parse_error(resp)

    def send(self, job: Job) -> SendResult:
        payload = job.payload
        html, _, _ = campaign.with_merge_tag(payload, UNSUB_TAG)
        body: dict[str, Any] = {"subject": payload["subject"], "body": HTML_MODE + html,
                                "description": payload.get("preheader") or "",
                                "metadata": {KEY_FIELD: job.key}, "status": "about_to_send"}
        at = campaign.send_time(self.options)
        if at is not None:
            body.update(status="scheduled", publish_date=campaign.iso(at))
        for option in ("archival_mode", "email_type", "template"):
            if self.options.get(option):
                body[option] = str(self.options[option])
        headers = {"X-Idempotency-Key": idempotency_key(job.key)}
        if body["status"] == "about_to_send":
            headers["X-Buttondown-Live-Dangerously"] = "true"
        try:
            resp = self.request("POST", "/v1/emails", json=body, headers=headers, what="creating the email")
        except Duplicate:
            found = self.lookup(job)  # our own email, whose answer was lost?
            if found is None:
                raise
            return found
        return self._result(self.json_of(resp))

    def lookup(self, job: Job) -> SendResult | None:
        """The email an earlier attempt of JOB created: among those created since the day before
        the first attempt, newest first, the one whose metadata carries the delivery key."""
        since = (job.first_attempt_at or datetime.now(UTC)) - timedelta(days=1)
        params: dict[str, Any] | None = {"ordering": "-creation_date",
                                         "creation_date__start": since.astimezone(UTC).date().isoformat(),
                                         "excluded_fields": "body"}
        path = "/v1/emails"
        for _ in range(LOOKUP_PAGES):
            data = self.json_of(self.request("GET", path, params=params,
                                             what="looking for this delivery's email"))
            for item in data.get("results") or []:
                if isinstance(item, dict) and (item.get("metadata") or {}).get(KEY_FIELD) == job.key:
                    return self._result(item, found_by="lookup")
            path, params = data.get("next"), None  # the next page's URL carries the query
            if not path or not str(path).startswith(self.api_base + "/"):
                break  # (never send the key to another host)
        return None

    @staticmethod
    def _result(email: dict[str, Any], **extra: Any) -> SendResult:
        return SendResult(ref=str(email.get("id")) if email.get("id") else None, url=email.get("absolute_url"),
                          details={"status": email.get("status"), "publish_date": email.get("publish_date"), **extra})

    def check(self) -> str:
        data = self.json_of(self.request("GET", "/v1/newsletters", what="reading the newsletter"))
        items = data.get("results") or []
        first = items[0] if items and isinstance(items[0], dict) else {}
        return f"Buttondown newsletter {first.get('name') or first.get('username') or '?'!r} ({self.api_base})"

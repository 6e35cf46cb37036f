"""Buttondown: one email per delivery, sent (or scheduled) to the newsletter's subscribers.

``POST /v1/emails`` ``{subject, body, status, metadata, description}`` with ``status``
``about_to_send`` (Buttondown starts sending within minutes) or ``scheduled`` with a
``publish_date`` when option ``schedule_after`` (minutes) is set. The body is our HTML,
marked ``<!-- buttondown-editor-mode: fancy -->`` so Buttondown takes it as HTML rather than
Markdown (whose indented lines would become code blocks); the footer's unsubscribe link
becomes Buttondown's ``{{ unsubscribe_url }}`` (see ``campaign.py``). The preheader goes
into ``description`` (archive and previews).

Exactly once: the email carries ``metadata.syndicate_delivery`` = the delivery key, and a
send first looks through the newest emails (``GET /v1/emails``) for it. Buttondown itself
refuses a second email with the same subject (error code ``email_duplicate``); that answer
is resolved the same way: our own earlier email is a success, anything else is Permanent.

Options: ``api_key_env`` (the API key from Settings -> API), ``api_base`` (default
``https://api.buttondown.com``), ``schedule_after``, ``email_type`` (``public``, ``private``
or ``premium``; Buttondown's default when unset), ``timeout``. Auth: ``Authorization: Token
<key>``. Errors are ``{"code", "detail"}``, validation errors a 422 whose ``detail`` lists
``{type, loc, msg}``; 429 carries Retry-After.
"""

from __future__ import annotations

from typing import Any

from syndicate.providers import campaign
from syndicate.providers.base import Job, Permanent, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider

UNSUB_TAG = "{{ unsubscribe_url }}"
HTML_MODE = "<!-- buttondown-editor-mode: fancy -->\n"
KEY_FIELD = "syndicate_delivery"


class ButtondownProvider(HttpProvider):
    name = "buttondown"
    service = "Buttondown"
    default_api_base = "https://api.buttondown.com"
    deduplicates = True  # metadata carries the delivery key; a retry finds the email a lost answer made
    dedup_window = campaign.LOOKUP_WINDOW  # the lookup reads only the newest campaigns

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.secret('api_key_env', 'API key')}"}

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403)

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
            return ErrorInfo(message=str(detail), code=data.get("code"))
        return super().parse_error(resp)

    def send(self, job: Job) -> SendResult:
        found = self.find(job.key)
        if found is not None:
            return self._result(found)
        payload = job.payload
        html, _, _ = campaign.with_merge_tag(payload, UNSUB_TAG)
        body: dict[str, Any] = {"subject": payload["subject"], "body": HTML_MODE + html,
                                "description": payload.get("preheader") or "",
                                "metadata": {KEY_FIELD: job.key}, "status": "about_to_send"}
        at = campaign.send_time(self.options)
        if at is not None:
            body.update(status="scheduled", publish_date=campaign.iso(at))
        if self.options.get("email_type"):
            body["email_type"] = str(self.options["email_type"])
        try:
            resp = self.request("POST", "/v1/emails", json=body, what="creating the email")
        except Permanent as exc:
            if "duplicate" not in str(exc).lower():
                raise
            found = self.find(job.key)  # our own email, whose answer was lost?
            if found is None:
                raise
            return self._result(found)
        return self._result(self.json_of(resp))

    def find(self, key: str) -> dict[str, Any] | None:
        data = self.json_of(self.request("GET", "/v1/emails", what="looking for this delivery's email"))
        for item in data.get("results") or []:
            if isinstance(item, dict) and (item.get("metadata") or {}).get(KEY_FIELD) == key:
                return item
        return None

    @staticmethod
    def _result(email: dict[str, Any]) -> SendResult:
        return SendResult(ref=str(email.get("id")) if email.get("id") else None, url=email.get("absolute_url"),
                          details={"status": email.get("status"), "publish_date": email.get("publish_date")})

    def check(self) -> str:
        data = self.json_of(self.request("GET", "/v1/newsletters", what="reading the newsletter"))
        items = data.get("results") or []
        first = items[0] if items and isinstance(items[0], dict) else {}
        return f"Buttondown newsletter {first.get('name') or first.get('username') or '?'!r} ({self.api_base})"

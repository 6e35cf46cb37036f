"""SendGrid (Twilio SendGrid v3): Mail Send for the tool's own list, Single Sends for SendGrid's.

Two providers, one account and one error shape:

``sendgrid`` (direct send, ``batching.py``): ``POST /v3/mail/send`` with one
personalization per recipient (at most 1000 per request, SendGrid's limit on both
personalizations and recipients), each carrying its own ``List-Unsubscribe`` headers, the
recipient's unsubscribe token as a ``substitutions`` value (the shared body holds the tag
``%syndicate_unsubscribe_token%``) and ``custom_args`` naming the delivery. SendGrid answers
202 with an ``X-Message-Id`` for the whole request: every recipient is then ``sent``.
One bad address never fails the batch. SendGrid refuses the whole request for it, naming
``personalizations.N.to.M.email``; addresses that are not addresses at all never get here
(``email.recipients.wanted_recipients`` skips them, with a warning), and a recipient SendGrid
still refuses by name is recorded ``failed`` while the rest of the batch is sent once more
(nothing went out on a 400). Open, click and subscription tracking are turned off per message (privacy by default);
option ``asm_group_id`` adds an unsubscribe group (``asm``) so SendGrid also honours that
group's suppressions.

``sendgrid_singlesend`` (campaign, ``campaign.py``): ``POST /v3/marketing/singlesends``
(``name`` = the delivery key; ``send_to`` the option ``list_ids`` / ``segment_ids``, or the
whole contact base with ``send_to_all = true``; ``email_config`` subject, html_content,
plain_content, ``sender_id``, ``suppression_group_id``), then
``PUT /v3/marketing/singlesends/{id}/schedule`` ``{send_at: "now" | ISO 8601}``. Our footer
link becomes ``{{{unsubscribe}}}``. An ambiguous answer (a lost answer, 502/503/504) is
OutcomeUnknown; before any later attempt the engine asks ``lookup``, which searches
(``POST /v3/marketing/singlesends/search``) for the Single Send named by the delivery key: a
scheduled or triggered one is the result, a draft is scheduled by the retry instead of making
a second.

Options: ``api_key_env`` (Settings -> API Keys; "Mail Send" access for ``sendgrid``,
"Marketing" access for ``sendgrid_singlesend``), ``api_base`` (default
``https://api.sendgrid.com``; ``https://api.eu.sendgrid.com`` for EU-pinned accounts),
``timeout``; direct: ``batch_size``, ``asm_group_id``; Single Sends: ``list_ids``,
``segment_ids``, ``send_to_all``, ``sender_id`` (Marketing -> Senders), ``suppression_group_id``
(Suppressions -> Unsubscribe Groups), ``schedule_after``. Auth: ``Authorization: Bearer
<key>``. Errors are ``{"errors": [{"message", "field", "help"}]}``; a 429 carries
``X-RateLimit-Reset`` (epoch seconds).
"""

from __future__ import annotations

import re
from typing import Any

from syndicate.providers import campaign
from syndicate.providers.base import Job, Permanent, SendResult
from syndicate.providers.batching import BatchAnswer, Content, DirectSendProvider, Outcome, Recipient
from syndicate.providers.http import ErrorInfo, HttpProvider

UNSUB_TAG = "{{{unsubscribe}}}"
PREFERENCES_TAG = "{{{unsubscribe_preferences}}}"  # the unsubscribe group preferences page
DONE_STATUSES = {"scheduled", "triggered"}
# A refused recipient, as SendGrid names it in errors[].field: personalizations.3.to.0.email
RECIPIENT_FIELD = re.compile(r"^personalizations\.(\d+)\.(?:to|cc|bcc)\b")


class _SendGrid(HttpProvider):
    """What both SendGrid providers share: host, auth, error shape."""

    service = "SendGrid"
    default_api_base = "https://api.sendgrid.com"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key_env', 'API key')}"}

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403)

    def parse_error(self, resp) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        errors = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errors, list) and errors:
            parts = []
            for item in errors[:3]:
                if isinstance(item, dict) and item.get("message"):
                    parts.append(f"{item['field']}: {item['message']}" if item.get("field") else str(item["message"]))
            if parts:
                return ErrorInfo(message="; ".join(parts))
        return super().parse_error(resp)

    def scopes(self) -> list[str]:
        data = self.json_of(self.request("GET", "/v3/scopes", what="reading the API key's scopes"))
        return [str(s) for s in data.get("scopes") or []]


class SendGridProvider(_SendGrid, DirectSendProvider):
    """Direct send: ``POST /v3/mail/send``, one personalization per recipient."""

    name = "sendgrid"
    batch_limit = 1000
    token_placeholder = "%syndicate_unsubscribe_token%"
    # Mail Send takes no idempotency key, and a 5xx can come after SendGrid queued the request:
    # its recipients may have the message, so they are `unknown`, never resent blind (C3).
    server_errors_may_have_sent = True

    def send_batch(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        refused: dict[str, Outcome] = {}
        for retry in (False, True):  # once more without the recipients SendGrid refused by name
            kept = [r for r in batch if r.address not in refused]
            if self._book is not None:  # settled now: never issued, never "unknown" after a timeout
                self._book.answer(refused, count=False)
            if not kept:
                return BatchAnswer(dict(refused), details={"recipients": 0, "refused": len(refused)})
            try:
                message_id = self._mail_send(job, content, kept)
            except Permanent as exc:
                named = self._refused_recipients(exc, kept)
                if retry or not named:
                    raise
                refused.update(named)
                continue
            outcomes = {r.address: Outcome("sent", message_id=message_id) for r in kept}
            return BatchAnswer({**outcomes, **refused},
                               details={"x_message_id": message_id, "recipients": len(kept), "refused": len(refused)})
        raise AssertionError("unreachable")

    def error_for(self, resp, **kwargs):
        error = super().error_for(resp, **kwargs)
        error.fields = _error_fields(resp)  # which recipients SendGrid refused, if any
        return error

    @staticmethod
    def _refused_recipients(exc: Permanent, kept: list[Recipient]) -> dict[str, Outcome]:
        named: dict[str, Outcome] = {}
        for field, message in getattr(exc, "fields", []):
            m = RECIPIENT_FIELD.match(field or "")
            if m and int(m.group(1)) < len(kept):
                named[kept[int(m.group(1))].address] = Outcome("failed", code=exc.status,
                                                               error=f"SendGrid: {field}: {message}")
        return named

    def _mail_send(self, job: Job, content: Content, batch: list[Recipient]) -> str | None:
        name, address = campaign.sender({"from": content.sender})
        body: dict[str, Any] = {
            "personalizations": [
                {"to": [{"email": r.address}], "headers": r.headers,
                 "substitutions": {self.token_placeholder: r.token},
                 "custom_args": {"syndicate_delivery": job.key}}
                for r in batch
            ],
            "from": {"email": address, **({"name": name} if name else {})},
            "subject": content.subject,
            "content": [{"type": "text/plain", "value": content.text}, {"type": "text/html", "value": content.html}],
            "tracking_settings": {"click_tracking": {"enable": False, "enable_text": False},
                                  "open_tracking": {"enable": False},
                                  "subscription_tracking": {"enable": False}},
        }
        if content.reply_to:
            body["reply_to"] = {"email": campaign.reply_address({"reply_to": content.reply_to})}
        if self.options.get("asm_group_id"):
            body["asm"] = {"group_id": int(self.options["asm_group_id"])}
        resp = self.request("POST", "/v3/mail/send", json=body, what=f"sending a batch of {len(batch)}")
        return resp.headers.get("X-Message-Id")

    def check(self) -> str:
        scopes = self.scopes()
        can = "mail.send" in scopes
        return (f"SendGrid {self.api_base}: API key with {len(scopes)} scopes; "
                f"mail.send {'granted' if can else 'MISSING'}")


class SendGridSingleSendProvider(_SendGrid):
    """Campaign: a Single Send to SendGrid Marketing contacts."""

    name = "sendgrid_singlesend"
    looks_up = True  # the Single Send's name is the delivery key: lookup finds what a lost answer made
    dedup_window = campaign.LOOKUP_WINDOW

    def lookup(self, job: Job) -> SendResult | None:
        """The Single Send an earlier attempt scheduled; None when there is none or only a draft
        (``send`` then schedules the draft instead of creating another)."""
        found = self.find(job.key)
        if found is None or found.get("status") not in DONE_STATUSES:
            return None
        return SendResult(ref=str(found["id"]), details={"status": found.get("status"), "found_by": "lookup"})

    def send(self, job: Job) -> SendResult:
        found = self.find(job.key) if job.attempt > 1 else None  # a first attempt made nothing yet
        if found is None:
            found = self.create(job)
        single_id = str(found["id"])
        status = found.get("status")
        if status not in DONE_STATUSES:
            at = campaign.send_time(self.options)
            resp = self.request("PUT", f"/v3/marketing/singlesends/{single_id}/schedule",
                                json={"send_at": campaign.iso(at) if at else "now"}, what="scheduling the Single Send")
            status = self.json_of(resp).get("status") or "scheduled"
        return SendResult(ref=single_id, details={"status": status})

    def find(self, key: str) -> dict[str, Any] | None:
        resp = self.request("POST", "/v3/marketing/singlesends/search", idempotent=True, json={"name": key},
                            params={"page_size": 100}, what="looking for this delivery's Single Send")
        for item in self.json_of(resp).get("result") or []:
            if isinstance(item, dict) and item.get("name") == key:
                return item
        return None

    def create(self, job: Job) -> dict[str, Any]:
        payload = job.payload
        html, text, _ = campaign.with_merge_tag(payload, UNSUB_TAG, preferences_tag=PREFERENCES_TAG)
        send_to: dict[str, Any]
        if self.options.get("send_to_all"):
            send_to = {"all": True}
        else:
            send_to = {"list_ids": [str(i) for i in self.options.get("list_ids") or []],
                       "segment_ids": [str(i) for i in self.options.get("segment_ids") or []]}
            if not send_to["list_ids"] and not send_to["segment_ids"]:
                raise Permanent(f"SendGrid channel {self.channel_name!r}: set option list_ids, segment_ids "
                                f"or send_to_all")
        config: dict[str, Any] = {
            "subject": payload["subject"], "html_content": html, "plain_content": text,
            "generate_plain_content": False, "editor": "code",
            "sender_id": int(self.option("sender_id")),
            "suppression_group_id": int(self.option("suppression_group_id")),
        }
        body = {"name": job.key, "send_to": send_to, "email_config": config}
        return self.json_of(self.request("POST", "/v3/marketing/singlesends", json=body,
                                         what="creating the Single Send"))

    def check(self) -> str:
        scopes = self.scopes()
        marketing = sorted(s for s in scopes if s.startswith("marketing."))
        return (f"SendGrid {self.api_base}: API key with {len(scopes)} scopes; "
                + (f"{len(marketing)} marketing scopes" if marketing else "no marketing scopes (Single Sends need them)"))


def _error_fields(resp) -> list[tuple[str, str]]:
    """(field, message) of each entry of SendGrid's ``{"errors": [...]}``."""
    try:
        data = resp.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [(str(e.get("field") or ""), str(e.get("message") or "")) for e in errors or [] if isinstance(e, dict)]

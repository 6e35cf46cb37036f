"""Mailchimp (Marketing API 3.0): one regular campaign per delivery, sent to an audience.

Steps: ``POST /3.0/campaigns`` (type ``regular``, ``recipients.list_id`` = option
``audience_id``, ``settings``: subject_line, preview_text, title, from_name, reply_to), then
``PUT /3.0/campaigns/{id}/content`` ``{html, plain_text}``, then
``POST /3.0/campaigns/{id}/actions/send`` -- or ``/actions/schedule`` ``{schedule_time}``
when option ``schedule_after`` (minutes) is set, rounded up to the quarter hour as Mailchimp
requires. Our footer's unsubscribe link becomes ``*|UNSUB|*`` (see ``campaign.py``).
Open and click tracking are turned off (privacy by default; option ``tracking = true`` turns
them on), and so is Mailchimp's auto footer (option ``auto_footer``): our footer already
carries the postal address and the unsubscribe link.

The subject line is cut to 150 characters (at a word, with "…"): Mailchimp refuses a longer
one and the campaign fails (VulcanJS/Vulcan PR #783). Before the send (or schedule) the
campaign's ``GET /3.0/campaigns/{id}/send-checklist`` is read: when ``is_ready`` is false (no
unsubscribe link, no address, ...) the delivery fails Permanent with the checklist's own
words, instead of the bare 400 "Your Campaign is not ready to send." of ``actions/send``
(mailchimp/APIv3-examples#40). 401 is AuthExpired; 403 is Permanent with Mailchimp's detail
(Mailchimp also says 403 for plan and compliance refusals, which new credentials do not fix).

Exactly once: the campaign's internal title is the delivery key. An ambiguous answer (a lost
answer, 502/503/504) is OutcomeUnknown, and before any later attempt the engine asks
``lookup``: the audience's newest campaigns (``GET /3.0/campaigns?list_id=...``, newest first)
are searched for that title; one already scheduled, sending or sent is the delivery's result,
and a ``save`` draft is resumed by ``send`` (content and send again, both safe to repeat before
sending). So a retry never makes a second campaign.

Options: ``api_key_env`` (an API key from Account -> Extras -> API keys; its suffix ``-us21``
names the data center), ``audience_id`` (Audience -> Settings -> Audience name and
defaults -> Audience ID), ``segment_id`` (a saved segment, optional), ``api_base`` (default
``https://<dc>.api.mailchimp.com``), ``schedule_after``, ``tracking``, ``auto_footer``,
``timeout``. Auth is HTTP Basic ``anystring:<key>``. Errors are RFC 7807 problems
(``{type, title, status, detail, instance}``); Mailchimp answers 429 when more than 10
connections are open at once (no reset header: the engine backs off).
"""

from __future__ import annotations

import base64
from typing import Any

from syndicate.providers import campaign
from syndicate.providers.base import Job, Permanent, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider
from syndicate.render.textlength import char_length, truncate_to

UNSUB_TAG = "*|UNSUB|*"
PREFERENCES_TAG = "*|UPDATE_PROFILE|*"  # Mailchimp's "update profile" page
DONE_STATUSES = {"schedule", "sending", "sent"}
LOOKUP_COUNT = 100  # newest campaigns of the audience searched for the delivery key
MAX_SUBJECT = 150  # "Mailchimp limits email subject to 150 characters" (VulcanJS/Vulcan PR #783)


class MailchimpProvider(HttpProvider):
    name = "mailchimp"
    service = "Mailchimp"
    looks_up = True  # the delivery key in settings.title finds a campaign a lost answer made
    dedup_window = campaign.LOOKUP_WINDOW  # the lookup reads only the newest campaigns

    @property
    def api_base(self) -> str:
        base = self.options.get("api_base")
        if base:
            return str(base).rstrip("/")
        key = self.secret("api_key_env", "API key")
        dc = key.rpartition("-")[2] if "-" in key else ""
        if not dc.isalnum():
            raise Permanent(f"Mailchimp channel {self.channel_name!r}: the API key has no data-center suffix "
                            f"(like -us21); set option api_base")
        return f"https://{dc}.api.mailchimp.com"

    def auth_headers(self) -> dict[str, str]:
        key = self.secret("api_key_env", "API key")
        token = base64.b64encode(f"anystring:{key}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


    def parse_error(self, resp) -> ErrorInfo:
        """Mailchimp's problem: ``detail``, plus each ``errors`` entry as "field: message"."""
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not (data.get("detail") or data.get("title")):
            return super().parse_error(resp)
        parts = [str(data.get("detail") or data.get("title"))]
        for item in data.get("errors") or []:
            if isinstance(item, dict) and item.get("message"):
                parts.append(f"{item['field']}: {item['message']}" if item.get("field") else str(item["message"]))
        return ErrorInfo(message="; ".join(parts), code=data.get("title"))

    # -- the send ---------------------------------------------------------------------------------

    def lookup(self, job: Job) -> SendResult | None:
        """The campaign an earlier attempt sent or scheduled; None when there is none, or only a
        draft (``send`` then resumes the draft instead of creating another)."""
        found = self.find(str(self.option("audience_id")), job.key)
        if found is None or found.get("status") not in DONE_STATUSES:
            return None
        return SendResult(ref=str(found["id"]), url=found.get("long_archive_url") or found.get("archive_url"),
                          details={"status": found.get("status"), "web_id": found.get("web_id"), "found_by": "lookup"})

    def send(self, job: Job) -> SendResult:
        audience = str(self.option("audience_id"))
        # A first attempt made nothing yet; a later one may find its own draft (or more).
        found = self.find(audience, job.key) if job.attempt > 1 else None
        if found is None:
            found = self.create(audience, job)
        campaign_id = str(found["id"])
        status = found.get("status")
        if status not in DONE_STATUSES:
            if status not in (None, "save"):
                raise Permanent(f"Mailchimp campaign {campaign_id} for this delivery is {status!r}; "
                                f"resolve it in Mailchimp")
            html, text, _ = campaign.with_merge_tag(job.payload, UNSUB_TAG, preferences_tag=PREFERENCES_TAG)
            self.request("PUT", f"/3.0/campaigns/{campaign_id}/content", idempotent=True,
                         json={"html": html, "plain_text": text}, what="setting the campaign content")
            self.ready(campaign_id)
            at = campaign.send_time(self.options, quantum_minutes=15)
            if at is None:
                self.request("POST", f"/3.0/campaigns/{campaign_id}/actions/send", what="sending the campaign")
                status = "sending"
            else:
                self.request("POST", f"/3.0/campaigns/{campaign_id}/actions/schedule",
                             json={"schedule_time": campaign.iso(at)}, what="scheduling the campaign")
                status = "schedule"
        details: dict[str, Any] = {"status": status, "web_id": found.get("web_id")}
        return SendResult(ref=campaign_id, url=found.get("long_archive_url") or found.get("archive_url"),
                          details=details)

    def ready(self, campaign_id: str) -> None:
        """Mailchimp's send checklist for the campaign; Permanent with its errors unless ready."""
        data = self.json_of(self.request("GET", f"/3.0/campaigns/{campaign_id}/send-checklist",
                                         what="reading the send checklist"))
        if data.get("is_ready", True):
            return
        problems = [f"{item.get('heading') or 'problem'}: {item.get('details') or ''}".strip(": ")
                    for item in data.get("items") or [] if isinstance(item, dict) and item.get("type") == "error"]
        raise Permanent(self._message(f"campaign {campaign_id} is not ready to send: "
                                      + ("; ".join(problems) or "see its checklist in Mailchimp")))

    def find(self, audience: str, key: str) -> dict[str, Any] | None:
        """The audience's campaign titled KEY (this delivery's), if one exists."""
        params = {"list_id": audience, "sort_field": "create_time", "sort_dir": "DESC", "count": LOOKUP_COUNT,
                  "fields": "campaigns.id,campaigns.web_id,campaigns.status,campaigns.settings.title,"
                            "campaigns.archive_url,campaigns.long_archive_url"}
        data = self.json_of(self.request("GET", "/3.0/campaigns", params=params,
                                         what="looking for this delivery's campaign"))
        for item in data.get("campaigns") or []:
            if (item.get("settings") or {}).get("title") == key:
                return item
        return None

    def create(self, audience: str, job: Job) -> dict[str, Any]:
        payload = job.payload
        from_name, _ = campaign.sender(payload)
        recipients: dict[str, Any] = {"list_id": audience}
        if self.options.get("segment_id"):
            recipients["segment_opts"] = {"saved_segment_id": int(self.options["segment_id"])}
        tracking = bool(self.options.get("tracking", False))
        body = {
            "type": "regular",
            "recipients": recipients,
            "settings": {
                "subject_line": truncate_to(payload["subject"], MAX_SUBJECT, char_length),
                "preview_text": payload.get("preheader") or "",
                "title": job.key,
                "from_name": from_name or self.settings.site.name,
                "reply_to": campaign.reply_address(payload),
                "auto_footer": bool(self.options.get("auto_footer", False)),
            },
            "tracking": {"opens": tracking, "html_clicks": tracking, "text_clicks": tracking},
        }
        return self.json_of(self.request("POST", "/3.0/campaigns", json=body, what="creating the campaign"))

    def check(self) -> str:
        ping = self.json_of(self.request("GET", "/3.0/ping", what="pinging the API"))
        line = f"Mailchimp {self.api_base}: {ping.get('health_status', 'ok')}"
        audience = self.options.get("audience_id")
        if audience:
            data = self.json_of(self.request("GET", f"/3.0/lists/{audience}",
                                             params={"fields": "id,name,stats.member_count"},
                                             what="reading the audience"))
            members = (data.get("stats") or {}).get("member_count")
            line += f"; audience {data.get('name', audience)!r}" + (f" ({members} members)" if members is not None
                                                                     else "")
        return line


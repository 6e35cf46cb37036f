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

Exactly once: the campaign's internal title is the delivery key. Before creating, the
audience's newest campaigns are searched for that title (``GET /3.0/campaigns?list_id=...``,
newest first), and a found campaign resumes from its status: ``save`` gets its content and
the send again (both safe to repeat before sending), ``schedule``/``sending``/``sent`` is
done. So a retry after an outcome-unknown timeout never makes a second campaign.

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

UNSUB_TAG = "*|UNSUB|*"
DONE_STATUSES = {"schedule", "sending", "sent"}
LOOKUP_COUNT = 100  # newest campaigns of the audience searched for the delivery key


class MailchimpProvider(HttpProvider):
    name = "mailchimp"
    service = "Mailchimp"
    deduplicates = True  # the delivery key in settings.title finds a campaign a lost answer made
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

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403) or super().is_auth_error(resp, info)

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

    def send(self, job: Job) -> SendResult:
        audience = str(self.option("audience_id"))
        found = self.find(audience, job.key)
        if found is None:
            found = self.create(audience, job)
        campaign_id = str(found["id"])
        status = found.get("status")
        if status not in DONE_STATUSES:
            if status not in (None, "save"):
                raise Permanent(f"Mailchimp campaign {campaign_id} for this delivery is {status!r}; "
                                f"resolve it in Mailchimp")
            html, text, _ = campaign.with_merge_tag(job.payload, UNSUB_TAG)
            self.request("PUT", f"/3.0/campaigns/{campaign_id}/content", idempotent=True,
                         json={"html": html, "plain_text": text}, what="setting the campaign content")
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
                "subject_line": payload["subject"],
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


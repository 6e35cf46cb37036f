"""Fake Mailchimp Marketing API 3.0: ping, lists, campaigns, content, send and schedule.

Auth: HTTP Basic with any user name and the API key as password (``anystring:KEY``). Errors
are Mailchimp's RFC 7807 problems ``{type, title, status, detail, instance}`` (400s add an
``errors`` list of ``{field, message}``); a 429 says "too many simultaneous connections" and
carries no reset header, as Mailchimp's does. Campaigns move ``save`` -> ``schedule`` |
``sending`` (-> ``sent``, see ``finish``). As on Mailchimp, a campaign can only be sent or
scheduled from ``save``, only with content whose HTML holds ``*|UNSUB|*``, and a schedule
time must be in the future on a quarter hour.

Mailchimp publishes no machine-readable schema, so the documented rules are encoded here, each
with its source: the subject line's 150 characters (``create_campaign``), the send checklist
(``GET /3.0/campaigns/{id}/send-checklist``, whose errors ``actions/send`` answers only as
400 "Your Campaign is not ready to send.").
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route

# VulcanJS/Vulcan PR #783: "Mailchimp limits email subject to 150 characters ... the Mailchimp
# campaign fails"; the API answers a longer subject_line as an invalid resource.
MAX_SUBJECT = 150


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MailchimpFake(FakeAPI):
    name = "mailchimp"
    API_KEY = "0123456789abcdef0123456789abcdef-us21"
    AUDIENCE_ID = "a1b2c3d4e5"
    AUDIENCE = {"id": AUDIENCE_ID, "name": "Harbor Wellness readers", "stats": {"member_count": 1250}}

    def reset_state(self) -> None:
        self.keys = {self.API_KEY}
        self.campaigns: dict[str, dict[str, Any]] = {}  # id -> campaign (with "content" once set)
        self.sends: list[str] = []  # campaign ids, once per send or schedule action
        self.members: list[dict[str, Any]] = []  # {"email_address", "status"} (the audience's people)

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key_env": "SYN_FAKE_MAILCHIMP_KEY", "audience_id": self.AUDIENCE_ID}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_MAILCHIMP_KEY": self.API_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

    def finish(self) -> None:
        """Every campaign that is sending has been sent."""
        with self.lock:
            for item in self.campaigns.values():
                if item["status"] == "sending":
                    item["status"] = "sent"

    # -- the API's shapes -----------------------------------------------------------------------

    def error(self, status: int, message: str, code: Any = None, errors: list | None = None) -> Reply:
        titles = {400: "Invalid Resource", 401: "API Key Invalid", 403: "Forbidden", 404: "Resource Not Found",
                  405: "Method Not Allowed", 429: "Too Many Requests"}
        body = {"type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": code or titles.get(status, "Internal Server Error"), "status": status,
                "detail": message, "instance": str(uuid.uuid4())}
        if errors:
            body["errors"] = errors
        return reply(status, body)

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        if status == 400:
            return self.error(400, "The resource submitted could not be validated. For field-specific details, "
                                   "see the 'errors' array.",
                              errors=[{"field": "settings.reply_to", "message": "This value should be a valid email."}])
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        return self.error(429, "You have exceeded the limit of 10 simultaneous connections.")

    def authorize(self, req: Request) -> Reply | None:
        auth = req.header("authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                _user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                key = ""
            if key in self.keys:
                return None
        return self.error(401, "Your API key may be invalid, or you've attempted to access the wrong datacenter.")

    # -- routes ---------------------------------------------------------------------------------

    @route("GET", r"/3\.0/ping")
    def ping(self, req: Request) -> Reply:
        return reply(200, {"health_status": "Everything's Chimpy!"})

    @route("GET", r"/3\.0/lists/(?P<list_id>[^/]+)")
    def get_list(self, req: Request, list_id: str) -> Reply:
        if list_id != self.AUDIENCE_ID:
            return self.error(404, "The requested resource could not be found.")
        return reply(200, dict(self.AUDIENCE))

    @route("GET", r"/3\.0/lists/(?P<list_id>[^/]+)/members")
    def list_members(self, req: Request, list_id: str) -> Reply:
        """Members by ``status`` (subscribed, unsubscribed, cleaned, pending), paged by count/offset."""
        if list_id != self.AUDIENCE_ID:
            return self.error(404, "The requested resource could not be found.")
        status = req.query.get("status")
        if status not in (None, "subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"):
            return self.error(400, f"Invalid status: {status}")
        count, offset = min(int(req.query.get("count", 10)), 1000), int(req.query.get("offset", 0))
        with self.lock:
            chosen = [m for m in self.members if status is None or m["status"] == status]
        return reply(200, {"members": chosen[offset:offset + count], "total_items": len(chosen)})

    @route("GET", r"/3\.0/campaigns")
    def list_campaigns(self, req: Request) -> Reply:
        with self.lock:
            items = [c for c in self.campaigns.values()
                     if not req.query.get("list_id") or c["recipients"]["list_id"] == req.query["list_id"]]
        reverse = req.query.get("sort_dir", "DESC").upper() == "DESC"
        items.sort(key=lambda c: (c["create_time"], c["seq"]), reverse=reverse)
        count = min(int(req.query.get("count", 10)), 1000)
        return reply(200, {"campaigns": [self._public(c) for c in items[:count]], "total_items": len(items)})

    @route("POST", r"/3\.0/campaigns")
    def create_campaign(self, req: Request) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        errors = []
        if body.get("type") not in ("regular", "plaintext", "rss", "variate"):
            errors.append({"field": "type", "message": "Value is not one of the allowed values."})
        recipients = body.get("recipients") or {}
        settings = body.get("settings") or {}
        for field in ("subject_line", "from_name", "reply_to"):
            if not settings.get(field):
                errors.append({"field": f"settings.{field}", "message": "This value should not be blank."})
        if len(str(settings.get("subject_line") or "")) > MAX_SUBJECT:
            errors.append({"field": "settings.subject_line",
                           "message": f"This value is too long. It should have {MAX_SUBJECT} characters or less."})
        if settings.get("reply_to") and "@" not in settings["reply_to"]:
            errors.append({"field": "settings.reply_to", "message": "This value should be a valid email."})
        if errors:
            return self.error(400, "The resource submitted could not be validated. For field-specific details, "
                                   "see the 'errors' array.", errors=errors)
        if recipients.get("list_id") != self.AUDIENCE_ID:
            return self.error(400, f"The resource submitted could not be validated: invalid list id "
                                   f"{recipients.get('list_id')!r}.",
                              errors=[{"field": "recipients.list_id", "message": "Invalid list id."}])
        with self.lock:
            seq = self.next_id()
            campaign_id = uuid.uuid4().hex[:10]
            web_id = 1000 + seq
            item = {"id": campaign_id, "web_id": web_id, "seq": seq, "type": body["type"], "create_time": _now(),
                    "archive_url": f"{self.base_url}/archive/{web_id}",
                    "long_archive_url": f"{self.base_url}/archive/long/{campaign_id}",
                    "status": "save", "recipients": recipients, "settings": settings,
                    "tracking": body.get("tracking") or {"opens": True, "html_clicks": True, "text_clicks": True},
                    "content": None, "send_time": None}
            self.campaigns[campaign_id] = item
        return reply(200, self._public(item))

    @route("PUT", r"/3\.0/campaigns/(?P<cid>[^/]+)/content")
    def set_content(self, req: Request, cid: str) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        with self.lock:
            item = self.campaigns.get(cid)
            if item is None:
                return self.error(404, "The requested resource could not be found.")
            if item["status"] != "save":
                return self.error(400, "Cannot update the content of a campaign that has been sent or scheduled.")
            item["content"] = {"html": body.get("html"), "plain_text": body.get("plain_text")}
        return reply(200, {"html": body.get("html"), "plain_text": body.get("plain_text")})

    @route("GET", r"/3\.0/campaigns/(?P<cid>[^/]+)/send-checklist")
    def send_checklist(self, req: Request, cid: str) -> Reply:
        """The Marketing API's send checklist: ``{is_ready, items: [{type, id, heading, details}]}``
        (mailchimp-marketing-python ``CampaignsApi.get_send_checklist``)."""
        with self.lock:
            item = self.campaigns.get(cid)
            if item is None:
                return self.error(404, "The requested resource could not be found.")
            problems = self._checklist(item)
        items = [{"type": "error", "id": n, "heading": heading, "details": details}
                 for n, (heading, details) in enumerate(problems, start=1)]
        return reply(200, {"is_ready": not problems, "items": items or [
            {"type": "success", "id": 0, "heading": "Ready", "details": "Your campaign is ready to send."}]})

    @route("POST", r"/3\.0/campaigns/(?P<cid>[^/]+)/actions/send")
    def send_campaign(self, req: Request, cid: str) -> Reply:
        with self.lock:
            refused = self._not_ready(cid)
            if refused:
                return refused
            self.campaigns[cid]["status"] = "sending"
            self.campaigns[cid]["send_time"] = _now()
            self.sends.append(cid)
        return reply(204)

    @route("POST", r"/3\.0/campaigns/(?P<cid>[^/]+)/actions/schedule")
    def schedule_campaign(self, req: Request, cid: str) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        try:
            at = datetime.fromisoformat(str(body.get("schedule_time", "")).replace("Z", "+00:00"))
        except ValueError:
            return self.error(400, "Schedule time must be a valid ISO 8601 date and time.")
        if at.tzinfo is None or at.minute % 15 or at.second:
            return self.error(400, "Schedule time must be on the quarter-hour (:00, :15, :30, :45).")
        if at <= datetime.now(UTC):
            return self.error(400, "Schedule time must be in the future.")
        with self.lock:
            refused = self._not_ready(cid)
            if refused:
                return refused
            self.campaigns[cid]["status"] = "schedule"
            self.campaigns[cid]["send_time"] = at.isoformat()
            self.sends.append(cid)
        return reply(204)

    # -- helpers --------------------------------------------------------------------------------

    def _not_ready(self, cid: str) -> Reply | None:
        item = self.campaigns.get(cid)
        if item is None:
            return self.error(404, "The requested resource could not be found.")
        if item["status"] != "save":
            return self.error(400, f"This campaign cannot be sent: its status is {item['status']}.",
                              "Bad Request")
        if self._checklist(item):  # mailchimp/APIv3-examples#40: only this, no detail
            return self.error(400, "Your Campaign is not ready to send.", "Bad Request")
        return None

    @staticmethod
    def _checklist(item: dict[str, Any]) -> list[tuple[str, str]]:
        """What Mailchimp's checklist says is missing (compliance: an unsubscribe link)."""
        content = item["content"] or {}
        if not content.get("html"):
            return [("Content", "The campaign has no content.")]
        if "*|UNSUB|*" not in content["html"] and not item["settings"].get("auto_footer"):
            return [("Unsubscribe link", "Your campaign must include the *|UNSUB|* merge tag.")]
        return []

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("content", "seq")}

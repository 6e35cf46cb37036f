"""Fake Twilio SendGrid v3: Mail Send, Single Sends, and the API key's scopes.

Auth: ``Authorization: Bearer <key>``; errors are ``{"errors": [{"message", "field", "help"}]}``
(401 "The provided authorization grant is invalid, expired, or revoked"; 403 "access
forbidden"); a 429 carries X-RateLimit-Limit/-Remaining/-Reset (epoch seconds).

``POST /v3/mail/send`` enforces what SendGrid documents: 1..1000 personalizations and at
most 1000 recipients per request, each address once, a ``from``, a subject, ``text/plain``
before ``text/html``, string values in headers and custom_args, substitutions under 10,000
bytes. It answers 202 with ``X-Message-Id`` and "delivers" one message per recipient into
``fake.delivered`` (substitutions applied to subject and bodies, headers merged).

Strict: every Mail Send body is validated against the official ``POST /v3/mail/send`` request
body (``../shared/specs/sendgrid/tsg_mail_v3.json``), every Single Send create, search and
schedule body against ``tsg_mc_singlesends_v3.json`` (``SinglesendRequest``: name 1..100,
list_ids <= 50, segment_ids <= 10, ...); a violation answers 400 ``{"errors": [{"field",
"message"}]}`` naming each field as SendGrid does (``personalizations.1.to.0.email``). Every
recipient address is checked (the spec's ``format: email``; SendGrid's message "Does not contain
a valid address."), and ``fake.invalid_addresses`` are refused the same way (addresses SendGrid's
own check refuses though they look fine): one bad address fails the whole request, every bad one
listed.

Single Sends: create (201), search by name, schedule (``send_at`` "now" or a future ISO
time; refused without a sender, an unsubscribe group or custom URL, or an unsubscribe tag in
the HTML), read. ``fake.singlesends`` holds each once; ``fake.schedules`` one entry per
accepted schedule call.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from .server import FakeAPI, Fault, Reply, Request, reply, route
from .specs import openapi_problems, openapi_validator

MAIL_SPEC = "sendgrid/tsg_mail_v3.json"
MAIL_BODY = "/components/requestBodies/PostMailSend/content/application~1json/schema"
SINGLESEND_SPEC = "sendgrid/tsg_mc_singlesends_v3.json"
SCHEDULE_BODY = "/paths/~1v3~1marketing~1singlesends~1{id}~1schedule/put/requestBody/content/application~1json/schema"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
SCOPES = ["mail.send", "marketing.read", "marketing.send", "marketing.automation.read", "user.profile.read"]


class SendGridFake(FakeAPI):
    name = "sendgrid"
    API_KEY = "SG.fake-key-id.fake-key-secret"
    SENDER_ID = 1234567
    GROUP_ID = 4321
    LIST_ID = "4b6c2b1e-7d2a-4b8f-9c51-0a1b2c3d4e5f"

    def reset_state(self) -> None:
        self.keys = {self.API_KEY}
        self.delivered: list[dict[str, Any]] = []
        self.requests_accepted = 0
        self.singlesends: dict[str, dict[str, Any]] = {}
        self.schedules: list[str] = []
        self.invalid_addresses: set[str] = set()
        for spec, schema in ((MAIL_SPEC, MAIL_BODY), (SINGLESEND_SPEC, "SinglesendRequest"),
                             (SINGLESEND_SPEC, "SinglesendSearch"), (SINGLESEND_SPEC, SCHEDULE_BODY)):
            openapi_validator(spec, schema)  # strict from the start: fails without the specs

    def options(self) -> dict[str, Any]:
        """A Mail Send ("sendgrid") channel's options."""
        return {"api_base": self.base_url, "api_key_env": "SYN_FAKE_SENDGRID_KEY"}

    def single_send_options(self) -> dict[str, Any]:
        """A Single Sends ("sendgrid_singlesend") channel's: sender, unsubscribe group and audience too
        (settings refuse these on a Mail Send channel)."""
        return {**self.options(), "sender_id": self.SENDER_ID, "suppression_group_id": self.GROUP_ID,
                "list_ids": [self.LIST_ID]}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_SENDGRID_KEY": self.API_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

    # -- shapes ---------------------------------------------------------------------------------

    def error(self, status: int, message: str, code: Any = None, field: str | None = None) -> Reply:
        return reply(status, {"errors": [{"message": message, "field": field, "help": None}]})

    @staticmethod
    def refused(problems: list[str]) -> Reply:
        """A schema violation: one ``{field, message}`` per problem, as SendGrid lists them."""
        errors = []
        for problem in problems:
            field, _, message = problem.partition(": ")
            errors.append({"field": None if field == "(body)" else field, "message": message, "help": None})
        return reply(400, {"errors": errors})

    def bad_addresses(self, people: list) -> list[str]:
        """``personalizations.N.to.M.email: Does not contain a valid address.`` for each bad one."""
        problems = []
        for index, person in enumerate(people):
            for kind in ("to", "cc", "bcc"):
                for m, item in enumerate((person or {}).get(kind) or []):
                    email = str((item or {}).get("email") or "")
                    try:
                        validate_email(email, check_deliverability=False)
                        ok = email.lower() not in self.invalid_addresses
                    except EmailNotValidError:
                        ok = False
                    if not ok:
                        problems.append(f"personalizations.{index}.{kind}.{m}.email: Does not contain a valid address.")
        return problems

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "The provided authorization grant is invalid, expired, or revoked")
        if status == 403:
            return self.error(403, "access forbidden")
        if status == 400:
            return self.error(400, "The from address does not match a verified Sender Identity.", field="from")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "too many requests")
        answer.headers.update({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                               "X-RateLimit-Reset": str(int(time.time()) + retry_after)})
        return answer

    def authorize(self, req: Request) -> Reply | None:
        if req.bearer() in self.keys:
            return None
        return self.error(401, "The provided authorization grant is invalid, expired, or revoked")

    # -- Mail Send ------------------------------------------------------------------------------

    @route("GET", r"/v3/scopes")
    def scopes(self, req: Request) -> Reply:
        return reply(200, {"scopes": list(SCOPES)})

    @route("POST", r"/v3/mail/send")
    def mail_send(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "Bad Request", field=None)
        problems = openapi_problems(MAIL_SPEC, MAIL_BODY, body)
        if problems:
            return self.refused(problems)
        problems = self.bad_addresses(body["personalizations"])
        if problems:
            return self.refused(problems)
        people = body.get("personalizations")
        if not isinstance(people, list) or not people:
            return self.error(400, "You must have at least one personalization.", field="personalizations")
        if len(people) > MAX_PERSONALIZATIONS:
            return self.error(400, f"The personalization block is limited to 1000 personalizations per API "
                                   f"request. You have provided {len(people)} personalizations.",
                              field="personalizations")
        seen: set[str] = set()
        total = 0
        for index, person in enumerate(people):
            for kind in ("to", "cc", "bcc"):
                for item in person.get(kind) or []:
                    email = str((item or {}).get("email") or "").lower()
                    if "@" not in email:
                        return self.error(400, "Each to object must at least have an email address.",
                                          field=f"personalizations.{index}.{kind}")
                    if email in seen:
                        return self.error(400, "Each unique email address in the personalizations array should "
                                               "only be included once.", field=f"personalizations.{index}.{kind}")
                    seen.add(email)
                    total += 1
            if not person.get("to"):
                return self.error(400, "The to parameter is required for all personalization objects.",
                                  field=f"personalizations.{index}.to")
            for name in ("headers", "custom_args", "substitutions"):
                values = person.get(name) or {}
                if any(not isinstance(v, str) for v in values.values()):
                    return self.error(400, "Invalid type. Expected: string, given: not a string.",
                                      field=f"personalizations.{index}.{name}")
            if len(json.dumps(person.get("substitutions") or {})) >= 10000:
                return self.error(400, "The maximum total size of substitutions is 10000 bytes.",
                                  field=f"personalizations.{index}.substitutions")
        if total > MAX_RECIPIENTS:
            return self.error(400, "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
                              field="personalizations")
        if not (body.get("from") or {}).get("email"):
            return self.error(400, "The from object must be provided for every email send.", field="from")
        contents = body.get("content") or []
        types = [c.get("type") for c in contents]
        if not contents or any(not c.get("value") for c in contents):
            return self.error(400, "The content value must be a string at least one character in length.",
                              field="content")
        if "text/plain" in types and types.index("text/plain") != 0:
            return self.error(400, "If present, text/plain content must be first.", field="content")
        message_id = uuid.uuid4().hex[:22]
        with self.lock:
            for person in people:
                subs = person.get("substitutions") or {}
                subject = person.get("subject") or body.get("subject")
                if not subject:
                    return self.error(400, "The subject is required.", field="subject")
                parts = {c["type"]: c["value"] for c in contents}
                for tag, value in subs.items():
                    subject = subject.replace(tag, value)
                    parts = {k: v.replace(tag, value) for k, v in parts.items()}
                for item in person["to"]:
                    self.delivered.append({
                        "to": item["email"], "from": body["from"], "reply_to": body.get("reply_to"),
                        "subject": subject, "text": parts.get("text/plain"), "html": parts.get("text/html"),
                        "headers": {**(body.get("headers") or {}), **(person.get("headers") or {})},
                        "custom_args": {**(body.get("custom_args") or {}), **(person.get("custom_args") or {})},
                        "tracking_settings": body.get("tracking_settings"), "asm": body.get("asm"),
                        "message_id": message_id})
            self.requests_accepted += 1
        return reply(202, None, X_Message_Id=message_id)

    # -- Single Sends ---------------------------------------------------------------------------

    @route("POST", r"/v3/marketing/singlesends")
    def create_singlesend(self, req: Request) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        problems = openapi_problems(SINGLESEND_SPEC, "SinglesendRequest", body)
        if problems:
            return self.refused(problems)
        name = str(body.get("name") or "")
        if not name or len(name) > 100:
            return self.error(400, "name is required and must be at most 100 characters", field="name")
        send_to = body.get("send_to") or {}
        for list_id in send_to.get("list_ids") or []:
            if list_id != self.LIST_ID:
                return self.error(400, f"list_id {list_id} does not exist", field="send_to.list_ids")
        with self.lock:
            single_id = str(uuid.uuid4())
            now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            item = {"id": single_id, "name": name, "status": "draft", "categories": body.get("categories") or [],
                    "send_at": None, "send_to": send_to, "email_config": body.get("email_config") or {},
                    "created_at": now, "updated_at": now}
            self.singlesends[single_id] = item
        return reply(201, item)

    @route("POST", r"/v3/marketing/singlesends/search")
    def search_singlesends(self, req: Request) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        problems = openapi_problems(SINGLESEND_SPEC, "SinglesendSearch", body)
        if problems:
            return self.refused(problems)
        name = str(body.get("name") or "")
        with self.lock:
            found = [{k: item[k] for k in ("id", "name", "status", "categories", "send_at", "updated_at")}
                     for item in self.singlesends.values() if name.lower() in item["name"].lower()]
        size = int(req.query.get("page_size", 50))
        return reply(200, {"result": found[:size], "_metadata": {"self": req.path, "count": len(found)}})

    @route("GET", r"/v3/marketing/singlesends/(?P<sid>[^/]+)")
    def get_singlesend(self, req: Request, sid: str) -> Reply:
        item = self.singlesends.get(sid)
        return reply(200, item) if item else self.error(404, "resource not found", field="id")

    @route("PUT", r"/v3/marketing/singlesends/(?P<sid>[^/]+)/schedule")
    def schedule_singlesend(self, req: Request, sid: str) -> Reply:
        body = req.json if isinstance(req.json, dict) else {}
        problems = openapi_problems(SINGLESEND_SPEC, SCHEDULE_BODY, body)
        if problems:
            return self.refused(problems)
        with self.lock:
            item = self.singlesends.get(sid)
            if item is None:
                return self.error(404, "resource not found", field="id")
            if item["status"] != "draft":
                return self.error(400, f"cannot schedule a Single Send that is {item['status']}", field="status")
            config = item["email_config"]
            if not config.get("sender_id"):
                return self.error(400, "a sender_id is required to schedule", field="email_config.sender_id")
            if not (config.get("suppression_group_id") or config.get("custom_unsubscribe_url")):
                return self.error(400, "either suppression_group_id or custom_unsubscribe_url is required",
                                  field="email_config.suppression_group_id")
            html = config.get("html_content") or ""
            if "{{{unsubscribe}}}" not in html and "{{{unsubscribe_preferences}}}" not in html:
                return self.error(400, "html_content must contain an unsubscribe tag", field="email_config.html_content")
            send_at = body.get("send_at")
            if send_at != "now":
                try:
                    at = datetime.fromisoformat(str(send_at).replace("Z", "+00:00"))
                except ValueError:
                    return self.error(400, "send_at must be \"now\" or an ISO 8601 time", field="send_at")
                if at <= datetime.now(UTC):
                    return self.error(400, "send_at must be in the future", field="send_at")
            item["status"] = "scheduled"
            item["send_at"] = send_at if send_at != "now" else datetime.now(UTC).isoformat(timespec="seconds")
            self.schedules.append(sid)
        return reply(201, {"send_at": item["send_at"], "status": "scheduled"})

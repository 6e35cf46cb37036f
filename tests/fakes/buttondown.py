"""Fake Buttondown API: GET /v1/newsletters, GET and POST /v1/emails.

Auth: ``Authorization: Token <key>``; a wrong one answers 401 ``{"detail": "Invalid token."}``.
Errors are ``{"code", "detail"}`` (``ErrorMessage[EmailCreationErrorCode]``); a body that breaks
the schema answers 422 with a ``detail`` list of ``{type, loc, msg}`` (``ValidationErrorMessage``).

Strict, from the official description (``../shared/specs/buttondown/openapi.json`` and
``enums.json``):

* every ``POST /v1/emails`` body is validated against ``EmailInput`` (``additionalProperties:
  false``, the status, archival_mode, template and email_type enums, subject <= 2000);
* ``sending_requires_confirmation`` (enums.json ``EmailCreationErrorCode``): "Creating an email
  with status 'about_to_send' on API version 2026-04-01 or later requires the
  X-Buttondown-Live-Dangerously header on first use per API key." The version is the
  ``X-API-Version`` header, else the newsletter's pinned one (``fake.pinned_version``), else the
  latest (docs ``api-versioning``); ``status`` defaults to ``about_to_send`` (``EmailInput``);
* ``X-Idempotency-Key`` (docs ``api-idempotency-keys``: "up to 200 characters"; "it will return
  the same response as if we sent the request only once"): a repeated key replays the first
  answer and creates nothing;
* ``GET /v1/emails`` lists in the documented default order, ``ordering`` "default:
  creation_date", i.e. **oldest first**, 100 a page (``EmailPage``); ``ordering`` takes the
  spec's enum, ``creation_date__start`` (a date) keeps emails created after it.

As on Buttondown, an email with the subject of one already sent or on its way is refused with
code ``email_duplicate``; a ``scheduled`` email needs a future ``publish_date``.
``fake.emails`` holds each email once, in creation order; ``fake.seed_archive(n)`` adds N old
sent emails (a newsletter with a history).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route
from .specs import openapi_problems, openapi_validator, spec_file

SPEC = "buttondown/openapi.json"
LATEST_VERSION = "2026-04-01"
CONFIRMATION_VERSION = "2026-04-01"  # enums.json: "on API version 2026-04-01 or later"
IN_FLIGHT = {"about_to_send", "scheduled", "in_flight", "sent"}
PAGE_SIZE = 100
MAX_IDEMPOTENCY_KEY = 200  # docs api-idempotency-keys: "a randomly generated string of up to 200 characters"


def _orderings() -> set[str]:
    import json

    spec = json.loads(spec_file(SPEC).read_text(encoding="utf-8"))
    for param in spec["paths"]["/emails"]["get"]["parameters"]:
        if param["name"] == "ordering":
            return set(param["schema"]["allOf"][0]["enum"])
    raise KeyError("ordering")


class ButtondownFake(FakeAPI):
    name = "buttondown"
    API_KEY = "bd-fake-0a1b2c3d-4e5f"
    NEWSLETTER = {"id": "4f6a2b1c-0000-4000-8000-000000000001", "username": "harborwellness",
                  "name": "Harbor Wellness Notes"}

    def reset_state(self) -> None:
        self.keys = {self.API_KEY}
        self.emails: list[dict[str, Any]] = []
        self.subscribers: list[dict[str, Any]] = []  # {"email_address", "type"}
        self.pinned_version: str | None = None  # the newsletter's pinned API version (Settings -> API)
        self.confirmed_keys: set[str] = set()  # keys that sent X-Buttondown-Live-Dangerously once
        self.idempotent: dict[str, Reply] = {}  # X-Idempotency-Key -> the first answer
        openapi_validator(SPEC, "EmailInput")  # strict from the start: fails without the spec
        self.orderings = _orderings()

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key_env": "SYN_FAKE_BUTTONDOWN_KEY"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_BUTTONDOWN_KEY": self.API_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

    def seed_archive(self, count: int, *, days_ago: int = 400) -> None:
        """COUNT sent emails, the newest DAYS_AGO - COUNT days old: a newsletter with a past."""
        start = datetime.now(UTC) - timedelta(days=days_ago)
        with self.lock:
            for n in range(count):
                at = (start + timedelta(days=n)).isoformat()
                self.emails.append({"id": str(uuid.uuid4()), "creation_date": at, "modification_date": at,
                                    "publish_date": at, "subject": f"Archive issue {n + 1}", "body": "…",
                                    "status": "sent", "metadata": {}, "description": "", "email_type": "public",
                                    "slug": f"archive-{n + 1}", "absolute_url": f"{self.base_url}/archive/a{n}/"})

    # -- shapes ---------------------------------------------------------------------------------

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        body: dict[str, Any] = {"detail": message}
        if code:
            body["code"] = code
        return reply(status, body)

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "Invalid token.")
        if status == 400:
            return self.error(400, "The email body provided is invalid or cannot be parsed.", "body_invalid")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, f"Request was throttled. Expected available in {retry_after} seconds.")
        answer.headers["Retry-After"] = str(retry_after)
        return answer

    def authorize(self, req: Request) -> Reply | None:
        auth = req.header("authorization") or ""
        if auth.startswith("Token ") and auth[6:].strip() in self.keys:
            return None
        return self.error(401, "Invalid token.")

    @staticmethod
    def invalid(loc: list, msg: str, kind: str = "value_error") -> Reply:
        return reply(422, {"detail": [{"type": kind, "loc": loc, "msg": msg}]})

    # -- routes ---------------------------------------------------------------------------------

    @route("GET", r"/v1/newsletters")
    def newsletters(self, req: Request) -> Reply:
        return reply(200, {"results": [dict(self.NEWSLETTER)], "count": 1, "next": None, "previous": None})

    @route("GET", r"/v1/subscribers")
    def list_subscribers(self, req: Request) -> Reply:
        """Subscribers filtered by ``type`` (the SubscriberType enum), 2 a page here so paging is used."""
        kind = req.query.get("type")
        if kind is not None and kind not in ("blocked", "complained", "churning", "churned", "gifted", "unactivated",
                                             "unpaid", "undeliverable", "premium", "past_due", "paused", "regular",
                                             "removed", "trialed", "unsubscribed", "upcoming"):
            return self.invalid(["query", "type"], f"unknown subscriber type {kind!r}")
        page = int(req.query.get("page", 1))
        with self.lock:
            chosen = [s for s in self.subscribers if kind is None or s["type"] == kind]
        chunk = chosen[(page - 1) * 2:page * 2]
        more = page * 2 < len(chosen)
        return reply(200, {"results": chunk, "count": len(chosen),
                           "next": f"{self.base_url}/v1/subscribers?page={page + 1}" if more else None,
                           "previous": None})

    @route("GET", r"/v1/emails")
    def list_emails(self, req: Request) -> Reply:
        ordering = req.query.get("ordering", "creation_date")  # the documented default: oldest first
        if ordering not in self.orderings:
            return self.invalid(["query", "ordering"], f"Input should be one of the documented orderings, "
                                                       f"not {ordering!r}", "enum")
        try:
            page = int(req.query.get("page", 1))
            since = req.query.get("creation_date__start")
            since_day = date.fromisoformat(since) if since else None
        except ValueError:
            return self.error(400, "The creation date provided is not valid or is in an incorrect format.",
                              "creation_date_invalid")
        with self.lock:
            items = list(self.emails)  # creation order
        if since_day is not None:
            items = [e for e in items if datetime.fromisoformat(e["creation_date"]).date() >= since_day]
        if ordering == "-creation_date":  # (other orderings are accepted and left in creation order)
            items.reverse()
        chunk = items[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        more = len(items) > page * PAGE_SIZE
        query = f"ordering={ordering}" + (f"&creation_date__start={since}" if since else "")
        return reply(200, {"results": chunk, "count": len(items),
                           "next": f"{self.base_url}/v1/emails?{query}&page={page + 1}" if more else None,
                           "previous": None if page == 1 else f"{self.base_url}/v1/emails?{query}&page={page - 1}"})

    @route("POST", r"/v1/emails")
    def create_email(self, req: Request) -> Reply:
        key = req.header("x-idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            # The docs give the limit, not the answer to a longer key: a validation error here.
            return self.invalid(["header", "X-Idempotency-Key"], "String should have at most 200 characters",
                                "string_too_long")
        with self.lock:
            if key is not None and key in self.idempotent:
                return self.idempotent[key]  # the same response as if sent only once
            answer = self._create(req)
            if key is not None and answer.status < 500:
                self.idempotent[key] = answer
        return answer

    def _create(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.invalid(["body"], "Input should be a valid dictionary", "dict_type")
        problems = openapi_problems(SPEC, "EmailInput", body)
        if problems:
            field, _, msg = problems[0].partition(": ")
            return self.invalid(["body", *field.split(".")], msg)
        if not str(body.get("subject") or "").strip():
            return self.error(400, "The subject provided is invalid or missing.", "subject_invalid")
        status = body.get("status", "about_to_send")  # EmailInput.status default
        if status not in ("draft", "about_to_send", "scheduled"):
            return self.error(400, f"The status provided is not valid: {status!r}.", "status_invalid")
        version = req.header("x-api-version") or self.pinned_version or LATEST_VERSION
        token = (req.header("authorization") or "")[6:].strip()
        if status == "about_to_send" and version >= CONFIRMATION_VERSION and token not in self.confirmed_keys:
            if (req.header("x-buttondown-live-dangerously") or "").lower() != "true":
                return self.error(400, "Creating an email with status 'about_to_send' on API version 2026-04-01 "
                                       "or later requires the X-Buttondown-Live-Dangerously header on first use "
                                       "per API key.", "sending_requires_confirmation")
            self.confirmed_keys.add(token)
        publish = body.get("publish_date")
        if status == "scheduled":
            if not publish:
                return self.error(400, "A publish date is required but was not provided.", "publish_date_missing")
            try:
                at = datetime.fromisoformat(str(publish).replace("Z", "+00:00"))
            except ValueError:
                return self.error(400, "The publish date provided is not valid.", "publish_date_invalid")
            if at.tzinfo is None or at <= datetime.now(UTC):
                return self.error(400, "The publish date must be in the future.", "publish_date_invalid")
        if status != "draft" and any(e["subject"] == body["subject"] and e["status"] in IN_FLIGHT
                                     for e in self.emails):
            return self.error(400, "An email with the same identifiers already exists.", "email_duplicate")
        email_id = str(uuid.uuid4())
        now = datetime.now(UTC).isoformat()
        slug = f"email-{len(self.emails) + 1}"
        email = {"id": email_id, "creation_date": now, "modification_date": now,
                 "publish_date": publish if status == "scheduled" else (now if status != "draft" else None),
                 "subject": body["subject"], "body": body.get("body", ""), "status": status,
                 "metadata": body.get("metadata") or {}, "description": body.get("description", ""),
                 "email_type": body.get("email_type", "public"), "archival_mode": body.get("archival_mode", "enabled"),
                 "template": body.get("template"), "slug": slug, "absolute_url": f"{self.base_url}/archive/{slug}/"}
        self.emails.append(email)
        return reply(201, email)

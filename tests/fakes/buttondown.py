"""Fake Buttondown API: GET /v1/newsletters, GET and POST /v1/emails.

Auth: ``Authorization: Token <key>``; a wrong one answers 401 ``{"detail": "Invalid token."}``.
Errors are ``{"code", "detail"}``; unknown body fields answer 422 with a ``detail`` list of
``{type, loc, msg}`` (Buttondown's strict validation). As on Buttondown, an email with the
subject of one already sent or on its way is refused with code ``email_duplicate``; a
``scheduled`` email needs a future ``publish_date``. ``fake.emails`` holds each email once,
newest last; ``GET /v1/emails`` lists them newest first, paginated like the real API.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route

FIELDS = {"subject", "body", "status", "publish_date", "metadata", "description", "slug", "canonical_url", "image",
          "email_type", "attachments", "related_email_ids", "secondary_id", "template", "filters",
          "commenting_mode", "featured"}
STATUSES = {"draft", "about_to_send", "scheduled"}
IN_FLIGHT = {"about_to_send", "scheduled", "in_flight", "sent"}


class ButtondownFake(FakeAPI):
    name = "buttondown"
    API_KEY = "bd-fake-0a1b2c3d-4e5f"
    NEWSLETTER = {"id": "4f6a2b1c-0000-4000-8000-000000000001", "username": "harborwellness",
                  "name": "Harbor Wellness Notes"}

    def reset_state(self) -> None:
        self.keys = {self.API_KEY}
        self.emails: list[dict[str, Any]] = []

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key_env": "SYN_FAKE_BUTTONDOWN_KEY"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_BUTTONDOWN_KEY": self.API_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

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

    @route("GET", r"/v1/newsletters")
    def newsletters(self, req: Request) -> Reply:
        return reply(200, {"results": [dict(self.NEWSLETTER)], "count": 1, "next": None, "previous": None})

    @route("GET", r"/v1/emails")
    def list_emails(self, req: Request) -> Reply:
        page = int(req.query.get("page", 1))
        with self.lock:
            items = list(reversed(self.emails))
        chunk = items[(page - 1) * 100: page * 100]
        more = len(items) > page * 100
        return reply(200, {"results": chunk, "count": len(items),
                           "next": f"{self.base_url}/v1/emails?page={page + 1}" if more else None,
                           "previous": None if page == 1 else f"{self.base_url}/v1/emails?page={page - 1}"})

    @route("POST", r"/v1/emails")
    def create_email(self, req: Request) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object.")
        extra = sorted(set(body) - FIELDS)
        if extra:
            return reply(422, {"detail": [{"type": "extra_forbidden", "loc": ["body", name],
                                           "msg": "Extra inputs are not permitted"} for name in extra]})
        if not str(body.get("subject") or "").strip():
            return self.error(400, "The subject provided is invalid or missing.", "subject_invalid")
        status = body.get("status", "about_to_send")
        if status not in STATUSES:
            return self.error(400, f"The status provided is not valid: {status!r}.", "status_invalid")
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
        with self.lock:
            if status != "draft" and any(e["subject"] == body["subject"] and e["status"] in IN_FLIGHT
                                         for e in self.emails):
                return self.error(400, "An email with the same subject has already been sent.", "email_duplicate")
            email_id = str(uuid.uuid4())
            now = datetime.now(UTC).isoformat(timespec="seconds")
            slug = f"email-{len(self.emails) + 1}"
            email = {"id": email_id, "creation_date": now, "modification_date": now,
                     "publish_date": publish if status == "scheduled" else (now if status != "draft" else None),
                     "subject": body["subject"], "body": body.get("body", ""), "status": status,
                     "metadata": body.get("metadata") or {}, "description": body.get("description", ""),
                     "email_type": body.get("email_type", "public"), "slug": slug,
                     "absolute_url": f"{self.base_url}/archive/{slug}/"}
            self.emails.append(email)
        return reply(201, email)

"""Reading back the lists Mailchimp and Buttondown keep: their unsubscribes and cleaned
(bounced) or complained members go into the tool's one suppression list, so that switching
to another provider keeps them (``syndicate subscribers sync``, and a beat task).

Each member read is a ``record_event`` (idempotent: the same member read twice is one event)
and a suppression: these services' lists are authoritative about the people on them, even
people the tool's own list never held.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from syndicate import providers
from syndicate.audience import suppression
from syndicate.errors import ProviderError
from syndicate.ledger.db import transaction
from syndicate.settings import Settings

PAGE = 500
# service's status -> (kind, subtype)
MAILCHIMP = {"unsubscribed": ("unsubscribe", ""), "cleaned": ("bounce", "hard")}
BUTTONDOWN = {"unsubscribed": ("unsubscribe", ""), "undeliverable": ("bounce", "hard"),
              "complained": ("complaint", ""), "removed": ("unsubscribe", "removed")}


@dataclass
class SyncReport:
    channel: str
    provider: str
    read: int = 0
    new: int = 0
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"{self.channel} ({self.provider}): failed: {self.error}"
        return f"{self.channel} ({self.provider}): {self.read} unsubscribed or undeliverable members read, {self.new} new"


def sync_all(factory: sessionmaker[Session], settings: Settings, only: str | None = None) -> list[SyncReport]:
    reports = []
    for name, channel in settings.enabled_channels().items():
        if channel.kind != "email" or channel.provider not in ("mailchimp", "buttondown") or only not in (None, name):
            continue
        report = SyncReport(name, channel.provider)
        try:
            adapter = providers.get(channel.provider)(settings, name, channel)
            members = _mailchimp(adapter) if channel.provider == "mailchimp" else _buttondown(adapter)
            report.read = len(members)
            with transaction(factory) as s:
                for email, kind, subtype, _when in members:
                    report.new += suppression.record_event(
                        s, settings, provider=channel.provider, kind=kind, email=email, subtype=subtype,
                        diagnostic=f"read back from {channel.provider}", event_id=f"sync:{kind}:{email.lower()}")
                    suppression.suppress(s, email, f"{channel.provider}: {kind}",
                                         status={"bounce": "bounced", "complaint": "complained"}.get(kind,
                                                                                                    "unsubscribed"))
        except ProviderError as exc:
            report.error = str(exc)
        reports.append(report)
    return reports


def _mailchimp(adapter) -> list[tuple[str, str, str, str]]:
    audience = adapter.option("audience_id")
    found = []
    for status, (kind, subtype) in MAILCHIMP.items():
        offset = 0
        while True:
            data = adapter.json_of(adapter.request(
                "GET", f"/3.0/lists/{audience}/members", what="reading the audience's members",
                params={"status": status, "count": PAGE, "offset": offset,
                        "fields": "members.email_address,members.status,members.last_changed,total_items"}))
            members = data.get("members") or []
            found += [(m["email_address"], kind, subtype, m.get("last_changed") or "") for m in members]
            offset += len(members)
            if not members or offset >= int(data.get("total_items") or 0):
                break
    return found


def _buttondown(adapter) -> list[tuple[str, str, str, str]]:
    found = []
    for status, (kind, subtype) in BUTTONDOWN.items():
        page = 1
        while True:
            data = adapter.json_of(adapter.request("GET", "/v1/subscribers", what="reading the subscribers",
                                                   params={"type": status, "page": page}))
            found += [(m.get("email_address") or m.get("email"), kind, subtype, m.get("creation_date") or "")
                      for m in data.get("results") or []]
            if not data.get("next"):
                break
            page += 1
    return [f for f in found if f[0]]

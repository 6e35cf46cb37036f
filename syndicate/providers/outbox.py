"""The outbox provider: writes what would be sent to files instead of calling a service.

It is the default, so a newcomer sees real output with no account: each delivery becomes
``<outbox>/<channel>/<delivery id>.json`` holding the exact request body the real service
would receive, and each email also ``<delivery id>.eml``, the whole MIME message.

An email to the tool's own list (``options.audience = "subscribers"``) is "mailed" like SMTP
would: the recipients ``email/recipients.py`` selects (each person's cadence and topics, each
post once per person), each recorded in ``recipient_sends``, each message written to
``<delivery id>/<address>.eml``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from syndicate.providers.base import Job, Permanent, Provider, SendResult

# The email machinery (MIME building, the recipient book) loads with the first email: an outbox
# channel of posts never needs it, and a worker's pool child loads its channels' providers at
# start (workers/preload.py).


def _atomic_write(path: Path, data: bytes) -> None:
    # Write then rename, so a crash never leaves half a file that looks sent.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxProvider(Provider):
    name = "outbox"
    deduplicates = True  # writing the same file twice leaves one file

    @property
    def folder(self) -> Path:
        return self.settings.outbox_dir / self.channel_name

    def send(self, job: Job) -> SendResult:
        record = {"channel": job.channel, "kind": job.kind, "post_url": job.post_url,
                  "delivery_id": job.delivery_id, "request": job.payload}
        base = self.folder / str(job.delivery_id)
        try:
            if job.kind == "email" and job.payload.get("audience") == "subscribers":
                record["recipients"] = self._mail_list(job, base)
            elif job.kind == "email":
                from syndicate.email.message import email_messages

                for i, message in enumerate(email_messages(job.payload, self.settings)):
                    suffix = "" if i == 0 else f"-{i + 1}"
                    _atomic_write(base.with_name(f"{job.delivery_id}{suffix}.eml"), bytes(message))
            _atomic_write(base.with_suffix(".json"),
                          json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            raise Permanent(f"outbox {self.folder}: cannot write: {exc.strerror}") from None
        return SendResult(ref=str(base.with_suffix(".json")), url=None)

    def _mail_list(self, job: Job, base: Path) -> dict:
        from syndicate.email import routing
        from syndicate.email.message import personalize, preview_token
        from syndicate.email.recipients import BatchReport, Outcome, RecipientBook, pending_recipients
        from syndicate.ledger.db import open_ledger

        factory = open_ledger(self.settings.store_url)
        report = BatchReport()
        todo = pending_recipients(factory, job, report, job.token, self.settings)
        with RecipientBook(factory, job, self.settings.run.claim_ttl, report) as book:
            for start in range(0, len(todo), 50):
                claimed = book.claim(todo[start:start + 50])
                book.issue(claimed)
                for recipient in claimed:
                    message = personalize(routing.payload_for(job.payload, recipient), recipient,
                                          preview_token(self.settings, recipient))
                    _atomic_write(base / f"{_safe(recipient)}.eml", bytes(message))
                book.answer({r: Outcome("sent") for r in claimed})
                book.flush()
        return report.details()

    def check(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not os.access(self.folder, os.W_OK):
            raise Permanent(f"outbox {self.folder} is not writable")
        return f"writes to {self.folder}"


def _safe(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", address)

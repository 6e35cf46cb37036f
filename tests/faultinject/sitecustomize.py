"""Fault injection for the email fault tests: this process kills itself (SIGKILL, exactly what
`kill -9` does: no cleanup, no acks, no commit) at one named step of an email send.

Python imports ``sitecustomize`` at start-up from the path; tests/test_email_faults.py puts this
folder on PYTHONPATH of the worker it starts, with

    SYNDICATE_TEST_KILL_AT    the step (below)
    SYNDICATE_TEST_KILL_NTH   at its Nth occurrence in the process (default 2: the 2nd recipient
                              or the 2nd API batch)
    SYNDICATE_TEST_KILL_MARK  a file created just before the kill; while it exists, nothing fires
                              (the worker started after the kill runs clean)

SMTP steps: ``before-mail`` (the MAIL command not yet sent), ``after-rcpt`` (RCPT answered),
``during-data`` (half the message content written to the socket), ``after-250`` (the server's
final reply to the content read, nothing recorded yet). On PostgreSQL a recipient's issue commit
runs on the send's ledger thread while the wire is busy (started once the previous recipient's
content is out): at these four steps the kill waits for that commit to finish first, so each step
is one exact interleaving; the two others are ``before-ahead-issue`` and ``after-ahead-issue``
(the ledger thread killed just before, or just after, its Nth issue statement commits, whatever
the SMTP conversation is doing then). API steps (direct-send batches):
``before-issue`` (the batch claimed, not yet issued), ``after-issue`` (issued and committed,
the request not yet sent), ``after-answer`` (the API answered, the answer not yet recorded).
Nothing here is active unless SYNDICATE_TEST_KILL_AT is set.
"""

import os
import signal

STEP = os.environ.get("SYNDICATE_TEST_KILL_AT")
NTH = int(os.environ.get("SYNDICATE_TEST_KILL_NTH", "2"))
MARK = os.environ.get("SYNDICATE_TEST_KILL_MARK", "")
_seen = {"count": 0}


def _die_now() -> None:
    with open(MARK, "w") as f:
        f.write(f"{STEP} {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def _due() -> bool:
    """True at the NTH occurrence of the step, once ever (the mark file says it happened)."""
    if MARK and os.path.exists(MARK):
        return False
    _seen["count"] += 1
    return _seen["count"] == NTH


def _smtp() -> None:
    global _die_now
    import smtplib

    from syndicate.email.recipients import RecipientBook

    issue_soon = RecipientBook.issue_soon
    books = []

    def patched_issue_soon(self, address):
        books[:] = [self]
        return issue_soon(self, address)

    RecipientBook.issue_soon = patched_issue_soon
    die_now = _die_now

    def settled_then_die() -> None:
        # Let an issue commit in flight on the ledger thread finish: one interleaving, exactly.
        for book in books:
            pending = book._pending  # noqa: SLF001 (the test's view into the book's one running commit)
            if pending is not None:
                try:
                    pending[2].result(timeout=30)
                except Exception:  # noqa: BLE001 (what it raised does not matter to the kill)
                    pass
        die_now()

    _die_now = settled_then_die

    mail, rcpt, send, getreply = smtplib.SMTP.mail, smtplib.SMTP.rcpt, smtplib.SMTP.send, smtplib.SMTP.getreply

    def patched_mail(self, *args, **kwargs):
        if STEP == "before-mail" and _due():
            _die_now()
        return mail(self, *args, **kwargs)

    def patched_rcpt(self, *args, **kwargs):
        answer = rcpt(self, *args, **kwargs)
        if STEP == "after-rcpt" and _due():
            _die_now()
        return answer

    def patched_send(self, data):
        is_content = isinstance(data, bytes) and data.endswith(b"\r\n.\r\n")
        if is_content and STEP == "during-data" and _due():
            self.sock.sendall(data[: len(data) // 2])
            _die_now()
        self._syndicate_content_sent = is_content
        return send(self, data)

    def patched_getreply(self):
        answer = getreply(self)
        if getattr(self, "_syndicate_content_sent", False):
            self._syndicate_content_sent = False
            if STEP == "after-250" and _due():
                _die_now()
        return answer

    smtplib.SMTP.mail, smtplib.SMTP.rcpt = patched_mail, patched_rcpt
    smtplib.SMTP.send, smtplib.SMTP.getreply = patched_send, patched_getreply


def _ahead() -> None:
    from syndicate.email import recipients

    run = recipients._IssueStatement.run  # noqa: SLF001 (the statement the ledger thread runs)

    def patched_run(self, address, noted):
        if STEP == "before-ahead-issue" and _due():
            _die_now()
        outcome = run(self, address, noted)
        if STEP == "after-ahead-issue" and _due():
            _die_now()
        return outcome

    recipients._IssueStatement.run = patched_run


def _api() -> None:
    import requests

    from syndicate.email.recipients import RecipientBook

    issue, send = RecipientBook.issue, requests.Session.send

    def patched_issue(self, addresses):
        if STEP == "before-issue" and _due():
            _die_now()
        issue(self, addresses)
        if STEP == "after-issue" and _due():
            _die_now()

    def patched_send(self, request, **kwargs):
        response = send(self, request, **kwargs)
        if STEP == "after-answer" and request.method == "POST" and _due():
            _die_now()
        return response

    RecipientBook.issue, requests.Session.send = patched_issue, patched_send


if STEP in ("before-mail", "after-rcpt", "during-data", "after-250"):
    _smtp()
elif STEP in ("before-ahead-issue", "after-ahead-issue"):
    _ahead()
elif STEP in ("before-issue", "after-issue", "after-answer"):
    _api()

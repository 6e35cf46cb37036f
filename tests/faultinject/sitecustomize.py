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
final reply to the content read, nothing recorded yet). API steps (direct-send batches):
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
    import smtplib

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
elif STEP in ("before-issue", "after-issue", "after-answer"):
    _api()

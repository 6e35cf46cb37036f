"""Direct-send email over an HTTP API: the tool's own list, in batches, exactly once per recipient.

The direct-send adapters (Postmark, Mailgun, SendGrid Mail Send, Amazon SES v2) mail the
same people as SMTP, the same way, and keep the same per-recipient records; only the wire
differs. Everything but the wire is shared with SMTP:

* who, and the records: ``email/recipients.py`` (``audience = "subscribers"`` mails the active
  subscribers, read at send time, else the channel's ``to`` list; suppressed addresses are
  skipped either way; one ``recipient_sends`` row per (delivery, recipient));
* the unsubscribe link: each recipient's signed token (``subscribers.unsubscribe_token``)
  goes into the footer link and into the RFC 8058 ``List-Unsubscribe`` /
  ``List-Unsubscribe-Post`` headers: ``email.message.unsubscribe_links`` and
  ``render.email.unsubscribe_headers``, the very code ``email.message.personalize`` builds an
  SMTP message with.

A batch, step by step: every recipient of the batch is claimed (``sending``, committed, one
transaction for the batch); just before the API call they become ``issued`` (committed, with
the claim on the delivery proven); then the API's answer is recorded per recipient, again in
one transaction: ``sent`` (with the provider's message id), ``failed`` (refused for good, e.g.
an inactive or invalid address), or ``deferred`` (not accepted: throttled, a 5xx, a 4xx for
the whole request). A timeout after the request went out leaves the batch ``unknown``, and so
does a 5xx where the provider may have accepted the batch before failing
(``server_errors_may_have_sent``). A
worker killed before the issue leaves the batch ``sending``: mailed when the delivery resumes;
killed after it, ``unknown``. A retried delivery skips everyone ``sent``, ``failed`` or
``unknown`` and goes on with the deferred and the not yet tried; a send that ends with anyone
``unknown`` raises ``Unresolved`` (the delivery waits for a person). Hence ``deduplicates =
True``: the engine may retry the delivery, whatever the error.

The first batch that fails stops the send: its error (with the progress so far) goes to the
engine, which retries after the provider's reset time (RateLimited), a backoff (Retryable,
OutcomeUnknown) or not at all (AuthExpired, Permanent; the deferred recipients are then
mailed if a person re-queues the delivery).

A long list stops between API calls once the send has used its time budget (half
``run.task_time_limit``, ``base.batch_budget``) and raises Incomplete: the engine continues
it at once, and that does not count as an attempt. Celery's soft time limit (90% of the task
limit) is caught too: a batch claimed but not yet handed to the API goes back to ``deferred``,
one whose call had begun is ``unknown``, one that was answered is recorded as answered; then
Incomplete. (A send that settled nobody raises Retryable instead, so it cannot loop.) A send
whose lease was lost (``recipients.LeaseKeeper``) stops at once with ClaimLost.

The body is built once per delivery: the rendered HTML and text with the unsubscribe
token replaced by the provider's own per-recipient merge syntax (Mailgun
``%recipient.token%``, SendGrid substitutions, SES template data), or, where the API takes
one whole message per recipient (Postmark), by the token itself.

Options every direct-send adapter reads: ``batch_size`` (recipients per API call; default
and maximum: the API's own limit), plus those of ``http.py`` (``api_base``, ``timeout``, ...).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from syndicate.audience import subscribers
from syndicate.email import routing
from syndicate.email.message import personalize, unsubscribe_links
from syndicate.email.recipients import (  # Outcome is re-exported for the adapters
    BatchReport,
    Outcome,
    RecipientBook,
    pending_recipients,
    stopped_early,
    unresolved_error,
)
from syndicate.ledger.db import open_ledger
from syndicate.providers.base import (
    AuthExpired,
    ClaimLost,
    Job,
    OutcomeUnknown,
    Permanent,
    ProviderError,
    Retryable,
    SendResult,
    batch_budget,
    soft_time_limit,
)
from syndicate.providers.http import HttpProvider
from syndicate.render.email import unsubscribe_headers
from syndicate.settings import SettingsError

log = logging.getLogger(__name__)

TEMPLATE_RECIPIENT = "recipient@example.invalid"  # the To of the shared body (never used as an address)


@dataclass(frozen=True)
class Content:
    """What every recipient of a delivery gets, with ``token_placeholder`` where the token goes."""

    subject: str
    html: str
    text: str
    sender: str  # the From header
    reply_to: str | None


@dataclass(frozen=True)
class Recipient:
    address: str
    token: str  # the signed unsubscribe token
    headers: dict[str, str]  # List-Unsubscribe (+ -Post): this recipient's own


@dataclass
class BatchAnswer:
    outcomes: dict[str, Outcome]  # by address ("sent", "failed", "deferred", "unknown"); one missing is deferred
    stop: ProviderError | None = None  # raised once the outcomes are recorded (a throttled entry)
    details: dict[str, Any] = field(default_factory=dict)


class DirectSendProvider(HttpProvider):
    """Base of the direct-send adapters: subclasses set the limits and write ``send_batch``."""

    deduplicates = True  # per-recipient records: a retried delivery never mails anyone twice
    batch_limit: ClassVar[int] = 100  # recipients per API call: the API's documented maximum
    our_unsubscribe_link = True
    # The per-recipient merge syntax the shared body carries where the token goes; None where
    # each recipient's message is sent whole (the token is put in before sending).
    token_placeholder: ClassVar[str] = "%%SYNDICATE_UNSUBSCRIBE_TOKEN%%"
    _book: RecipientBook | None = None  # the records during send(): request() issues the batch in hand
    # True where a 5xx answer to the send call may come after the API accepted the batch (the
    # provider does not document otherwise): its recipients are ``unknown``, never resent blind.
    # ``refused_before_sending`` names the 5xx answers the provider documents as "nothing done".
    server_errors_may_have_sent: ClassVar[bool] = False

    @property
    def batch_size(self) -> int:
        wanted = int(self.options.get("batch_size") or self.batch_limit)
        return max(1, min(wanted, self.batch_limit))

    # -- what subclasses write --------------------------------------------------------------

    def send_batch(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        """One API call for BATCH; raises a ProviderError when nothing was accepted."""
        raise NotImplementedError

    def batches(self, content: Content, recipients: list[str]) -> Iterator[list[str]]:
        """RECIPIENTS cut into API calls; override to cap by bytes as well as by count."""
        size = self.batch_size
        for start in range(0, len(recipients), size):
            yield recipients[start:start + size]

    # -- the send ---------------------------------------------------------------------------

    def send(self, job: Job) -> SendResult:
        started = time.monotonic()
        budget = batch_budget(self.settings)
        factory = open_ledger(self.settings.store_url)
        report = BatchReport()
        todo = pending_recipients(factory, job, report, job.token, self.settings)
        answers: list[dict[str, Any]] = []
        if not todo:
            return self._result(job, report, answers)
        settled_before = report.settled()
        book = self._book = RecipientBook(factory, job, self.settings.run.claim_ttl, report)
        try:
            with book:
                number = 0
                # One body per group: a digest reader's own posts (email/routing.py) differ.
                for payload, members in routing.groups(job.payload, todo):
                    part = job if payload is job.payload else dataclasses.replace(job, payload=payload)
                    content = self.content(part)
                    for addresses in self.batches(content, members):
                        # Between API calls only, and after at least one: each send makes progress.
                        if number and time.monotonic() - started >= budget:
                            raise stopped_early(self.service, f"time budget of {budget:g}s used", report,
                                                len(todo), settled_before)
                        number += 1
                        claimed = book.claim(addresses)  # one commit; raises ClaimLost if not ours
                        if not claimed:
                            continue  # settled meanwhile by another send
                        self._send_claimed(part, content, book, claimed, report, answers)
        except ClaimLost as exc:
            raise ClaimLost(f"{self.service}: {exc}; stopped mailing ({report.summary()})") from None
        except soft_time_limit():
            book.settle("stopped by the task's soft time limit")
            raise stopped_early(self.service, "stopped by the task's soft time limit", report, len(todo),
                                settled_before) from None
        finally:
            self._book = None
        return self._result(job, report, answers)

    def _send_claimed(self, job: Job, content: Content, book: RecipientBook, claimed: list[str],
                      report: BatchReport, answers: list[dict[str, Any]]) -> None:
        """One API call for the CLAIMED recipients; their answers recorded in one commit.
        ``request`` commits them ``issued`` just before the call goes out."""
        batch = self._personalize(book, job, claimed)
        try:
            answer = self.send_batch(job, content, batch)
        except ProviderError as exc:
            self._record_failure(book, job, exc)
            raise _with_progress(exc, report) from None
        except soft_time_limit():
            raise  # settled by the caller, by how far the call got
        except Exception as exc:  # a bug after the call may have gone out: never resend
            self._record_failure(book, job, OutcomeUnknown(f"adapter error: {exc}"))
            raise
        book.answer({address: _counted(answer.outcomes.get(address)) for address in claimed})
        book.flush()
        if answer.details:
            answers.append(answer.details)
        if answer.stop is not None:
            raise _with_progress(answer.stop, report)

    def request(self, method: str, path: str, **kwargs: Any):
        # The API call of a batch begins: from here its recipients may be mailed, so they are
        # `issued` first, committed (and the claim on the delivery proven, fenced by its token).
        if self._book is not None and self._book.claimed:
            self._book.issue(list(self._book.claimed))
        return super().request(method, path, **kwargs)

    def error_for(self, resp, *, idempotent: bool = False, what: str = "") -> ProviderError:
        exc = super().error_for(resp, idempotent=idempotent, what=what)
        # http.py retries 5xx of a deduplicated adapter; but a batch call carries no idempotency
        # key: only the per-recipient records deduplicate, and they must be told "may have it".
        if (self.server_errors_may_have_sent and not idempotent and resp.status_code >= 500
                and type(exc) is Retryable and not self.refused_before_sending(resp)):
            return OutcomeUnknown(f"{exc}; the API may have accepted the batch", status=exc.status)
        return exc

    def refused_before_sending(self, resp) -> bool:
        """True for a 5xx answer the provider documents as sent before anything was accepted."""
        return False

    def content(self, job: Job) -> Content:
        """The shared body: the rendered parts with the token replaced by ``token_placeholder``."""
        payload = job.payload
        message = personalize(payload, TEMPLATE_RECIPIENT, self.token_placeholder)
        html = message.get_body(("html",))
        text = message.get_body(("plain",))
        return Content(subject=payload["subject"], html=html.get_content() if html else "",
                       text=text.get_content() if text else "", sender=payload["from"],
                       reply_to=payload.get("reply_to"))

    def _personalize(self, book: RecipientBook, job: Job, addresses: list[str]) -> list[Recipient]:
        batch = []
        for address in addresses:
            try:
                token = subscribers.unsubscribe_token(self.settings, address)
            except SettingsError as exc:
                book.release(str(exc))  # nothing went out: claimed again once the key is set
                raise AuthExpired(str(exc)) from None
            headers = unsubscribe_headers(*unsubscribe_links(job.payload, token))
            batch.append(Recipient(address=address, token=token, headers=headers))
        return batch

    # -- the records ------------------------------------------------------------------------

    def _record_failure(self, book: RecipientBook, job: Job, exc: ProviderError) -> None:
        """The call for the batch in hand failed: recipients whose content may have gone (the
        call had begun and its outcome is unknown) are ``unknown``; the rest ``deferred``."""
        code = exc.status if isinstance(exc.status, int) else None
        unknown = isinstance(exc, OutcomeUnknown)
        issued, claimed = list(book.issued), list(book.claimed)
        book.answer({a: Outcome("unknown" if unknown else "deferred", error=str(exc), code=code) for a in issued})
        book.answer({a: Outcome("deferred", error=str(exc), code=code) for a in claimed})
        book.flush()
        if unknown and issued:
            log.warning("delivery %s (%s): %s recipients in a batch of unknown outcome are not mailed again",
                        job.delivery_id, self.channel_name, len(issued))

    def _result(self, job: Job, report: BatchReport, answers: list[dict[str, Any]]) -> SendResult:
        summary = report.summary()
        if report.deferred:
            raise Retryable(f"{self.service}: {report.deferred} recipients not accepted yet; {summary}")
        if report.failed and not (report.sent or report.already or report.unresolved):
            raise Permanent(f"{self.service}: every recipient was refused; {summary}")
        if report.unresolved:
            raise unresolved_error(self.service, report, job.delivery_id)
        details = report.details()
        if answers:
            details["batches"] = answers
        return SendResult(ref=f"{self.service}: {summary}", details=details)


def _counted(outcome: Outcome | None) -> Outcome:
    """An API's answer for one recipient as recorded: one it did not mention was not accepted;
    ``unknown`` where the adapter says the content may have left (a lost answer to part of a
    split batch, an accepted call whose answer leaves the recipient out)."""
    if outcome is None:
        return Outcome("deferred", error="no answer for this recipient")
    return outcome if outcome.state in ("sent", "failed", "deferred", "unknown") else Outcome(
        "deferred", message_id=outcome.message_id, code=outcome.code, error=outcome.error)


def _with_progress(exc: ProviderError, report: BatchReport) -> ProviderError:
    """EXC, its message extended by what the send achieved before it stopped."""
    exc.args = (f"{exc}; so far {report.summary()}; the rest go on the retry",)
    return exc

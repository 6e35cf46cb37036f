"""Pinterest API v5: one Pin per delivery via ``POST /v5/pins``.

Payload: the PinCreate body (``board_id``, ``link``, ``title`` <= 100, ``description`` <= 500
as the renderer keeps it (the API allows 800), ``alt_text`` <= 500,
``media_source{source_type: image_url, url}``): Pinterest fetches the image itself, so a post
without an image is not sent to Pinterest at all (the renderer decides that).

Options: ``token_env`` (an OAuth 2.0 user access token with ``boards:read``, ``pins:read`` and
``pins:write``; 30 days, refreshable in the Pinterest developer console), ``board_id`` (read by
the renderer; ``check()`` verifies the board), ``api_base`` (default https://api.pinterest.com),
``timeout``. Errors are ``{"code", "message"}``.

A create whose answer is lost (a 5xx, a timeout after the request went out) is not sent again
blind: the next attempt first reads the board's pins (``GET /v5/boards/{id}/pins``, the
``pins:read`` scope the token already needs) for one with this delivery's link and title made
since the first attempt, and takes it as the result when found. Pinterest has no idempotency
key, so one race is left: a request that lands on Pinterest's side *after* the retry's lookup
(the first retry waits ``run.retry_base`` times 0.5-1, 15-30 s by default) would make a second
pin. A lost answer on a slow network is the case to watch; raise ``run.retry_base`` if it happens.

Trial access: every new app starts on Trial, and Pinterest refuses Trial apps' pins in
production with code 29 ("Apps with Trial access may not create Pins in production
https://api.pinterest.com - use API Sandbox https://api-sandbox.pinterest.com instead.",
gitroomhq/postiz-app#1084). Until the app has Standard access, set ``api_base =
"https://api-sandbox.pinterest.com"`` with a *sandbox* token (developers.pinterest.com, My apps
-> Generate access token -> Sandbox); sandbox pins are "visible only to creator"
(docs/key-concepts/access-tiers). Code 29 is AuthExpired with that advice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import requests

from syndicate.providers.base import Job, OutcomeUnknown, SendResult
from syndicate.providers.http import ErrorInfo, HttpProvider, body_of

SANDBOX_API_BASE = "https://api-sandbox.pinterest.com"
TRIAL_ACCESS_CODE = "29"  # "Apps with Trial access may not create Pins in production"
# The lookup reads the whole board (Pinterest does not document the order of boards/list_pins, so
# stopping at the first older pin would be a guess), 250 pins a page, up to this many pages.
LOOKUP_PAGE_SIZE, LOOKUP_MAX_PAGES = 250, 20
TRIAL_ADVICE = (f"this app has Trial access: set channel option api_base = \"{SANDBOX_API_BASE}\" "
                f"(with a sandbox token) until Pinterest grants Standard access")


class PinterestProvider(HttpProvider):
    name = "pinterest"
    service = "Pinterest"
    default_api_base = "https://api.pinterest.com"
    deduplicates = False
    looks_up = True

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('token_env', 'access token')}"}

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        info = super().parse_error(resp)
        if info.code == TRIAL_ACCESS_CODE:
            return ErrorInfo(f"{info.message} ({TRIAL_ADVICE})", info.code, info.subcode)
        return info

    def is_auth_error(self, resp: requests.Response, info: ErrorInfo) -> bool:
        # Trial access is the account's standing, not this pin's fault: a person must act.
        return info.code == TRIAL_ACCESS_CODE or super().is_auth_error(resp, info)

    def send(self, job: Job) -> SendResult:
        body = {k: v for k, v in body_of(job.payload).items() if v is not None}
        resp = self.request("POST", "/v5/pins", json=body, what="creating the pin")
        pin_id = self.json_of(resp).get("id")
        pin_id = str(pin_id) if pin_id else None
        return SendResult(ref=pin_id, url=f"https://www.pinterest.com/pin/{pin_id}/" if pin_id else None)

    def lookup(self, job: Job) -> SendResult | None:
        """The pin an earlier attempt made: on the delivery's board, one with its link and title
        created since five minutes before the first attempt. Raises OutcomeUnknown when the
        board is too large to read whole (then a person checks, as before)."""
        body = body_of(job.payload)
        board, link, title = str(body.get("board_id") or ""), body.get("link"), body.get("title")
        if not board or not link:
            return None
        since = (job.first_attempt_at or datetime.now(UTC)) - timedelta(minutes=5)
        bookmark = None
        for _page in range(LOOKUP_MAX_PAGES):
            params = {"page_size": str(LOOKUP_PAGE_SIZE), **({"bookmark": bookmark} if bookmark else {})}
            answer = self.json_of(self.request("GET", f"/v5/boards/{quote(board, safe='')}/pins", params=params,
                                               what="looking for the pin an earlier attempt made"))
            for pin in answer.get("items") or []:
                if _is_ours(pin, link, title, since):
                    pin_id = str(pin["id"])
                    return SendResult(ref=pin_id, url=f"https://www.pinterest.com/pin/{pin_id}/",
                                      details={"found_by": "lookup"})
            bookmark = answer.get("bookmark")
            if not bookmark:
                return None
        raise OutcomeUnknown(f"board {board} has more than {LOOKUP_PAGE_SIZE * LOOKUP_MAX_PAGES} pins: "
                             "could not check whether the earlier attempt made the pin")

    def check(self) -> str:
        account = self.json_of(self.request("GET", "/v5/user_account", what="reading the account"))
        text = f"Pinterest {account.get('account_type', 'account').lower()} {account.get('username', '?')}"
        board_id = self.options.get("board_id")
        if board_id:
            board = self.json_of(self.request("GET", f"/v5/boards/{quote(str(board_id), safe='')}",
                                              what=f"reading board {board_id}"))
            text += f", board {board.get('name', '?')} ({board_id})"
        if self.api_base.rstrip("/") == SANDBOX_API_BASE:
            return text + " on the API Sandbox (pins visible only to you; move to api.pinterest.com with Standard access)"
        # Reads work on Trial access too; only creating a pin reveals it (code 29). Say so up front.
        return text + f"; if pins fail with code 29, {TRIAL_ADVICE}"


def _is_ours(pin: object, link: str, title: str | None, since: datetime) -> bool:
    if not isinstance(pin, dict) or not pin.get("id") or pin.get("link") != link:
        return False
    if title and pin.get("title") != title:
        return False
    made = _when(pin.get("created_at"))
    return made is None or made >= since  # no date to compare: the link and title decide


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        made = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return made if made.tzinfo else made.replace(tzinfo=UTC)  # Pinterest's times are UTC

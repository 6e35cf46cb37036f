"""Pinterest API v5: one Pin per delivery via ``POST /v5/pins``.

Payload: the PinCreate body (``board_id``, ``link``, ``title`` <= 100, ``description`` <= 500
as the renderer keeps it (the API allows 800), ``alt_text`` <= 500,
``media_source{source_type: image_url, url}``): Pinterest fetches the image itself, so a post
without an image is not sent to Pinterest at all (the renderer decides that).

Options: ``token_env`` (an OAuth 2.0 user access token with ``boards:read``, ``pins:read`` and
``pins:write``; 30 days, refreshable in the Pinterest developer console), ``board_id`` (read by
the renderer; ``check()`` verifies the board), ``api_base`` (default https://api.pinterest.com),
``timeout``. Errors are ``{"code", "message"}``.
"""

from __future__ import annotations

from urllib.parse import quote

from syndicate.providers.base import Job, SendResult
from syndicate.providers.http import HttpProvider, body_of


class PinterestProvider(HttpProvider):
    name = "pinterest"
    service = "Pinterest"
    default_api_base = "https://api.pinterest.com"
    deduplicates = False

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('token_env', 'access token')}"}

    def send(self, job: Job) -> SendResult:
        body = {k: v for k, v in body_of(job.payload).items() if v is not None}
        resp = self.request("POST", "/v5/pins", json=body, what="creating the pin")
        pin_id = self.json_of(resp).get("id")
        pin_id = str(pin_id) if pin_id else None
        return SendResult(ref=pin_id, url=f"https://www.pinterest.com/pin/{pin_id}/" if pin_id else None)

    def check(self) -> str:
        account = self.json_of(self.request("GET", "/v5/user_account", what="reading the account"))
        text = f"Pinterest {account.get('account_type', 'account').lower()} {account.get('username', '?')}"
        board_id = self.options.get("board_id")
        if board_id:
            board = self.json_of(self.request("GET", f"/v5/boards/{quote(str(board_id), safe='')}",
                                              what=f"reading board {board_id}"))
            text += f", board {board.get('name', '?')} ({board_id})"
        return text

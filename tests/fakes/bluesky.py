"""Fake Bluesky PDS (XRPC): sessions, uploadBlob, createRecord.

``com.atproto.server.createSession`` (identifier + app password) issues an access and a refresh
JWT; ``refreshSession`` (refresh JWT as Bearer) rotates both; an access JWT made stale with
``fake.expire_access()`` answers 400 ``{"error": "ExpiredToken"}`` like a real PDS, and
``fake.expire_refresh()`` does the same to refresh JWTs. ``uploadBlob`` takes raw bytes (at
most 1,000,000 here) and answers a blob ref. ``createRecord`` and ``putRecord`` are strict: the
input against the ``com.atproto.repo.*`` lexicon, the record against ``app.bsky.feed.post`` and
the facet/embed lexicons (``../shared/specs/atproto``, see ``lexicon.py``), the record key against
the collection's key type (``tid``), facet byte ranges against the text, and an embed's ``thumb`` and ``images``
against the blobs this fake returned; a violation answers 400 ``InvalidRequest`` "Invalid
app.bsky.feed.post record: …" like a PDS. ``putRecord`` on an existing key replaces the record
(one post); ``createRecord`` on one answers 500, as indigo#873 reports. 429 carries
``RateLimit-Reset`` (epoch seconds).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from .lexicon import LexiconError, lexicon, validate_facets, validate_input, validate_record
from .server import FakeAPI, Fault, Reply, Request, reply, route

XRPC = "/xrpc/"


class BlueskyFake(FakeAPI):
    name = "bluesky"
    IDENTIFIER = "harborwellness.bsky.social"
    APP_PASSWORD = "abcd-efgh-ijkl-mnop"
    DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    MAX_BLOB = 1_000_000

    def reset_state(self) -> None:
        self.access: set[str] = set()
        self.refresh: set[str] = set()
        self.expired_access: set[str] = set()
        self.expired_refresh: set[str] = set()
        self.sessions_created = 0
        self.sessions_refreshed = 0
        self.blobs: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # uri -> the record as last written
        self.writes: list[str] = []  # the uri of every accepted write, in order
        lexicon("app.bsky.feed.post")  # the strict checks need the lexicons: fail at start without them

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "identifier": self.IDENTIFIER, "app_password_env": "SYN_FAKE_BSKY_PASSWORD"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_BSKY_PASSWORD": self.APP_PASSWORD}

    def expire_access(self) -> None:
        with self.lock:
            self.expired_access |= self.access
            self.access.clear()

    def expire_refresh(self) -> None:
        with self.lock:
            self.expired_refresh |= self.refresh
            self.refresh.clear()

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        return reply(status, {"error": code or "InvalidRequest", "message": message})

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "Authentication Required", "AuthenticationRequired")
        if status == 400:
            return self.error(400, "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes",
                              "InvalidRequest")
        if status >= 500:
            return self.error(status, "Internal Server Error", "InternalServerError")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "Rate Limit Exceeded", "RateLimitExceeded")
        answer.headers.update({"RateLimit-Limit": "5000", "RateLimit-Remaining": "0",
                               "RateLimit-Reset": str(int(time.time()) + retry_after), "RateLimit-Policy": "5000;w=3600"})
        return answer

    def _issue(self) -> dict[str, Any]:
        n = self.next_id()
        access, refresh = f"eyJ.fake-access.{n}", f"eyJ.fake-refresh.{n}"
        self.access.add(access)
        self.refresh.add(refresh)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.IDENTIFIER, "did": self.DID,
                "active": True}

    def authorize(self, req: Request) -> Reply | None:
        token = req.bearer()
        if token in self.access:
            return None
        if token in self.expired_access:
            return self.error(400, "Token has expired", "ExpiredToken")
        if token is None:
            return self.error(401, "Authentication Required", "AuthenticationRequired")
        return self.error(400, "Token could not be verified", "InvalidToken")

    @route("POST", XRPC + r"com\.atproto\.server\.createSession", auth=False)
    def create_session(self, req: Request) -> Reply:
        body = req.json or {}
        if body.get("identifier") not in (self.IDENTIFIER, self.DID) or body.get("password") != self.APP_PASSWORD:
            return self.error(401, "Invalid identifier or password", "AuthenticationRequired")
        with self.lock:
            self.sessions_created += 1
            return reply(200, self._issue())

    @route("POST", XRPC + r"com\.atproto\.server\.refreshSession", auth=False)
    def refresh_session(self, req: Request) -> Reply:
        token = req.bearer()
        with self.lock:
            if token in self.expired_refresh:
                return self.error(400, "Token has expired", "ExpiredToken")
            if token not in self.refresh:
                return self.error(400, "Token could not be verified", "InvalidToken")
            self.refresh.discard(token)
            self.sessions_refreshed += 1
            return reply(200, self._issue())

    @route("GET", XRPC + r"com\.atproto\.server\.getSession")
    def get_session(self, req: Request) -> Reply:
        return reply(200, {"handle": self.IDENTIFIER, "did": self.DID, "active": True})

    @route("POST", XRPC + r"com\.atproto\.repo\.uploadBlob")
    def upload_blob(self, req: Request) -> Reply:
        mime = (req.header("content-type") or "").split(";")[0]
        if not req.body:
            return self.error(400, "Request body is empty", "InvalidRequest")
        if len(req.body) > self.MAX_BLOB:
            return self.error(400, f"This file is too large. It is {len(req.body)} bytes but the maximum size is "
                                   f"{self.MAX_BLOB} bytes.", "BlobTooLarge")
        link = "bafkrei" + hashlib.sha256(req.body).hexdigest()[:52]
        blob = {"$type": "blob", "ref": {"$link": link}, "mimeType": mime, "size": len(req.body)}
        with self.lock:
            self.blobs[link] = {"blob": blob, "bytes": req.body}
        return reply(200, {"blob": blob})

    @route("POST", XRPC + r"com\.atproto\.repo\.createRecord")
    def create_record(self, req: Request) -> Reply:
        return self._write(req, "com.atproto.repo.createRecord")

    @route("POST", XRPC + r"com\.atproto\.repo\.putRecord")
    def put_record(self, req: Request) -> Reply:
        return self._write(req, "com.atproto.repo.putRecord")

    def _write(self, req: Request, nsid: str) -> Reply:
        body = req.json
        try:
            validate_input(nsid, body)
        except LexiconError as exc:
            return self.error(400, str(exc), "InvalidRequest")
        if body["repo"] not in (self.DID, self.IDENTIFIER):
            return self.error(400, "Invalid repo: not the authenticated account", "InvalidRequest")
        collection = body["collection"]
        if collection != "app.bsky.feed.post":
            return self.error(400, f"Unsupported collection {collection!r}", "InvalidRequest")
        record = body["record"]
        try:
            validate_record(collection, record)
            validate_facets(record["text"], record.get("facets") or [])
        except LexiconError as exc:
            return self.error(400, f"Invalid {collection} record: {exc}", "InvalidRequest")
        rkey = body.get("rkey")
        if rkey is not None and not re.fullmatch(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}", rkey):
            # app.bsky.feed.post has "key": "tid" (atproto.com/specs/record-key).
            return self.error(400, f"Invalid record key for {collection}: {rkey!r} is not a TID", "InvalidRequest")
        thumb = ((record.get("embed") or {}).get("external") or {}).get("thumb")
        if thumb is not None and (thumb.get("ref") or {}).get("$link") not in self.blobs:
            return self.error(400, "Could not find blob: the thumb was not uploaded", "InvalidRequest")
        for image in (record.get("embed") or {}).get("images") or []:
            if (image["image"].get("ref") or {}).get("$link") not in self.blobs:
                return self.error(400, "Could not find blob: the image was not uploaded", "InvalidRequest")
        with self.lock:
            rkey = rkey or f"3l{self.next_id():011d}"
            uri = f"at://{self.DID}/{collection}/{rkey}"
            if uri in self.records and nsid.endswith("createRecord"):
                return self.error(500, "Internal Server Error", "InternalServerError")  # indigo#873
            self.records[uri] = record
            self.writes.append(uri)
        return reply(200, {"uri": uri, "cid": "bafyrei" + hashlib.sha256(json.dumps(record, sort_keys=True).encode())
                           .hexdigest()[:52], "commit": {"cid": "bafyreicommit", "rev": "3l0000000000"},
                           "validationStatus": "valid"})

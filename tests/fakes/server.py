"""A small threaded HTTP server framework for fake provider APIs.

A fake is a ``FakeAPI`` subclass whose methods, marked with ``@route(METHOD, REGEX)``, answer
requests the way the real API documents. The framework gives every fake:

* a record of every request (``fake.requests``: dicts with method, path, query, headers, json,
  form, body, fault, status, time), kept in memory and, with ``record_file``, appended as JSON
  lines the moment a request arrives (so a test in another process can count calls);
* fault injection: ``fake.fail_next(kind, count=1, path=None, method=None, retry_after=None,
  delay=None, then="process")`` where ``kind`` is "429" (rate limited, with the API's own
  reset headers), "500", "503", "504", "401" (credentials rejected, in the API's shape), "400"
  (a permanent refusal), any other status as a string, "stall" (sleep ``delay`` seconds, default
  ``fake.stall_seconds``, then process the request normally -- the client has timed out by
  then, so it does not know the post exists -- or, with ``then="drop"``, close without an
  answer) or "drop" (close the connection without answering). A status fault with
  ``then="commit"`` first processes the request (the post is made) and then answers the error
  instead of the success: the ambiguous answers real services give. ``path`` is a regex
  searched in the request path, so faults can target one endpoint;
* control endpoints under ``/_fake/`` (not recorded), for a test in another process:
  ``POST /_fake/faults`` (JSON: the ``fail_next`` arguments), ``GET /_fake/requests``,
  ``POST /_fake/reset``, ``GET /_fake/health``.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

CONTROL_PREFIX = "/_fake/"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any = None
    form: dict[str, str] | None = None
    base_url: str = ""
    # multipart/form-data file parts: name -> (filename, content type, bytes); text parts go to form
    files: dict[str, tuple[str, str, bytes]] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def bearer(self) -> str | None:
        auth = self.header("authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def params(self) -> dict[str, Any]:
        """Query, form and JSON object parameters merged (Graph APIs take any of them)."""
        merged: dict[str, Any] = dict(self.query)
        merged.update(self.form or {})
        if isinstance(self.json, dict):
            merged.update(self.json)
        return merged


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, bytes as is, str as text
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


def reply(status: int, body: Any = None, **headers: str) -> Reply:
    return Reply(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Fault:
    kind: str
    remaining: int = 1
    path: str | None = None
    method: str | None = None
    retry_after: int | None = None
    delay: float | None = None
    then: str = "process"

    def matches(self, req: Request) -> bool:
        if self.method and self.method.upper() != req.method:
            return False
        return not self.path or re.search(self.path, req.path) is not None


def route(method: str, pattern: str, *, auth: bool = True):
    """Mark a FakeAPI method as the handler of METHOD requests whose path fully matches PATTERN.
    Named groups become keyword arguments. ``auth`` routes call ``authorize`` first."""

    def mark(fn):
        fn._route = (method.upper(), re.compile(pattern), auth)
        return fn

    return mark


class FakeAPI:
    """Base of the fakes. Subclasses set ``name`` and write ``@route`` handlers, ``authorize``
    and ``error`` (the API's error shape)."""

    name: ClassVar[str] = "base"
    _routes: ClassVar[list[tuple[str, re.Pattern, bool, str]]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        routes = []
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                if callable(fn) and hasattr(fn, "_route"):
                    method, pattern, auth = fn._route
                    routes.append((method, pattern, auth, attr))
        cls._routes = routes

    def __init__(self, *, record_file: str | Path | None = None, stall_seconds: float = 3.0):
        self.lock = threading.RLock()
        self.requests: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.record_file = Path(record_file) if record_file else None
        self.stall_seconds = stall_seconds
        self.base_url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        self.reset_state()

    # -- what subclasses provide --------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget created objects (posts, tokens issued) and restore the initial credentials."""

    def authorize(self, req: Request) -> Reply | None:
        """None if the request's credentials are good, else the API's 401-style answer."""
        return None

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        """An error answer in the API's documented shape."""
        return reply(status, {"error": message, "code": code})

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        """The answer for an injected status fault (kinds "401", "400", "500", ...)."""
        if status == 429:
            return self.rate_limited(fault.retry_after if fault.retry_after is not None else 30)
        if status == 401:
            return self.error(401, "credentials rejected (injected fault)", "unauthorized")
        if status == 400:
            return self.error(400, "invalid request (injected fault)", "invalid")
        return self.error(status, f"server error {status} (injected fault)", "server")

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "Too Many Requests", "rate_limited")
        answer.headers["Retry-After"] = str(retry_after)
        return answer

    def options(self) -> dict[str, Any]:
        """Channel options that point an adapter at this fake (env var *names* for secrets)."""
        return {"api_base": self.base_url}

    def env(self) -> dict[str, str]:
        """The environment those options name, holding this fake's valid credentials."""
        return {}

    # -- helpers for handlers -----------------------------------------------------------------

    def next_id(self, start: int = 1) -> int:
        with self.lock:
            self._counter += 1
            return start + self._counter

    def calls(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests, optionally only METHOD ones whose path matches the regex PATH."""
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method.upper())
                    and (path is None or re.search(path, r["path"]))]

    def fail_next(self, kind: str | int, count: int = 1, *, path: str | None = None, method: str | None = None,
                  retry_after: int | None = None, delay: float | None = None, then: str = "process") -> None:
        with self.lock:
            self.faults.append(Fault(str(kind), count, path, method, retry_after, delay, then))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self._counter = 0
            self.reset_state()

    # -- serving ------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = ThreadingHTTPServer((host, port), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.base_url = f"http://{host}:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Block in this thread (the command-line runner)."""
        assert self._server is not None
        self._thread.join()

    # -- the request cycle --------------------------------------------------------------------

    def _record(self, req: Request, fault: Fault | None) -> dict[str, Any]:
        entry = {"fake": self.name, "method": req.method, "path": req.path, "query": req.query,
                 "headers": req.headers, "json": req.json, "form": req.form,
                 "body": None if req.json is not None or req.form is not None
                 else req.body[:2000].decode("utf-8", "replace"),
                 "files": {name: {"filename": f[0], "content_type": f[1], "size": len(f[2])}
                           for name, f in (req.files or {}).items()} or None,
                 "body_size": len(req.body), "fault": fault.kind if fault else None, "status": None,
                 "time": time.time()}
        with self.lock:
            self.requests.append(entry)
            if self.record_file is not None:
                with self.record_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, default=str) + "\n")
                    fh.flush()
        return entry

    def _take_fault(self, req: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.matches(req):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def handle(self, req: Request) -> Reply | None:
        """The answer to REQ, or None to drop the connection without one."""
        if req.path.startswith(CONTROL_PREFIX):
            return self._control(req)
        fault = self._take_fault(req)
        entry = self._record(req, fault)
        answer: Reply | None
        if fault is not None and fault.kind == "drop":
            answer = None
        elif fault is not None and fault.kind == "stall":
            time.sleep(fault.delay if fault.delay is not None else self.stall_seconds)
            answer = None if fault.then == "drop" else self._dispatch(req)
        elif fault is not None:
            if fault.then == "commit":
                self._dispatch(req)  # the service did the work; only its answer is an error
            answer = self.fault_reply(int(fault.kind), fault)
        else:
            answer = self._dispatch(req)
        entry["status"] = answer.status if answer else None
        return answer

    def _dispatch(self, req: Request) -> Reply:
        allowed = False
        for method, pattern, auth, attr in self._routes:
            m = pattern.fullmatch(req.path)
            if not m:
                continue
            if method != req.method:
                allowed = True
                continue
            if auth:
                denied = self.authorize(req)
                if denied is not None:
                    return denied
            return getattr(self, attr)(req, **m.groupdict())
        if allowed:
            return self.error(405, f"method {req.method} not allowed on {req.path}", "method_not_allowed")
        return self.error(404, f"no such endpoint {req.method} {req.path}", "not_found")

    def _control(self, req: Request) -> Reply:
        what = req.path[len(CONTROL_PREFIX):]
        if what == "health":
            return reply(200, {"fake": self.name, "ok": True})
        if what == "requests":
            with self.lock:
                return reply(200, list(self.requests))
        if what == "reset" and req.method == "POST":
            self.reset()
            return reply(200, {"ok": True})
        if what == "faults" and req.method == "POST":
            spec = dict(req.json or {})
            kind = spec.pop("kind")
            self.fail_next(kind, **spec)
            return reply(200, {"ok": True})
        return reply(404, {"error": "unknown control endpoint"})


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """The text fields and the file parts of a multipart/form-data body (RFC 7578)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    form: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            files[name] = (filename, part.get_content_type(), data)
        else:
            form[name] = data.decode("utf-8", "replace")
    return form, files


def _handler_for(fake: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"fake-{fake.name}/1.0"

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            data: Any = None
            form = None
            if body and ctype == "application/json":
                try:
                    data = json.loads(body)
                except ValueError:
                    data = None
            elif body and ctype == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            files = None
            if body and ctype == "multipart/form-data":
                form, files = _multipart(headers.get("content-type", ""), body)
            req = Request(method=self.command, path=parts.path, query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                          headers=headers, body=body, json=data, form=form, base_url=fake.base_url, files=files)
            try:
                answer = fake.handle(req)
            except Exception as exc:  # a bug in a fake: answer 500 rather than hang the client
                answer = reply(500, {"error": f"fake crashed: {type(exc).__name__}: {exc}"})
            if answer is None:
                self.close_connection = True
                try:
                    # linger 0: the close sends a reset, like a peer that died mid-request
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                return
            payload, ctype_out = answer.encode()
            try:
                self.send_response(answer.status)
                headers_out = {"Content-Type": ctype_out, **answer.headers}
                for name, value in headers_out.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler


"""A local SMTP sink (aiosmtpd) in its own process: accepts every message and counts it.

    python bench/smtpsink.py            # prints its port, serves until SIGTERM,
                                        # then prints {"messages": N, "bytes": B, "sessions": S}

Nothing is stored: the sink's own cost is parsing the SMTP dialogue, as a relay's front door.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self):
        self.messages = self.bytes = 0
        self.sessions = set()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages += len(envelope.rcpt_tos)
        self.bytes += len(envelope.content or b"")
        self.sessions.add(id(session))
        return "250 OK"


def main() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = Counter()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=10 * 1024 * 1024)
    controller.start()
    print(port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    print(json.dumps({"messages": handler.messages, "bytes": handler.bytes, "sessions": len(handler.sessions)}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

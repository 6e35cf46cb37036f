"""Run one fake API as its own process: ``python -m tests.fakes NAME --port P --record FILE``.

The first line on stdout is the base URL (useful with ``--port 0``); the second is JSON,
``{"options": {...}, "env": {...}}``: channel options pointing at this fake and the environment
variables they name, holding the fake's valid credentials. ``--fail KIND[:COUNT[:PATH]]``
(repeatable) queues faults before the first request; more can be queued at run time with
``POST <base>/_fake/faults``. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "fakes"

from . import FAKES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FAKES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", help="append one JSON line per request to this file")
    parser.add_argument("--stall-seconds", type=float, default=3.0)
    parser.add_argument("--fail", action="append", default=[], metavar="KIND[:COUNT[:PATH]]")
    args = parser.parse_args(argv)

    fake = FAKES[args.name](record_file=args.record, stall_seconds=args.stall_seconds)
    for spec in args.fail:
        kind, _, rest = spec.partition(":")
        count, _, path = rest.partition(":")
        fake.fail_next(kind, int(count or 1), path=path or None)
    base_url = fake.start(args.host, args.port)
    print(base_url, flush=True)
    print(json.dumps({"options": fake.options(), "env": fake.env()}), flush=True)

    def stop(signum, frame):
        fake.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

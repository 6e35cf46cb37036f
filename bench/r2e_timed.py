"""rss2email's own command line, timed after its imports (run with the peer's venv python).

    bench/.work/r2e/bin/python bench/r2e_timed.py -c CONFIG -d DATA run --no-send

The same measure as bench/poll_driver.py takes of ours: from "modules imported" to "state
saved", so neither side is charged its interpreter start-up. Prints one JSON line last.
"""

import json
import sys
import time

import rss2email.main

start = time.perf_counter()
try:
    rss2email.main.run(sys.argv[1:])
finally:
    print(json.dumps({"run_seconds": time.perf_counter() - start}), flush=True)

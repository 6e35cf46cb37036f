"""Run the benchmarks and print one table: every figure a ratio to a peer or a limit.

    python bench/run.py                     # everything (what `make bench` runs)
    python bench/run.py poll render         # a subset, by name
    python bench/run.py --quick             # 10x smaller counts, one repeat (a smoke run)
    python bench/run.py --scale 0.1         # 10,000 instead of 100,000 due deliveries

Names: command, poll, render, send, dispatch, latency, scale. The peers are installed on first use under
bench/.work/ (rss2email from PyPI in its own venv, npm mjml with the machine's node). A full
run (all names) rewrites the generated part of bench/RESULTS.md; --no-write keeps it.
Everything talks over loopback only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import BENCH, WORK, Context, Row, fmt, machine  # noqa: E402

NAMES = ("command", "poll", "render", "send", "dispatch", "latency", "scale")
RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"


def _module(name: str):
    import importlib

    return importlib.import_module(f"bench.bench_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *NAMES], metavar="NAME", help=", ".join(NAMES))
    parser.add_argument("--quick", action="store_true", help="10x smaller counts and one repeat")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply the 100,000 due deliveries (default 1, or 0.1 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the short figures (default 2)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite bench/RESULTS.md")
    args = parser.parse_args(argv)
    names = args.names or list(NAMES)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    repeats = args.repeats or (1 if args.quick else 2)
    ctx = Context(quick=args.quick, scale=scale, repeats=repeats, log=lambda m: console.print(m, highlight=False))
    WORK.mkdir(parents=True, exist_ok=True)
    # Unsubscribe links are signed: a throwaway key for the benchmark's own messages.
    os.environ.setdefault("SYNDICATE_SECRET", "bench-signing-key-not-a-secret-0123456789")
    started = time.monotonic()
    failures = []
    for name in names:
        console.rule(f"[bold]{name}")
        t0 = time.monotonic()
        try:
            _module(name).run(ctx)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures.append((name, exc))
            console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        console.print(f"[dim]{name}: {time.monotonic() - t0:.0f} s")
    total = time.monotonic() - started
    console.print(table(ctx.rows))
    for i, row in enumerate(ctx.rows, 1):
        if row.note:
            console.print(f"[dim]{i}. {row.note}", highlight=False)
    info = machine()
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    console.print(f"[dim]{command.strip()} | {total:.0f} s | nproc {info['nproc']}, {info['memory']}, "
                  f"Python {info['python']}, node {info['node']}, load {info['load']}")
    (WORK / "results.json").write_text(json.dumps({"rows": [r.as_dict() for r in ctx.rows], "machine": info,
                                                   "command": command, "seconds": total}, indent=2))
    if set(names) == set(NAMES) and not args.no_write and not failures:
        write_results(ctx.rows, info, command.strip(), total)
        console.print(f"[dim]wrote {RESULTS.relative_to(BENCH.parent)}")
    for name, exc in failures:
        console.print(f"[red]FAILED {name}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


def _ratio(row: Row) -> str:
    return f"{row.ratio:.2f}x" if row.ratio < 10 else f"{row.ratio:.0f}x"


def _goal(row: Row) -> str:
    if row.goal is None:
        return ""
    return f"{'<=' if row.better == 'lower' else '>='} {row.goal:g}x"


def _met(row: Row) -> str:
    return {None: "", True: "met", False: "MISSED"}[row.met]


def table(rows: list[Row]) -> Table:
    t = Table(title="Syndicate benchmarks: ours vs a peer or a limit, measured side by side in one run",
              show_lines=False)
    for col, kw in (("#", {"justify": "right"}), ("Area", {}), ("Figure", {"overflow": "fold"}),
                    ("Ours", {"justify": "right"}), ("Peer / limit", {"overflow": "fold"}),
                    ("Peer", {"justify": "right"}), ("Ours/peer", {"justify": "right"}),
                    ("Goal", {}), ("", {}), ("Scale", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for i, row in enumerate(rows, 1):
        met = _met(row)
        style = "red" if met == "MISSED" else ("green" if met == "met" else "")
        t.add_row(str(i), row.area, row.figure, fmt(row.ours, row.unit), row.peer_name, fmt(row.peer, row.unit),
                  _ratio(row), _goal(row), f"[{style}]{met}[/]" if style else met, row.scale)
    return t


def markdown(rows: list[Row]) -> str:
    out = ["| # | Area | Figure | Ours | Peer / limit | Peer | Ours/peer | Goal | | Scale |",
           "|---|---|---|---:|---|---:|---:|---|---|---|"]
    for i, row in enumerate(rows, 1):
        met = _met(row)
        out.append(f"| {i} | {row.area} | {row.figure} | {fmt(row.ours, row.unit)} | {row.peer_name} | "
                   f"{fmt(row.peer, row.unit)} | {_ratio(row)} | {_goal(row)} | "
                   f"{'**MISSED**' if met == 'MISSED' else met} | {row.scale} |")
    notes = [f"{i}. {row.note}" for i, row in enumerate(rows, 1) if row.note]
    return "\n".join(out) + ("\n\nRow notes:\n\n" + "\n".join(notes) if notes else "")


def write_results(rows: list[Row], info: dict, command: str, seconds: float) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = "\n".join([
        BEGIN,
        f"Run {stamp}: `{command}` (via `make bench`), {seconds / 60:.1f} minutes.",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory']} memory, Python {info['python']}, "
        f"Node.js {info['node']}, {info['os']}; load average at the end {info['load']} (shared with other "
        "engineers' test runs).",
        "",
        markdown(rows),
        END,
    ])
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S)
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

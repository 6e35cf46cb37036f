"""Rendering: per-post emails, 10-post digests and a personalized batch vs npm mjml.

The MJML both compilers get is the same text: ours is captured from the library's own call to
mjml-python while it renders, written to a file, and handed to the reference compiler (npm
``mjml``, on the machine's Node.js) through its API in one warm process, and through its CLI
(one process per email, as a shell pipeline would run it). Ours is measured end to end where
it says so (sanitize + Jinja2 + MRML + the plain-text part), so the ratio is conservative.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import mjml

from bench.common import BENCH, REPO, WORK, Context, Row, ensure_mjml

POSTS = REPO / "syndicate" / "demo" / "wellness-feed.xml"
DIGEST_POSTS = 10


def rate(fn, max_n: int, max_seconds: float) -> tuple[float, int]:
    """Calls per second of FN: one warm-up, then up to MAX_N calls or MAX_SECONDS."""
    fn()
    n, start = 0, time.perf_counter()
    elapsed = 0.0
    while n < max_n and (elapsed < max_seconds or n < 3):
        fn()
        n += 1
        elapsed = time.perf_counter() - start
    return n / elapsed, n


def run(ctx: Context) -> None:
    modules = ensure_mjml(ctx.log)
    root = WORK / "render"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    from syndicate import settings as settings_mod
    from syndicate.feeds import parse
    from syndicate.render import render_post_email
    from syndicate.render.email import render_digest_email

    settings = settings_mod.from_dict({
        "site": {"name": "Harbor Wellness Counseling", "url": "https://harborwellness.example",
                 "timezone": "America/New_York", "address": "120 Water Street\nPortland, ME 04101",
                 "contact_url": "https://harborwellness.example/contact"},
        "web": {"public_url": "https://harborwellness.example"},
        "channels": {"newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"],
                                    "unsubscribe_mailto": "unsubscribe@harborwellness.example"}},
    }, base_dir=root)
    posts = parse(POSTS.read_bytes(), url="https://harborwellness.example/feed/").posts
    post = posts[0]
    digest_posts = [replace(posts[i % len(posts)], title=f"{posts[i % len(posts)].title} ({i + 1})",
                            url=f"{posts[i % len(posts)].url}?n={i + 1}") for i in range(DIGEST_POSTS)]
    max_s = 2.0 if ctx.quick else 5.0

    # --- capture the MJML the library compiles, then time the library end to end -------------
    content, post_source = _capture(lambda: render_post_email(post, settings, "newsletter"))
    digest, digest_source = _capture(lambda: render_digest_email(digest_posts, settings, "newsletter"))
    post_mjml, digest_mjml = root / "post.mjml", root / "digest.mjml"
    post_mjml.write_text(post_source)
    digest_mjml.write_text(digest_source)
    ours_post, n_post = rate(lambda: render_post_email(post, settings, "newsletter"), 2000, max_s)
    ours_compile, _ = rate(lambda: mjml.mjml2html(post_source, disable_comments=True, fonts={}), 20000, max_s)
    ours_digest, n_digest = rate(lambda: render_digest_email(digest_posts, settings, "newsletter"), 1000, max_s)

    # --- the reference compiler ---------------------------------------------------------------
    peer = _node_peer(modules, [post_mjml, digest_mjml], max_s)
    p_post, p_digest = peer[str(post_mjml)], peer[str(digest_mjml)]
    for name, result in (("post", p_post), ("digest", p_digest)):
        if result["errors"]:
            ctx.log(f"  [yellow]npm mjml reported on the {name} MJML: {result['errors'][:3]}")
    cli_rate, cli_n = _cli_rate(modules, post_mjml, root, 3 if ctx.quick else 8)

    scale_post = f"demo post ({len(post.content_html):,} B of HTML) -> {len(content.html):,} B email"
    ctx.add(Row("Rendering", "per-post email, end to end (sanitize + Jinja2 + MRML + text part)", ours_post,
                p_post["per_second"], "/s", "npm mjml API, compile only", better="higher", scale=scale_post,
                note=f"same MJML ({len(post_source):,} B) for both; npm mjml {p_post['html_bytes']:,} B HTML; "
                     f"ours {n_post} renders, peer {p_post['iterations']} compiles, in one warm process each"))
    ctx.add(Row("Rendering", "MJML compile only (mjml-python / MRML)", ours_compile, p_post["per_second"], "/s",
                "npm mjml API, compile only", better="higher", scale=scale_post))
    ctx.add(Row("Rendering", "per-post email, end to end", ours_post, cli_rate, "/s",
                "npm mjml CLI, one process per email", better="higher", scale=scale_post,
                note=f"{cli_n} CLI runs (Node start-up dominates)"))
    ctx.add(Row("Rendering", f"{DIGEST_POSTS}-post digest, end to end (render_digest_email)", ours_digest,
                p_digest["per_second"], "/s", "npm mjml API, compile only", better="higher",
                scale=f"{DIGEST_POSTS} demo posts -> {len(digest.html):,} B email",
                note=f"same MJML ({len(digest_source):,} B) for both; npm mjml {p_digest['html_bytes']:,} B HTML; "
                     f"ours {n_digest}, peer {p_digest['iterations']} runs"))

    # --- a personalized batch -----------------------------------------------------------------
    count = 1000 if ctx.quick else 10_000
    lib_rate, lib_n = _library_batch(post, settings, count, max_seconds=15 if ctx.quick else 60)
    proto_rate = _prototype_batch(post, settings, count)
    batch_scale = f"{count:,} recipients, one post"
    lib_scale = batch_scale + ("" if lib_n == count else f" (timed on the first {lib_n:,})")
    ctx.add(Row("Rendering", "personalized batch, library: render once, then per recipient token + "
                "personalize() + as_bytes()", lib_rate, p_post["per_second"], "/s",
                "npm mjml API, compile per message", better="higher", scale=lib_scale,
                note="what the SMTP provider does per recipient (own To, Message-ID, signed unsubscribe "
                     "token in the links and List-Unsubscribe), timed without the network"))
    ctx.add(Row("Rendering", "personalized batch, library vs rendering each message anew", lib_rate, ours_post,
                "/s", "ours: full render per message", better="higher", goal=1.0, scale=lib_scale,
                note="the goal is implicit in 'compile once, personalize cheaply': personalizing must cost less "
                     "than rendering again; email.message.MessageTemplate builds the message once per "
                     "payload and substitutes each recipient's address, token and Message-ID"))
    ctx.add(Row("Rendering", "personalized batch, prototype: same message bytes, written without the "
                "email package", proto_rate, ours_post, "/s", "ours: full render per message", better="higher",
                goal=1.0, scale=batch_scale, note="bench/bench_render.py _prototype_batch: constant headers "
                "folded once, parts QP-encoded with binascii per recipient"))


def _capture(fn):
    """Call FN (a library render) and return (its result, the last MJML it compiled)."""
    captured: list[str] = []
    real = mjml.mjml2html

    def spy(source, **kw):
        captured.append(source)
        return real(source, **kw)

    mjml.mjml2html = spy
    try:
        result = fn()
    finally:
        mjml.mjml2html = real
    return result, captured[-1]


def _node_peer(modules: Path, files: list[Path], max_s: float) -> dict:
    out = subprocess.run(["node", str(BENCH / "mjml_peer.js"), str(modules), "2000", str(max_s),
                          *map(str, files)], capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"npm mjml failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli_rate(modules: Path, source: Path, root: Path, runs: int) -> tuple[float, int]:
    cli = modules / ".bin" / "mjml"
    start = time.perf_counter()
    for i in range(runs):
        subprocess.run([str(cli), str(source), "-o", str(root / f"cli-{i}.html"), "--config.keepComments", "false"],
                       check=True, capture_output=True, timeout=60)
    return runs / (time.perf_counter() - start), runs


def _payload(post, settings) -> dict:
    from syndicate.render.payloads import build_payload

    return build_payload(post, settings, "newsletter")


def _library_batch(post, settings, count: int, max_seconds: float) -> tuple[float, int]:
    """The library's path: one payload (rendered once), then each recipient's own message."""
    from email import policy

    from syndicate.audience import subscribers
    from syndicate.email.message import personalize

    start = time.perf_counter()
    payload = _payload(post, settings)
    done = 0
    while done < count and time.perf_counter() - start < max_seconds:
        address = f"reader{done}@example.org"
        message = personalize(payload, address, subscribers.unsubscribe_token(settings, address))
        message.as_bytes(policy=policy.SMTP)
        done += 1
    return done / (time.perf_counter() - start), done


def _prototype_batch(post, settings, count: int) -> float:
    """The same per-recipient message, written directly: the headers that do not change are
    folded once by the email package; per recipient the token goes into both parts, which are
    quoted-printable encoded with binascii (C), and To, Message-ID and List-Unsubscribe are
    written. Checked once against the email package's parse of the result."""
    import binascii
    from email import message_from_bytes, policy
    from html import escape

    from syndicate.audience import subscribers
    from syndicate.email.message import personalize

    start = time.perf_counter()
    payload = _payload(post, settings)
    web = payload["unsubscribe_https"]
    template = personalize(payload, "someone@example.org", "TOKEN", message_id="<x@y>")
    skip = {"to", "message-id", "list-unsubscribe", "content-type", "mime-version"}
    fixed = b"".join(f"{k}: {v}\r\n".encode() if k.lower() == "list-unsubscribe-post" else
                     policy.SMTP.fold_binary(k, v) for k, v in template.items() if k.lower() not in skip)
    mailto = template["List-Unsubscribe"].split(", ")[-1].replace("TOKEN", "{token}")
    domain = "harborwellness.example"
    boundary = "=_syndicate_" + uuid.uuid4().hex

    def part(text: str, subtype: str) -> bytes:
        encoded = binascii.b2a_qp(text.encode(), istext=True).replace(b"\n", b"\r\n")
        return (f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + encoded + b"\r\n"

    def message(address: str, token: str) -> bytes:
        url = web.replace("{token}", token)
        html = payload["html"].replace(escape(web), escape(url)).replace(web, url)
        text = payload["text"].replace(web, url)
        msgid = f"<{uuid.uuid4().hex}@{domain}>"
        head = (f"To: {address}\r\nMessage-ID: {msgid}\r\nList-Unsubscribe: <{url}>, "
                f"{mailto.replace('{token}', token)}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n").encode()
        return (fixed + head + b"\r\n" + part(text, "plain") + part(html, "html")
                + f"--{boundary}--\r\n".encode())

    check = message_from_bytes(message("check@example.org", "TOKEN123"), policy=policy.default)
    assert "TOKEN123" in check.get_body(("html",)).get_content()
    assert "TOKEN123" in check.get_body(("plain",)).get_content() and "TOKEN123" in check["List-Unsubscribe"]
    for n in range(count):
        address = f"reader{n}@example.org"
        message(address, subscribers.unsubscribe_token(settings, address))
    return count / (time.perf_counter() - start)

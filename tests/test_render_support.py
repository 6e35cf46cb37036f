"""Shared fixtures of the render tests: a fixed demo post and settings, snapshots, spec lookup.

(No tests here; pytest collects the file because of its name, which keeps it with the tests
it serves.)
"""

from __future__ import annotations

import difflib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from syndicate.model import PostData
from syndicate.settings import Settings, from_dict

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SOCIAL = ("x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads")
FIXED_NOW = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)

DEMO_CONTENT = """\
<!-- wp:paragraph -->
<p>Walking into a first therapy session can feel like a lot. Here are five small things that help
you <em>arrive</em> feeling steadier.</p>
<!-- /wp:paragraph -->
<!-- wp:image {"id":12} -->
<figure class="wp-block-image"><img src="/wp-content/uploads/2024/03/breathing.jpg" width="1024"
 height="683" class="wp-image-12" /><figcaption>Slow breathing, in for four and out for six.</figcaption></figure>
<!-- /wp:image -->
<p></p>
<h2>1. Write down one question</h2>
<p>Bring a note with the one thing you most want to ask. Our <a href="/faq/">FAQ</a> answers the
common ones &amp; more.</p>
<ul><li>What will we work on?</li><li>How often will we meet?</li></ul>
<figure class="wp-block-embed is-type-video"><div class="wp-block-embed__wrapper">
<iframe title="A two-minute grounding exercise" width="500" height="281"
 src="https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed" frameborder="0" allowfullscreen></iframe>
</div></figure>
<blockquote><p>“You don’t have to have it all figured out to move forward.”</p></blockquote>
<p>Questions? <a href="mailto:hello@wellness.example">Email us</a>.</p>
<img src="https://stats.wellness.example/pixel.gif" width="1" height="1" />
"""


def demo_settings(**overrides) -> Settings:
    data = {
        "site": {
            "name": "Wellness Blog",
            "url": "https://wellness.example",
            "timezone": "America/Chicago",
            "address": "Wellness Counseling, 100 Main Street\nSpringfield, IL 62701",
            "contact_url": "/contact/",
        },
        "channels": {
            "newsletter": {"kind": "email", "unsubscribe_url": "https://wellness.example/unsubscribe?u={token}"},
            **{kind: {"kind": kind, "hashtags": {"Anxiety": "AnxietyRelief"}} for kind in SOCIAL},
        },
    }
    data["channels"]["pinterest"]["options"] = {"board_id": "549755885175"}
    data["channels"]["linkedin"]["options"] = {"author_urn": "urn:li:organization:2414183"}
    for key, value in overrides.items():
        data[key] = value
    return from_dict(data)


def demo_post(**changes) -> PostData:
    post = PostData(
        identity="https://wellness.example/?p=101",
        fingerprint="wellness.example/2024/03/before-your-first-session|five ways to feel calmer",
        url="https://wellness.example/2024/03/before-your-first-session/",
        title="Five Ways to Feel Calmer Before Your First Therapy Session",
        summary="Small, practical steps that make a first appointment feel less daunting.",
        content_html=DEMO_CONTENT,
        author="Dana Rivera, LCSW",
        categories=["Anxiety", "therapy tips", "self-care"],
        image_url="/wp-content/uploads/2024/03/calm-lake.jpg",
        image_alt="A calm lake at dawn",
        published=datetime(2024, 3, 4, 15, 0, tzinfo=UTC),
    )
    for key, value in changes.items():
        setattr(post, key, value)
    return post


def sensitive_post() -> PostData:
    return demo_post(
        identity="https://wellness.example/?p=77",
        url="https://wellness.example/2022/06/the-emotional-pain-behind-self-harm/",
        title="The Emotional Pain Behind Self-Harm",
        summary="Non-suicidal self-injury is a response to intense internal pain, and there is hope.",
        content_html="<p>Non-Suicidal Self Injury (NSSI), or self-harm as it is often called, comes out of a "
                     "complicated chain of thoughts and emotions.</p><h2>Is There Hope?</h2>"
                     "<p>Yes! Through therapy a person can learn new tools.</p>",
        categories=["Self-Harm", "DBT"],
        image_url=None,
    )


def assert_snapshot(name: str, actual: str | dict) -> None:
    """Compare with tests/snapshots/NAME; SYNDICATE_UPDATE_SNAPSHOTS=1 rewrites it instead."""
    text = actual if isinstance(actual, str) else json.dumps(actual, indent=2, ensure_ascii=False) + "\n"
    path = SNAPSHOTS / name
    if os.environ.get("SYNDICATE_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path}; create it with SYNDICATE_UPDATE_SNAPSHOTS=1"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            "snapshot", "rendered", n=2))
        raise AssertionError(f"{name} differs from its snapshot "
                             f"(SYNDICATE_UPDATE_SNAPSHOTS=1 to accept):\n{diff[:6000]}")

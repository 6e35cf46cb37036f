"""Which posts count as sensitive (safe messaging)."""

from __future__ import annotations

import pytest
from test_render_support import demo_post

from syndicate.render.safety import is_sensitive, matched_topics, mentions_topic
from syndicate.settings import Safety

SAFETY = Safety()


@pytest.mark.parametrize("field, value", [
    ("title", "Understanding Suicide Risk in Teens"),
    ("title", "WHEN SOMEONE YOU LOVE IS SUICIDAL"),
    ("summary", "What parents should know about self-harm."),
    ("summary", "Self harm is not attention-seeking."),
    ("summary", "Self–harm (with an en dash) is still self-harm."),
    ("summary", "Suicides rose last year."),
    ("content_html", "<p>Non-Suicidal Self Injury (<strong>NSSI</strong>) explained.</p>"),
    ("content_html", "<p>What happens after an overdose&nbsp;</p>"),
    ("title", "Ｓｕｉｃｉｄｅ prevention"),  # full-width letters
])
def test_topic_in_any_field_makes_a_post_sensitive(field, value):
    post = demo_post(**{field: value})
    assert is_sensitive(post, SAFETY)


def test_categories_count():
    assert is_sensitive(demo_post(categories=["Wellness", "Self-Harm"]), SAFETY)
    assert is_sensitive(demo_post(categories=["self-injury"]), SAFETY)


@pytest.mark.parametrize("text", [
    "Overdosed on coffee",  # not the whole word
    "A suicidewatch-free zone",  # glued to other letters
    "Sunscreen and sunburns",
])
def test_part_of_a_longer_word_does_not_count(text):
    assert not is_sensitive(demo_post(title=text), SAFETY)


def test_the_demo_post_is_not_sensitive():
    assert not is_sensitive(demo_post(), SAFETY)


def test_hidden_script_text_does_not_count():
    post = demo_post(content_html="<p>Calm.</p><script>var topic = 'suicide';</script><style>.suicide{}</style>")
    assert not is_sensitive(post, SAFETY)


def test_a_topic_does_not_span_two_categories():
    assert not is_sensitive(demo_post(categories=["self", "harm"]), SAFETY)


def test_disabled_safety_never_flags():
    post = demo_post(title="Suicide prevention month")
    assert not is_sensitive(post, Safety(enabled=False))
    assert matched_topics(post, Safety(enabled=False)) == []


def test_configured_topics_replace_the_defaults():
    safety = Safety(sensitive_topics=["eating disorder"])
    assert is_sensitive(demo_post(summary="Signs of an Eating\nDisorder"), safety)
    assert not is_sensitive(demo_post(title="Suicide prevention"), safety)


def test_matched_topics_names_each_topic_once():
    post = demo_post(title="Self-harm and suicide", summary="self harm, suicidal thoughts")
    assert matched_topics(post, SAFETY) == ["suicide", "suicidal", "self-harm"]


def test_mentions_topic_checks_one_text():
    assert mentions_topic("Self-Harm", SAFETY)
    assert not mentions_topic("Mindfulness", SAFETY)

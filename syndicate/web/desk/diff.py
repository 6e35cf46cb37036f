"""What changed when a delivery was rendered again at send time (engine/fresh.py): a word-level
diff of its text parts (subject, preheader, plain text; a social post's text), as safe HTML
with <del> and <ins>, from the ``content refreshed`` events of its history."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from markupsafe import Markup, escape

from syndicate.engine.fresh import REFRESHED
from syndicate.ledger.models import Event

_TOKENS = re.compile(r"\s+|[^\s]+")
LABELS = {"subject": "Subject", "preheader": "Preheader", "text": "Text", "title": "Pin title"}


@dataclass
class Change:
    at: datetime
    actor: str
    kept: list[str]
    parts: list[tuple[str, Markup]] = field(default_factory=list)  # (label, diff) of each part that changed


def changes(events: list[Event]) -> list[Change]:
    """The refreshes in EVENTS (newest first, as given), each part that changed as a diff."""
    result = []
    for event in events:
        if event.action != REFRESHED:
            continue
        try:
            data = json.loads(event.detail or "{}")
        except ValueError:
            continue
        before, after = data.get("before") or {}, data.get("after") or {}
        change = Change(event.at, event.actor, list(data.get("kept") or []))
        for name in after:
            if before.get(name, "") != after[name]:
                change.parts.append((LABELS.get(name, name), word_diff(str(before.get(name, "")), str(after[name]))))
        result.append(change)
    return result


def word_diff(old: str, new: str) -> Markup:
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(Markup("<del>{}</del>").format("".join(a[i1:i2])))
        if j2 > j1:
            out.append(Markup("<ins>{}</ins>").format("".join(b[j1:j2])))
    return Markup("").join(out)

"""One-off emails to one person: the signup confirmation and the welcome email.

Templates like the others (``templates/email/confirm.*``, ``welcome.*``; a practice overrides
them in ``templates_dir``), in the same frame (header, crisis line, footer with the postal
address and an unsubscribe link).
"""

from __future__ import annotations

import mjml

from syndicate.render.email import EmailContent, _email_channel, _frame_context, _tidy_text, subject_line
from syndicate.render.errors import RenderError
from syndicate.render.templating import first_existing, render
from syndicate.settings import Settings

SUBJECTS = {"confirm": "Please confirm your subscription to {site}", "welcome": "Welcome to {site}"}


def render_notice(settings: Settings, channel: str, kind: str, *, unsubscribe_url: str, **links: str) -> EmailContent:
    """KIND ("confirm" or "welcome") for one person; LINKS: confirm_url / preferences_url."""
    ch = _email_channel(settings, channel)
    context = {**_frame_context(settings, ch, False), **links, "unsubscribe_url": unsubscribe_url}
    context["subject"] = subject_line(SUBJECTS[kind].format(site=settings.site.name))
    context["preheader"] = context["subject"]
    html_name = first_existing(settings, [f"email/{kind}.mjml"])
    try:
        html = mjml.mjml2html(render(settings, html_name, context), disable_comments=True, fonts={})
    except ValueError as exc:
        raise RenderError(f"{html_name}: MJML could not compile the email: {exc}") from None
    text = render(settings, first_existing(settings, [f"email/{kind}.txt.j2"]), context)
    return EmailContent(subject=context["subject"], preheader=context["preheader"], html=html,
                        text=_tidy_text(text), sensitive=False)

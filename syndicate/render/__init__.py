"""Rendering: a post as a newsletter email and as each social network's request body."""

from syndicate.render.email import EmailContent, build_message, render_post_email
from syndicate.render.errors import NotApplicable, RenderError
from syndicate.render.social import render_social

__all__ = ["EmailContent", "NotApplicable", "RenderError", "build_message", "render_post_email", "render_social"]

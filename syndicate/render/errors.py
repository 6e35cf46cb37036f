"""What rendering can refuse, and why."""

from __future__ import annotations


class RenderError(Exception):
    """A post that cannot be rendered for a channel because of the channel's configuration."""


class NotApplicable(RenderError):
    """This post cannot go to this network at all (a Pin needs an image); skip, don't retry."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

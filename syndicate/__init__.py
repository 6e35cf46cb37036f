"""Syndicate: a blog feed becomes newsletters and social posts, sent exactly once."""

__version__ = "0.1.0"

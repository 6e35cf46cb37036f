"""The audience: the subscriber list and everything about a person (consent, suppression, tokens)."""

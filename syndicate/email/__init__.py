"""An email message: personalization per recipient, per-recipient bookkeeping, and the lint."""

"""The delivery engine: plan, claim, send, reap. The same code runs in-process and in Celery."""

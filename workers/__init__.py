"""The Celery side of Syndicate: a thin layer of tasks over the library (see workers/app.py)."""

"""WSGI entry point for a production server: ``gunicorn 'syndicate.web.wsgi:app'``.

Settings come from ``$SYNDICATE_CONFIG`` (else ./settings.toml), as for the CLI.
"""

from syndicate import settings as _settings
from syndicate.web import create_app

app = create_app(_settings.load())

"""WSGI entry point (gunicorn learning_engine.wsgi)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learning_engine.settings")

application = get_wsgi_application()

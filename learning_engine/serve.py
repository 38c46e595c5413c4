"""``make serve``: the production web server (gunicorn) with the production settings.

Settings come from the environment and ``.env`` as always (``ENV_FILE`` names another file). This
refuses to start with DEBUG on: the ``.env`` that ``make env`` writes is a developer's (DEBUG=1 and
keys generated for the checkout), and a production server must not run with it. Then it collects
the static files into ``STATIC_ROOT`` (WhiteNoise serves them from there), runs Django's deployment
checks (errors stop it, warnings are printed), and replaces itself with gunicorn configured by
``learning_engine/gunicorn_conf.py``. Migrations are a separate step of a deployment
(``manage.py migrate``), run once, not by each web machine as it starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("gunicorn_conf.py")

DEBUG_ON = (
    "make serve runs the production settings, and DEBUG is on (the developer .env of `make env` says "
    "DEBUG=1). Set DEBUG=0 in the environment or in the file ENV_FILE names, with SECRET_KEY and "
    "PSEUDONYM_KEY generated for this site, DATABASE_URL, ALLOWED_HOSTS and, behind a TLS proxy, "
    "BEHIND_TLS_PROXY=1 (docs/deployment.md). To try it on this machine over plain HTTP: "
    "DEBUG=0 SECURE_SSL_REDIRECT=0 make serve"
)


def gunicorn_command() -> list[str]:
    """The command line ``make serve`` ends in (the venv's gunicorn, this project's config)."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return [str(gunicorn), "--config", str(CONFIG)]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learning_engine.settings")
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        print(f"make serve: {exc}", file=sys.stderr)
        return 2
    if settings.DEBUG:
        print(DEBUG_ON, file=sys.stderr)
        return 2
    call_command("collectstatic", interactive=False, verbosity=0)
    try:
        call_command("check", deploy=True)
    except SystemCheckError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = gunicorn_command() + list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    os.execv(command[0], command)  # noqa: S606 -- our own venv's gunicorn, fixed arguments
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

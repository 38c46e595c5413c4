"""Signals of the cases app, for the apps that build on it (cases imports none of them).

``demo_loaded(sender, users: dict[str, User], verbosity: int)`` is sent by ``load_demo`` after the
demo users and cases exist; receivers add their own demo objects (model types, ...) and may
return a one-line summary to print.
"""

from __future__ import annotations

from django.dispatch import Signal

demo_loaded = Signal()

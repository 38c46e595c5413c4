"""Who acts: the ``by=`` of every transition and service (issue 14).

``Actor`` is the user model (``django.contrib.auth``'s ``User``: the project keeps the default
``AUTH_USER_MODEL``). ``SystemActor`` adds ``None`` for what the system does on its own (the reaper,
a migration, a periodic check): their audit rows record no actor. A view hands over
``request.user`` through ``request_actor``, which refuses an anonymous user (the permission
classes have already refused one; this makes the type say so).

The aliases are for type checkers: the modules that name them import them under
``TYPE_CHECKING``, so importing a domain module never loads the auth models early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    type Actor = User
    type SystemActor = User | None


def request_actor(request: Any) -> Actor:
    """``request.user`` as the acting user; ``PermissionError`` for an anonymous one (a view that
    lets an anonymous user reach a domain method is a bug, never a request to serve)."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        raise PermissionError("An anonymous user cannot act.")
    return user  # type: ignore[no-any-return]

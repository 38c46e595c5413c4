"""API permission classes. Every view names what it needs; the default is to refuse.

A viewset lists, per action, the model permissions it requires:

    action_permissions = {"list": ["cases.view_case"], "approve": ["cases.review_case"]}

An action missing from the table is refused, so a new action cannot ship unguarded. Superusers
hold every permission (Django's ``has_perm``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from learning_engine.roles import PERM_VIEW_PHI


class DenyAll(BasePermission):
    """The default: a view that forgets to declare permissions serves nobody."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return False


class ActionPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        table: dict[str, list[str]] = getattr(view, "action_permissions", {})
        action = getattr(view, "action", None)
        if action is None and getattr(view, "action_map", None) is not None and request.method != "OPTIONS":
            # A method this route does not serve: let DRF answer 405 rather than a misleading 403.
            return True
        action = action or str(request.method).lower()
        if action == "metadata":  # OPTIONS: same guard as reading the list
            action = "list"
        required = table.get(action)
        if required is None:
            return False
        return user.has_perms(required)


def requires(*perms: str) -> type[BasePermission]:
    """A permission class for a plain view: the user must hold every one of ``perms``."""

    class _Requires(BasePermission):
        message = "You do not have permission to perform this action."

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.is_active and user.has_perms(perms))

    _Requires.__name__ = f"Requires({', '.join(perms)})"
    return _Requires


def can_view_phi(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(PERM_VIEW_PHI))

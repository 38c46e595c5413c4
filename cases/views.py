from __future__ import annotations

from rest_framework import viewsets

from cases.models import Case
from learning_engine.permissions import ActionPermission


class CaseViewSet(viewsets.GenericViewSet):
    """Placeholder; the API is built in cases/views.py."""

    queryset = Case.objects.none()
    permission_classes = [ActionPermission]
    action_permissions: dict[str, list[str]] = {}

"""GET /api/v1/health/: is this process able to serve? No authentication, no PHI."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# Later parts of the engine (workers, active models) add their checks here: name -> callable that
# returns a JSON-ready dict with at least {"ok": bool}.
HEALTH_CHECKS: dict[str, Any] = {}


def database_check() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": not pending, "vendor": connection.vendor, "pending_migrations": len(pending)}


class HealthView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.ChoiceField(choices=["ok", "degraded"]),
                    "version": serializers.CharField(),
                    "checks": serializers.DictField(),
                },
            ),
            503: inline_serializer(
                "HealthDegraded",
                {
                    "status": serializers.CharField(),
                    "version": serializers.CharField(),
                    "checks": serializers.DictField(),
                },
            ),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        checks = {"database": database_check()}
        for name, check in HEALTH_CHECKS.items():
            checks[name] = check()
        healthy = all(item.get("ok") for item in checks.values())
        body = {"status": "ok" if healthy else "degraded", "version": settings.ENGINE_VERSION, "checks": checks}
        return Response(body, status=200 if healthy else 503)

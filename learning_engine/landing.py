"""The pages a newcomer meets first: ``/`` (what this is and where to go) and ``/api/v1/`` (the API's
entry points). Neither shows data: no authentication is needed and nothing about patients,
datasets or models is read."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def _links(request: HttpRequest) -> dict[str, str]:
    return {
        "admin": request.build_absolute_uri(reverse("admin:index")),
        "api": request.build_absolute_uri(reverse("api-root")),
        "docs": request.build_absolute_uri(reverse("swagger-ui")),
        "schema": request.build_absolute_uri(reverse("schema")),
        "health": request.build_absolute_uri(reverse("health")),
        "token": request.build_absolute_uri(reverse("token_obtain_pair")),
    }


def landing(request: HttpRequest) -> HttpResponse:
    """``/``: the admin's look (its header, and the user's name and log-out link when signed in)."""
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Self-learning clinical diagnosis engine",
        "version": settings.ENGINE_VERSION,
        "links": _links(request),
    }
    return TemplateResponse(request, "landing/index.html", context)


class ApiRootView(APIView):
    """``GET /api/v1/``: where the API's parts start, the version and how to authenticate."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        operation_id="api_root",
        responses={
            200: inline_serializer(
                "ApiRoot",
                {
                    "name": serializers.CharField(),
                    "version": serializers.CharField(),
                    "authentication": serializers.CharField(),
                    "links": serializers.DictField(child=serializers.URLField()),
                },
            )
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        links = _links(request)
        return Response(
            {
                "name": "Self-learning clinical diagnosis engine",
                "version": settings.ENGINE_VERSION,
                "authentication": "POST your username and password to the token link; send the access "
                "token as 'Authorization: Bearer <access>'.",
                "links": {
                    "token": links["token"],
                    "cases": request.build_absolute_uri(reverse("case-list")),
                    "datasets": request.build_absolute_uri(reverse("dataset-list")),
                    "training_jobs": request.build_absolute_uri(reverse("training-job-list")),
                    "model_types": request.build_absolute_uri(reverse("model-type-list")),
                    "health": links["health"],
                    "docs": links["docs"],
                    "schema": links["schema"],
                },
            }
        )

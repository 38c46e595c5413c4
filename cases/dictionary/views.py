"""The cohort API: /api/v1/cohorts/ (list), /cohorts/{slug}/ (with its dictionary versions) and
/cohorts/{slug}/schema/ (the JSON Schema of a valid case record). Read-only: dictionaries are
written through the admin and ``manage.py load_dictionary``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from cases.dictionary.models import Cohort, DataDictionary
from cases.dictionary.record_schema import record_json_schema
from cases.dictionary.serializers import CohortDetailSerializer, CohortSerializer, SchemaParamsSerializer
from learning_engine.permissions import ActionPermission
from learning_engine.serializers import ErrorSerializer

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid query parameter (code 'invalid')."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Missing permission."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such cohort, or no such (published) version.")}


@extend_schema_view(
    list=extend_schema(summary="List cohorts", responses={200: CohortSerializer(many=True), **ERRORS}),
    retrieve=extend_schema(
        summary="One cohort with its dictionary versions",
        responses={200: CohortDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class CohortViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    action_permissions = {
        "list": ["cases.view_cohort"],
        "retrieve": ["cases.view_cohort", "cases.view_datadictionary"],
        "record_schema": ["cases.view_cohort", "cases.view_datadictionary"],
    }
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet[Cohort]:
        return Cohort.objects.prefetch_related("dictionaries__created_by", "dictionaries__published_by").order_by(
            "slug"
        )

    def get_serializer_class(self) -> Any:
        return CohortDetailSerializer if self.action == "retrieve" else CohortSerializer

    @extend_schema(
        summary="JSON Schema of a valid case record",
        description="Draft 2020-12. Validate a record with it before sending it: findings keys, types and hard "
        "limits, the symptom vocabulary and the diagnosis code set of the cohort's current dictionary version "
        "(or `version`). The server also refuses future encounter dates and birth dates after the encounter.",
        parameters=[SchemaParamsSerializer],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                examples=[
                    OpenApiExample(
                        "breast-mass (abridged)",
                        value={
                            "$schema": "https://json-schema.org/draft/2020-12/schema",
                            "title": "A breast-mass case record (data dictionary version 1)",
                            "type": "object",
                            "properties": {
                                "cohort": {"const": "breast-mass"},
                                "findings": {
                                    "type": "object",
                                    "properties": {
                                        "mean_radius": {"title": "Mean radius", "type": "number", "minimum": 0}
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                    )
                ],
            ),
            **ERRORS,
            **NOT_FOUND,
        },
    )
    @action(detail=True, methods=["get"], url_path="schema", url_name="schema")
    def record_schema(self, request: Request, slug: str | None = None) -> Response:
        cohort = self.get_object()
        params = SchemaParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        version = params.validated_data.get("version")
        published = [d for d in cohort.dictionaries.all() if d.status == DataDictionary.Status.PUBLISHED]
        if version is not None:
            chosen = next((d for d in published if d.version == version), None)
        else:
            chosen = max(published, key=lambda d: d.version) if published else None
        if chosen is None:
            raise NotFound(f"{cohort.slug} has no published dictionary version{f' {version}' if version else ''}.")
        return Response(record_json_schema(chosen.parsed, cohort=cohort.slug, version=chosen.version))

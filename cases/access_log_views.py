"""``/api/v1/access-log/``: the PHI access log for privacy officers (``cases.view_accesslogentry``).

Read-only and paginated. The list gives each entry's case count; the detail adds its case ids.
Filters: ``user`` (id), ``username``, ``case`` (id), ``action``, ``channel``, ``address`` and a time
range (``after``, ``before``). Every bad value answers 400 with a code.
"""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from cases.access_log import ADDRESS_MAX_LENGTH, AccessLogEntry
from cases.filters import IntegerFilter
from learning_engine.filters import StrictOrderingFilter
from learning_engine.parsers import MAX_JSON_INTEGER
from learning_engine.permissions import ActionPermission
from learning_engine.roles import PERM_VIEW_ACCESS_LOG
from learning_engine.serializers import ErrorSerializer


class AccessLogEntrySerializer(serializers.ModelSerializer):
    actor_username = serializers.SerializerMethodField()

    class Meta:
        model = AccessLogEntry
        fields: tuple[str, ...] = (
            "id",
            "created_at",
            "actor",
            "actor_username",
            "action",
            "channel",
            "address",
            "remote_addr",
            "path",
            "target",
            "fields",
            "case_count",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_actor_username(self, obj: AccessLogEntry) -> str | None:
        return obj.actor.get_username() if obj.actor is not None else None


class AccessLogEntryDetailSerializer(AccessLogEntrySerializer):
    case_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)

    class Meta(AccessLogEntrySerializer.Meta):
        fields = (*AccessLogEntrySerializer.Meta.fields, "case_ids")
        read_only_fields = fields


class AccessLogFilter(django_filters.FilterSet):
    # Whole numbers a database id can be (an id of 25 digits was a 500: OverflowError in the query).
    user = IntegerFilter(
        field_name="actor_id", min_value=1, max_value=MAX_JSON_INTEGER, help_text="The reader's user id."
    )
    username = django_filters.CharFilter(
        field_name="actor__username", max_length=150, help_text="The reader's username (exact)."
    )
    case = IntegerFilter(
        field_name="accessed_cases__case_id",
        min_value=1,
        max_value=MAX_JSON_INTEGER,
        help_text="Entries that touched this case id.",
    )
    action = django_filters.MultipleChoiceFilter(
        choices=AccessLogEntry.Action.choices, help_text="One or more actions (repeat the parameter)."
    )
    channel = django_filters.ChoiceFilter(choices=AccessLogEntry.Channel.choices)
    address = django_filters.CharFilter(max_length=ADDRESS_MAX_LENGTH, help_text="The client address (exact).")
    after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="At or after this time (ISO 8601)."
    )
    before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Before this time (ISO 8601)."
    )

    class Meta:
        model = AccessLogEntry
        fields: list[str] = []


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid filter (code 'invalid')."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not a privacy officer."),
}


@extend_schema_view(
    list=extend_schema(
        summary="PHI access log",
        description="Who read or changed which patients' raw data, newest first: one entry per request "
        "(or command run) with its case count. Privacy officers only.",
        responses={200: AccessLogEntrySerializer(many=True), **ERRORS},
    ),
    retrieve=extend_schema(
        summary="One access-log entry, with its case ids",
        responses={
            200: AccessLogEntryDetailSerializer,
            **ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="No such entry."),
        },
    ),
)
class AccessLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    action_permissions = {"list": [PERM_VIEW_ACCESS_LOG], "retrieve": [PERM_VIEW_ACCESS_LOG]}
    filter_backends = [DjangoFilterBackend, StrictOrderingFilter]
    filterset_class = AccessLogFilter
    ordering_fields = ["created_at", "id", "case_count"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[AccessLogEntry]:
        return AccessLogEntry.objects.select_related("actor")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return AccessLogEntryDetailSerializer if self.action == "retrieve" else AccessLogEntrySerializer

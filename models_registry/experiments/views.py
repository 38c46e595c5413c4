"""The A/B test API under ``model-types/{slug}/ab-tests/``.

    GET  .../ab-tests/                   the model type's tests, newest first (?status=, ?mode=)
    POST .../ab-tests/                   start one: {"model_version_a": "v1.1.0", "model_version_b": "v1.2.0",
                                         "traffic_split": 0.5, "duration_hours": 168} (+ mode,
                                         min_labelled_per_arm, significance_level)
    GET  .../ab-tests/{id}/              the test with its live figures and current decision
    POST .../ab-tests/{id}/stop/         {"reason": "..."}: running -> stopped, nothing promoted
    POST .../ab-tests/{id}/conclude/     {"reason": "..."}: running -> concluded; ship_b promotes B

Who: ML engineers set tests up and may stop them; clinical leads conclude them and may stop them;
both view them. Everyone else 403. A bad set-up is 400 (``invalid`` from the serializer, or the
model's codes: ``unknown_version``, ``same_version``, ``not_approved``, ``invalid_split``, ...);
a second running test is 409 ``ab_test_running``; ending a test that ended already is 409
``invalid_transition``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from learning_engine.actors import request_actor
from learning_engine.exceptions import InvalidRequest
from learning_engine.parsers import SafeJSONParser
from learning_engine.permissions import ActionPermission
from learning_engine.roles import PERM_ADD_AB_TEST, PERM_CONCLUDE_AB_TEST, PERM_STOP_AB_TEST, PERM_VIEW_AB_TEST
from models_registry.experiments.models import ABTest, ABTestTransition
from models_registry.experiments.serializers import (
    ABTestConcludeSerializer,
    ABTestCreateSerializer,
    ABTestDetailSerializer,
    ABTestEndSerializer,
    ABTestSerializer,
)
from models_registry.registry.models import ModelVersion
from models_registry.registry.serializers import RegistryErrorSerializer
from models_registry.registry.views import ERRORS, NOT_FOUND, SLUG, ModelTypeScoped, conflict, validated

TEST_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The A/B test's id.")
WRONG_STATE = "The test has ended already (code 'invalid_transition', with current_status)."
BAD_SETUP = {
    400: OpenApiResponse(
        RegistryErrorSerializer,
        description="Invalid set-up: 'invalid' (fields), 'unknown_version', 'same_version', 'not_approved', "
        "'version_archived', 'invalid_split', 'invalid_significance'.",
    )
}


@extend_schema_view(
    list=extend_schema(
        summary="List a model type's A/B tests",
        description="Newest first, without figures (see the detail).",
        parameters=[SLUG],
        responses={200: ABTestSerializer(many=True), **ERRORS, **NOT_FOUND},
    ),
    retrieve=extend_schema(
        summary="One A/B test with its live figures",
        description="Per arm: assigned, predicted, with feedback, accuracy with a 95% interval, latency "
        "percentiles; in shadow mode the agreement of the arms; the sample ratio check; and the decision "
        "(ship_b, rollback, hold, invalid) of an anytime-valid sequential test, computed on every read.",
        parameters=[SLUG, TEST_ID],
        responses={200: ABTestDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class ABTestViewSet(ModelTypeScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    action_permissions = {
        "list": [PERM_VIEW_AB_TEST],
        "retrieve": [PERM_VIEW_AB_TEST],
        "create": [PERM_VIEW_AB_TEST, PERM_ADD_AB_TEST],
        "stop": [PERM_VIEW_AB_TEST, PERM_STOP_AB_TEST],
        "conclude": [PERM_VIEW_AB_TEST, PERM_CONCLUDE_AB_TEST],
    }
    parser_classes = [SafeJSONParser]
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["status", "mode"]
    lookup_value_regex = r"[0-9]+"
    queryset = ABTest.objects.none()  # for the schema; get_queryset is what serves

    def get_queryset(self) -> QuerySet[ABTest]:
        queryset = ABTest.objects.filter(model_type=self.model_type()).select_related(
            "model_type", "version_a", "version_b", "created_by", "concluded_by"
        )
        if self.action != "list":
            queryset = queryset.prefetch_related(
                Prefetch("transitions", queryset=ABTestTransition.objects.select_related("actor"))
            )
        return queryset

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ABTestSerializer if self.action == "list" else ABTestDetailSerializer

    def present(self, test: ABTest, *, status_code: int = status.HTTP_200_OK) -> Response:
        # get_queryset prefetches the audit trail for every action but the list.
        serializer = ABTestDetailSerializer(self.get_queryset().get(pk=test.pk), context=self.get_serializer_context())
        return Response(serializer.data, status=status_code)

    def version(self, label: str, field: str) -> ModelVersion:
        found = ModelVersion.objects.filter(model_type=self.model_type(), version=label).first()
        if found is None:
            raise InvalidRequest(
                f"{self.model_type().slug} has no version {label!r}.", code="unknown_version", field=field
            )
        return found

    @extend_schema(
        summary="Start an A/B test",
        description="A (normally the active version) against B, both approved. Split mode sends each subject "
        "to one arm for the whole test (a hash of the test and the subject key against traffic_split); shadow "
        "mode answers every request with A and has B predict it silently. The test's arms serve from the next "
        "request in every process. At most one running test per model type (409 'ab_test_running').",
        parameters=[SLUG],
        request=ABTestCreateSerializer,
        responses={
            201: ABTestDetailSerializer,
            **ERRORS,
            **BAD_SETUP,
            **NOT_FOUND,
            **conflict("The model type has a running test (code 'ab_test_running', with its id)."),
        },
        examples=[
            OpenApiExample(
                "The specification's payload",
                value={
                    "model_version_a": "v1.1.0",
                    "model_version_b": "v1.2.0",
                    "traffic_split": 0.5,
                    "duration_hours": 168,
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request, slug: str) -> Response:
        body = validated(ABTestCreateSerializer, request.data)
        test = ABTest.start(
            model_type=self.model_type(),
            version_a=self.version(body["model_version_a"], "model_version_a"),
            version_b=self.version(body["model_version_b"], "model_version_b"),
            traffic_split=body["traffic_split"],
            duration_hours=body["duration_hours"],
            mode=body["mode"],
            min_labelled_per_arm=body["min_labelled_per_arm"],
            significance_level=body["significance_level"],
            by=request_actor(request),
        )
        return self.present(test, status_code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Stop an A/B test",
        description="running -> stopped, at any time, with a reason. Nothing is promoted; routing returns to "
        "the active version. The figures of that moment are recorded.",
        parameters=[SLUG, TEST_ID],
        request=ABTestEndSerializer,
        responses={200: ABTestDetailSerializer, **ERRORS, **NOT_FOUND, **conflict(WRONG_STATE)},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, slug: str, pk: str) -> Response:
        obj, body = self.get_object(), validated(ABTestEndSerializer, request.data)
        obj.stop(by=request.user, reason=body["reason"])
        return self.present(obj)

    @extend_schema(
        summary="Conclude an A/B test",
        description="running -> concluded with the decision of this moment, recorded on the test. 'ship_b' "
        "promotes B through the registry's activation (an activation history row whose reason names the "
        "test); any other decision keeps A.",
        parameters=[SLUG, TEST_ID],
        request=ABTestConcludeSerializer,
        responses={
            200: ABTestDetailSerializer,
            **ERRORS,
            **NOT_FOUND,
            **conflict(WRONG_STATE + " Or 'decision_changed': expected_decision is not the decision of now."),
        },
    )
    @action(detail=True, methods=["post"])
    def conclude(self, request: Request, slug: str, pk: str) -> Response:
        obj, body = self.get_object(), validated(ABTestConcludeSerializer, request.data)
        obj.conclude(by=request.user, reason=body["reason"], expected_decision=body.get("expected_decision"))
        return self.present(obj)

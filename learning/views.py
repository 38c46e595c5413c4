"""The learning cycles of a model type, read-only: ``model-types/{slug}/learning-cycles/``."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from learning.models import CycleTransition, LearningCycle
from learning.serializers import LearningCycleDetailSerializer, LearningCycleSerializer
from learning_engine.permissions import ActionPermission
from models_registry.registry.views import ERRORS, NOT_FOUND, SLUG, ModelTypeScoped

PERM_VIEW_CYCLE = "learning.view_learningcycle"
CYCLE_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The cycle's id.")


@extend_schema_view(
    list=extend_schema(
        summary="List a model type's learning cycles",
        description="Newest first: trigger, status, champion and candidate, whether the envelope held, outcome.",
        parameters=[SLUG],
        responses={200: LearningCycleSerializer(many=True), **ERRORS, **NOT_FOUND},
    ),
    retrieve=extend_schema(
        summary="One learning cycle with its envelope and steps",
        description="The trigger's figures, the dataset and jobs, every candidate with its validation accuracy, "
        "each envelope criterion with its figure, bound and result, the A/B test, and every step.",
        parameters=[SLUG, CYCLE_ID],
        responses={200: LearningCycleDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class LearningCycleViewSet(
    ModelTypeScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[LearningCycle]
):
    permission_classes = [ActionPermission]
    action_permissions = {"list": [PERM_VIEW_CYCLE], "retrieve": [PERM_VIEW_CYCLE]}
    lookup_value_regex = r"[0-9]+"
    queryset = LearningCycle.objects.none()  # for the schema; get_queryset is what serves

    def get_queryset(self) -> QuerySet[LearningCycle]:
        queryset = LearningCycle.objects.filter(model_type=self.model_type()).select_related(
            "model_type", "policy", "champion", "candidate"
        )
        if self.action != "list":
            queryset = queryset.prefetch_related(
                "jobs", Prefetch("transitions", queryset=CycleTransition.objects.select_related("actor"))
            )
        return queryset.order_by("-created_at", "-id")

    def get_serializer_class(self) -> type[LearningCycleSerializer]:
        return LearningCycleSerializer if self.action == "list" else LearningCycleDetailSerializer

"""The monitoring API: ``GET /api/v1/model-types/{slug}/monitoring/`` (ML engineers and clinical leads)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from learning_engine.permissions import requires
from learning_engine.roles import PERM_VIEW_MONITORING
from learning_engine.serializers import ErrorSerializer
from models_registry.models import ModelVersion
from monitoring.figures import monitoring_figures
from monitoring.serializers import MonitoringParamsSerializer, MonitoringSerializer
from training.models import ModelType


class MonitoringView(APIView):
    permission_classes = [requires(PERM_VIEW_MONITORING)]

    @extend_schema(
        summary="A model type's monitoring: drift, live accuracy, calibration",
        description="The monitoring snapshots of the model type's active version (or ?version=): its latest, "
        "its history oldest first, and the latest of each running A/B test's arms. Live accuracy comes with an "
        "anytime-valid interval; `degraded` when that interval lies below the offline accuracy minus the "
        "tolerance. Drift per model input is the PSI against the version's training reference (null when the "
        "version recorded none: `has_reference`). Figures only: no case, value or subject.",
        parameters=[
            OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The model type's slug."),
            MonitoringParamsSerializer,
        ],
        responses={
            200: MonitoringSerializer,
            400: OpenApiResponse(ErrorSerializer, description="A bad ?version= or ?limit= (code 'invalid')."),
            404: OpenApiResponse(ErrorSerializer, description="No such model type, or no such version of it."),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        params = MonitoringParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        model_type = get_object_or_404(ModelType, slug=slug)
        version = None
        if params.validated_data.get("version"):
            version = get_object_or_404(ModelVersion, model_type=model_type, version=params.validated_data["version"])
        figures = monitoring_figures(model_type, version=version, limit=params.validated_data["limit"])
        return Response(MonitoringSerializer(figures).data)

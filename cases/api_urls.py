from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from cases.access_log_views import AccessLogViewSet
from cases.dictionary.views import CohortViewSet
from cases.fhir.views import FhirImportView
from cases.views import CaseViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("cases", CaseViewSet, basename="case")
router.register("cohorts", CohortViewSet, basename="cohort")
router.register("access-log", AccessLogViewSet, basename="access-log")

urlpatterns = [*router.urls, path("fhir/", FhirImportView.as_view(), name="fhir-import")]

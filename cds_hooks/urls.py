"""CDS Hooks routes, at the site's root as the specification has them: ``{baseUrl}/cds-services``,
``{baseUrl}/cds-services/{id}`` and ``{baseUrl}/cds-services/{id}/feedback`` (no trailing slash)."""

from __future__ import annotations

from django.urls import path

from cds_hooks.views import DiscoveryView, FeedbackView, ServiceView

urlpatterns = [
    path("cds-services", DiscoveryView.as_view(), name="cds-discovery"),
    path("cds-services/<str:service_id>", ServiceView.as_view(), name="cds-service"),
    path("cds-services/<str:service_id>/feedback", FeedbackView.as_view(), name="cds-feedback"),
]

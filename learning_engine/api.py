"""The /api/v1/ router. Each app registers its viewsets in its own ``api_urls`` module."""

from __future__ import annotations

from django.urls import include, path
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from learning_engine.health import HealthView

urlpatterns = [
    path("auth/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("auth/token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
    path("health/", HealthView.as_view(), name="health"),
    path("", include("cases.api_urls")),
    path("", include("training.api_urls")),
    path("", include("models_registry.api_urls")),
    path("", include("models_registry.serving_urls")),
]

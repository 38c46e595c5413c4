"""The /api/v1/ router. Each app registers its viewsets in its own ``api_urls`` module."""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from learning_engine.health import HealthView
from learning_engine.lockout import lockout_payload
from learning_engine.serializers import ErrorSerializer
from learning_engine.tokens import TokenObtainSerializer, TokenRotateSerializer

TOKEN_REFUSED = {
    401: OpenApiResponse(
        ErrorSerializer,
        description="Wrong credentials or an inactive user (code 'no_active_account'), or a refresh token "
        "that is invalid, expired, already rotated or blacklisted (code 'token_not_valid'), whose login is "
        "older than JWT_SESSION_HOURS (code 'session_expired'), or whose user's password, status or roles "
        "changed since the login (code 'credentials_changed').",
    )
}

LOCKED_OUT = {
    429: OpenApiResponse(
        ErrorSerializer,
        description="Too many requests from this address (code 'throttled'), or this username and address "
        "are locked out after AXES_FAILURE_LIMIT failed logins, the right password included (code "
        "'locked_out'); the Retry-After header says when to try again.",
    )
}


# simplejwt's views, throttled per client address (scope "token", THROTTLE_TOKEN_RATE) so that
# passwords and stolen refresh tokens cannot be tried at speed.
# The tokens are bound to the login and the user's credentials (learning_engine.tokens).
@extend_schema(responses={200: TokenObtainSerializer, **TOKEN_REFUSED, **LOCKED_OUT})
class TokenObtainView(TokenObtainPairView):
    serializer_class = TokenObtainSerializer
    throttle_scope = "token"

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            # django-axes marks the (DRF) request when this username and address are locked out;
            # the answer is then 429 locked_out, the right password included.
            if getattr(request, "axes_locked_out", False):
                payload, seconds = lockout_payload(request._request)
                return Response(payload, status=429, headers={"Retry-After": str(seconds)} if seconds else None)
            raise


@extend_schema(responses={200: TokenRotateSerializer, **TOKEN_REFUSED})
class TokenRefreshThrottledView(TokenRefreshView):
    serializer_class = TokenRotateSerializer
    throttle_scope = "token"


@extend_schema(responses={200: OpenApiResponse(description="The refresh token is blacklisted."), **TOKEN_REFUSED})
class TokenBlacklistThrottledView(TokenBlacklistView):
    throttle_scope = "token"


urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", TokenRefreshThrottledView.as_view(), name="token_refresh"),
    path("auth/token/blacklist/", TokenBlacklistThrottledView.as_view(), name="token_blacklist"),
    path("health/", HealthView.as_view(), name="health"),
    path("", include("cases.api_urls")),
    path("", include("training.api_urls")),
    path("", include("models_registry.api_urls")),
    path("", include("models_registry.serving_urls")),
]

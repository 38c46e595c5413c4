"""The /api/v1/ router. Each app registers its viewsets in its own ``api_urls`` module."""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from learning_engine.health import HealthView
from learning_engine.lockout import forget_failures, lockout_payload
from learning_engine.parsers import SafeJSONParser
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


# The token endpoints' bodies as a client sees them (simplejwt's serializers declare the tokens
# as no field, so the schema would say "no response body" and a generated client could not read them).
TOKEN_PAIR = inline_serializer(
    "TokenPair",
    fields={
        "access": serializers.CharField(help_text="The access token: send it as 'Authorization: Bearer ...'."),
        "refresh": serializers.CharField(help_text="The refresh token: for auth/token/refresh/ and blacklist/."),
    },
)
LOGIN = inline_serializer("Login", fields={"username": serializers.CharField(), "password": serializers.CharField()})
REFRESH = inline_serializer("Refresh", fields={"refresh": serializers.CharField()})


# simplejwt's views, throttled per client address (scope "token", THROTTLE_TOKEN_RATE) so that
# passwords and stolen refresh tokens cannot be tried at speed, and taking JSON only.
# The tokens are bound to the login and the user's credentials (learning_engine.tokens).
@extend_schema(
    summary="Log in: a JWT access and refresh token",
    request=LOGIN,
    responses={200: TOKEN_PAIR, **TOKEN_REFUSED, **LOCKED_OUT},
    examples=[
        OpenApiExample(
            "A clinician", value={"username": "demo-clinician", "password": "demo-clinician-2026"}, request_only=True
        )
    ],
)
class TokenObtainView(TokenObtainPairView):
    serializer_class = TokenObtainSerializer
    throttle_scope = "token"
    parser_classes = [SafeJSONParser]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            # django-axes marks the (DRF) request when this username and address are locked out;
            # the answer is then 429 locked_out, the right password included.
            if getattr(request, "axes_locked_out", False):
                payload, seconds = lockout_payload(request._request)
                return Response(payload, status=429, headers={"Retry-After": str(seconds)} if seconds else None)
            raise
        if response.status_code == 200:
            data = request.data if isinstance(request.data, dict) else {}  # a 200 had a JSON object
            forget_failures(request._request, str(data.get("username", "")))
        return response


@extend_schema(
    summary="Rotate the refresh token: a new access and refresh token",
    request=REFRESH,
    responses={200: TOKEN_PAIR, **TOKEN_REFUSED},
)
class TokenRefreshThrottledView(TokenRefreshView):
    serializer_class = TokenRotateSerializer
    throttle_scope = "token"
    parser_classes = [SafeJSONParser]


@extend_schema(
    summary="Log out: blacklist the refresh token",
    request=REFRESH,
    responses={
        200: OpenApiResponse(OpenApiTypes.OBJECT, description="An empty object: the refresh token is blacklisted."),
        **TOKEN_REFUSED,
    },
)
class TokenBlacklistThrottledView(TokenBlacklistView):
    throttle_scope = "token"
    parser_classes = [SafeJSONParser]


urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", TokenRefreshThrottledView.as_view(), name="token_refresh"),
    path("auth/token/blacklist/", TokenBlacklistThrottledView.as_view(), name="token_blacklist"),
    # Serving first: Django tries the patterns in order, and predict, the busiest path, came after
    # some 70 router patterns (7% of a predict request's CPU). No other app's pattern matches its
    # three paths, nor they another's (tests/learning_engine/test_api_urls.py).
    path("", include("models_registry.serving.urls")),
    path("health/", HealthView.as_view(), name="health"),
    path("", include("cases.api_urls")),
    path("", include("training.api_urls")),
    path("", include("models_registry.api_urls")),
    path("", include("monitoring.api_urls")),
    path("", include("learning.api_urls")),
]

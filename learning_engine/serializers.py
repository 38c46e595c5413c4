"""Serializers shared by every API (for the OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error: a machine-readable ``code`` and a message, sometimes more (apps extend it)."""

    code = serializers.CharField()
    detail = serializers.CharField()
    # By field (lists of messages, nested for nested fields), or a list for a list body: any JSON.
    errors = serializers.JSONField(  # type: ignore[assignment]  # DRF names its own `errors` property
        required=False,
        help_text="Validation errors by field (code 'invalid'); nested like the body.",
    )
    current_status = serializers.CharField(required=False, help_text="The object's status (409 on a wrong state).")

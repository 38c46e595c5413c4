"""The CDS Hooks endpoints in the OpenAPI document: their bodies' shapes (documentation only: the
views check bodies by the specification's rules, ``cds_hooks.services``) and their security scheme,
the record system's signed JWT, which no user token or session can stand in for."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers

SCHEME = "cdsHooksJwt"


class CdsHooksJwtScheme(OpenApiAuthenticationExtension):
    target_class = "cds_hooks.auth.CdsHooksAuthentication"
    name = SCHEME

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "CDS Hooks 2.0: a JWT the record system signs with its own key (ES384 or RS384; "
            "published as a JWK Set, registered in the admin as a CDS Hooks client), with `iss`, `aud` (the "
            "endpoint's URL), `iat`, `exp` and a `jti` used once. An API token or a session is refused (401).",
        }


class ServiceSerializer(serializers.Serializer):
    hook = serializers.ChoiceField(choices=["patient-view", "order-select"])
    title = serializers.CharField()
    description = serializers.CharField()
    id = serializers.CharField(help_text="patient-view-{slug} or order-select-{slug}")
    prefetch = serializers.DictField(
        child=serializers.CharField(),
        help_text="Prefetch templates: 'patient' (the Patient) and 'obs-{finding}' (its latest Observation of "
        "the finding's LOINC code).",
    )


class DiscoverySerializer(serializers.Serializer):
    services = ServiceSerializer(many=True)


class CallSerializer(serializers.Serializer):
    hook = serializers.ChoiceField(choices=["patient-view", "order-select"], help_text="The service's own hook.")
    hookInstance = serializers.UUIDField()  # the specification's names
    context = serializers.DictField(help_text="userId and patientId (order-select: selections, draftOrders too).")  # type: ignore[assignment]
    prefetch = serializers.DictField(
        required=False,
        help_text="The prefetched resources by template key: a Patient, a searchset Bundle of Observations, or "
        "null (no such data). A key the service asks for and the call lacks is 412 prefetch_missing.",
    )
    fhirServer = serializers.URLField(required=False)
    fhirAuthorization = serializers.DictField(
        required=False, help_text="Taken but not used: the service never reads the FHIR server (412 instead)."
    )


class CodingSerializer(serializers.Serializer):
    system = serializers.CharField()
    code = serializers.CharField()
    display = serializers.CharField(required=False)


class LinkSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    url = serializers.URLField()
    type = serializers.CharField()


class SourceSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]


class CardSerializer(serializers.Serializer):
    uuid = serializers.UUIDField(required=False, help_text="Absent on a card without a prediction.")
    summary = serializers.CharField()
    indicator = serializers.ChoiceField(choices=["info", "warning", "critical"])
    detail = serializers.CharField(required=False)
    source = SourceSerializer()  # type: ignore[assignment]
    links = LinkSerializer(many=True, required=False)
    overrideReasons = CodingSerializer(many=True, required=False)


class CardsSerializer(serializers.Serializer):
    cards = CardSerializer(many=True)


class OverrideReasonSerializer(serializers.Serializer):
    reason = CodingSerializer(required=False)
    userComment = serializers.CharField(required=False, help_text="Never stored.")


class FeedbackEntrySerializer(serializers.Serializer):
    card = serializers.UUIDField()
    outcome = serializers.ChoiceField(choices=["accepted", "overridden"])
    outcomeTimestamp = serializers.CharField()
    overrideReason = OverrideReasonSerializer(required=False)


class FeedbackSerializer(serializers.Serializer):
    feedback = FeedbackEntrySerializer(many=True)


class FeedbackResultSerializer(serializers.Serializer):
    card = serializers.CharField()
    status = serializers.ChoiceField(choices=["recorded", "already_recorded", "noted"])


class FeedbackAnswerSerializer(serializers.Serializer):
    feedback = FeedbackResultSerializer(many=True)

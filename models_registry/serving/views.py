"""The serving API: predict, batch predict, and feedback on a prediction.

Who may do what
---------------
- Predict: users holding ``models_registry.predict`` (clinicians, prediction clients) and
  superusers. Everyone else 403, anonymous 401.
- Feedback: users holding ``models_registry.give_feedback`` (the same roles). Which predictions:
  a prediction client (a hospital system) only on the predictions it requested itself, since one
  site must not mark another's; a clinician (``cases.review_case``) or a superuser on any, since
  the clinician who confirms a diagnosis is rarely the system that asked for the prediction.
  Another user's prediction answers 404 to a prediction client, exactly like an id that does not
  exist. The case sent with feedback is submitted for review with the feedback giver as the
  submitter: the four-eyes rule of case review then applies to them as to anyone.

The cost of a warm predict request
----------------------------------
One SQL query: the prediction's INSERT, committed before the answer. Authentication reads the
token and the user's cached credential state, not the user row (``StatelessJWTAuthentication``,
``learning_engine.stateless_auth``: the permission comes from the token's ``perms`` claim, which
the credential fingerprint covers); routing reads the serving generation from the cache, not the
database (``models_registry.serving.router``); the model is in memory
(``models_registry.serving.model_cache``). The data dictionary check of a version (the version it
was trained under, with its training ranges) is read with its model, once per process
(``models_registry.serving.model_cache``); the cohort's current version, for versions that
recorded none, once per routing table (``models_registry.serving.inputs.dictionary_check``).
Feedback looks its user up (``ServingJWTAuthentication``: one query computes the permission mask
with the user), as it reads the user's case source and review permission anyway.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.access_log import AccessLogEntry, record_access
from cases.interchange import RecordError
from learning_engine.actors import request_actor
from learning_engine.exceptions import InvalidRequest
from learning_engine.parsers import SafeJSONParser
from learning_engine.roles import PERM_GIVE_FEEDBACK, PERM_PREDICT, PERM_REVIEW_CASE
from learning_engine.serializers import ErrorSerializer
from learning_engine.stateless_auth import StatelessJWTAuthentication
from learning_engine.tokens import PERMISSION_MASK, SessionJWTAuthentication, SessionJWTScheme, permission_bit
from models_registry.serving.examples import FEEDBACK_EXAMPLES, PREDICT_BATCH_EXAMPLES, PREDICT_EXAMPLES
from models_registry.serving.feedback import feedback_case_record
from models_registry.serving.fhir import (
    FHIR_JSON,
    FHIRJSONParser,
    FHIRJSONRenderer,
    risk_assessment,
    subject_reference,
)
from models_registry.serving.fhir_input import ResourceRefused, parameters_record
from models_registry.serving.inputs import (
    ALLOW_MISSING,
    SUBJECT_KEY,
    DictionaryCheck,
    PredictionInput,
    RecordRefused,
    dictionary_check,
    prediction_input,
)
from models_registry.serving.models import Prediction, case_source_for
from models_registry.serving.router import ROUTER, Route
from models_registry.serving.serializers import (
    FeedbackRequestSerializer,
    FeedbackSerializer,
    PredictBatchSerializer,
    PredictionAnswerSerializer,
    PredictRecordSerializer,
)
from models_registry.serving.serve import check_of, serve


class ServingJWTAuthentication(SessionJWTAuthentication):
    """Feedback's JWT authentication: ``SessionJWTAuthentication`` (the user looked up, its
    permission mask computed by the same query), documented under the one scheme."""


class ServingJWTScheme(SessionJWTScheme):
    """OpenAPI: the serving endpoints take the same bearer JWT as every other endpoint, so they are
    documented under the same scheme (``jwtAuth``): a client authorizes once."""

    target_class = "models_registry.serving.views.ServingJWTAuthentication"
    # Requires "jwtAuth" but defines nothing: SessionJWTScheme defines it once (drf-spectacular
    # refuses one component name defined by two authentication classes). A list of names is the
    # extension API's way to pair names with definitions, here none.
    name = ["jwtAuth"]  # type: ignore[assignment]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        return []


class StatelessJWTScheme(ServingJWTScheme):
    """OpenAPI: predict's stateless authentication takes the same bearer JWT (``jwtAuth``)."""

    target_class = "learning_engine.stateless_auth.StatelessJWTAuthentication"


def serving_permission(permission: str) -> type[BasePermission]:
    """Active users holding ``permission`` (superusers hold all), read from the permission mask
    that JWT authentication set (the user query's, or the token's ``perms`` claim in
    ``StatelessJWTAuthentication``), else through ``has_perm`` (session authentication)."""
    bit = permission_bit(permission)

    class _Serving(BasePermission):
        message = "You do not have permission to perform this action."

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            if not (user and user.is_authenticated and user.is_active):
                return False
            if user.is_superuser:
                return True
            mask = getattr(user, PERMISSION_MASK, None)
            return bool(mask & bit) if mask is not None else user.has_perm(permission)

    _Serving.__name__ = f"Serving({permission})"
    return _Serving


AUTHENTICATION = [ServingJWTAuthentication, SessionAuthentication]
# Predict: the token and the cached credential state, no user query (learning_engine.stateless_auth).
PREDICT_AUTHENTICATION = [StatelessJWTAuthentication, SessionAuthentication]
# The records are nested objects: JSON only (a form or multipart body cannot carry them, and a
# schema offering them makes generated clients send them that way).
PARSERS = [SafeJSONParser]
ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer,
        description="Invalid record (code 'invalid_record', with 'field'); against the cohort's data dictionary: "
        "'unknown_findings' (with 'unknown': positions), 'missing_findings' (with 'missing': the model inputs "
        "absent; send allow_missing to have them imputed), 'too_few_findings', 'outside_hard_limits', "
        "'invalid_value'; batch too large.",
    ),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not a clinician or prediction client."),
    404: OpenApiResponse(ErrorSerializer, description="Unknown model type."),
    409: OpenApiResponse(ErrorSerializer, description="No active version (code 'no_active_version')."),
}


def _refusal(exc: RecordError, index: int, prefix: str) -> InvalidRequest:
    """The 400 of a record refused by its own checks or by its dictionary (``RecordRefused``)."""
    where = f"{prefix}[{index}]" if prefix else ""
    field = ".".join(part for part in (where, exc.field) if part)
    extra = dict(exc.extra) if isinstance(exc, RecordRefused) else {}
    return InvalidRequest(
        f"{field}: {exc.message}" if field else exc.message,
        code=exc.code if isinstance(exc, RecordRefused) else "invalid_record",
        field=field,
        **({"index": index} if prefix else {}),
        **extra,
    )


def _inputs(records: list[Any], *, prefix: str = "", allow_missing: bool = False) -> list[PredictionInput]:
    inputs = []
    for index, record in enumerate(records):
        try:
            inputs.append(prediction_input(record, allow_missing=allow_missing))
        except RecordError as exc:
            raise _refusal(exc, index, prefix) from None
    return inputs


def _served_route(slug: str) -> tuple[Route, Callable[[], DictionaryCheck | None]]:
    """The route, and where the records of a version without its own dictionary version are
    checked: the cohort's current one (read at most once per routing table, and only if needed)."""
    route, table = ROUTER.route_in_table(slug)
    route.check_served()  # 409 before the body is read: without a version there is nothing to answer
    return route, functools.partial(dictionary_check, table, route.cohort)


def _answer(
    route: Route,
    inputs: list[PredictionInput],
    fallback: Callable[[], DictionaryCheck | None],
    request: Request,
    *,
    started: float,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """``serve``, its dictionary refusals (each record against its arm's version) as 400s."""
    try:
        return serve(route, inputs, by=request_actor(request), started=started, fallback=fallback)
    except RecordRefused as exc:
        raise _refusal(exc, exc.index or 0, prefix) from None


class PredictView(APIView):
    authentication_classes = PREDICT_AUTHENTICATION
    # A FHIR Parameters body (application/fhir+json) too: a Patient and its Observations.
    parser_classes = [*PARSERS, FHIRJSONParser]
    # ?format=fhir (or Accept: application/fhir+json) answers a FHIR RiskAssessment.
    renderer_classes = [JSONRenderer, FHIRJSONRenderer, BrowsableAPIRenderer]
    permission_classes = [serving_permission(PERM_PREDICT)]
    throttle_scope = "predict"  # THROTTLE_PREDICT_RATE (learning_engine.throttling)

    @extend_schema(
        summary="Predict a diagnosis for one record",
        description="The active version of the model type answers; the prediction is logged without any "
        "identifier of the request (subject key as an HMAC pseudonym, input as a hash). The body is the JSON "
        "record, or (application/fhir+json) a FHIR R4 Parameters resource: 'patient' (a Patient, the subject), "
        "'observation' (an Observation or a Bundle of them, repeated as needed), 'allow_missing' (valueBoolean).",
        request={
            "application/json": PredictRecordSerializer,
            # A FHIR R4 Parameters resource: "patient" (a Patient, the subject), "observation" (an
            # Observation or a Bundle of them, repeated as needed), "allow_missing" (valueBoolean).
            FHIR_JSON: OpenApiTypes.OBJECT,
        },
        responses={
            (200, "application/json"): PredictionAnswerSerializer,
            (200, FHIR_JSON): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="With ?format=fhir or Accept: application/fhir+json: a FHIR R4 RiskAssessment "
                "(one prediction per diagnosis, subject from subject_key, which is then required: 400 "
                "'subject_required').",
            ),
            **ERRORS,
        },
        examples=PREDICT_EXAMPLES,
    )
    def post(self, request: Request, slug: str) -> Response:
        started = time.perf_counter()
        route, fallback = _served_route(slug)
        data = request.data
        if (request.content_type or "").startswith(FHIR_JSON):
            data = _parameters_record(route, fallback, data)
        fhir = request.accepted_renderer.format == FHIRJSONRenderer.format
        # Before predicting: a RiskAssessment must name its subject, and nothing is logged for a refusal.
        subject = subject_reference(data.get(SUBJECT_KEY) if isinstance(data, dict) else None) if fhir else None
        inputs = _inputs([data])
        answer = _answer(route, inputs, fallback, request, started=started)[0]
        if subject is not None:
            return Response(risk_assessment(answer, subject=subject, names=_diagnosis_names(route, answer, fallback)))
        return Response(answer)


def _parameters_record(route: Route, fallback: Callable[[], DictionaryCheck | None], body: Any) -> dict[str, Any]:
    """The prediction record of a FHIR Parameters body, read under the dictionary of the version
    that serves (its findings' LOINC codes and units)."""
    from models_registry.serving.model_cache import MODEL_CACHE

    check = check_of(MODEL_CACHE.get(route.arms[0]), fallback)
    if check is None:
        raise InvalidRequest(
            "This model type's cohort has no data dictionary, so FHIR Observations cannot be read for it; "
            "send the JSON record.",
            code="no_dictionary",
        )
    try:
        return parameters_record(body, check.definition)
    except ResourceRefused as exc:
        raise InvalidRequest(f"{exc.field}: {exc.message}", code=exc.code, field=exc.field) from None


def _diagnosis_names(
    route: Route, answer: dict[str, Any], fallback: Callable[[], DictionaryCheck | None]
) -> dict[str, str]:
    """The diagnosis display names of the version that answered (its dictionary's code set)."""
    from models_registry.serving.model_cache import MODEL_CACHE

    for arm in route.arms:
        if arm.version == answer["model_version"]:
            check = check_of(MODEL_CACHE.get(arm), fallback)
            return dict(check.diagnosis_names) if check is not None else {}
    return {}


class PredictBatchView(APIView):
    authentication_classes = PREDICT_AUTHENTICATION
    parser_classes = PARSERS
    permission_classes = [serving_permission(PERM_PREDICT)]
    throttle_scope = "predict"
    max_body_bytes = "MAX_PREDICT_BODY_BYTES"

    @extend_schema(
        summary="Predict diagnoses for a batch of records",
        description="Up to MAX_PREDICT_BATCH records (default 1000); one answer and one logged prediction "
        "per record, in order. One invalid record refuses the whole batch (400, with its index).",
        request=PredictBatchSerializer,
        responses={200: PredictionAnswerSerializer(many=True), **ERRORS},
        examples=PREDICT_BATCH_EXAMPLES,
    )
    def post(self, request: Request, slug: str) -> Response:
        started = time.perf_counter()
        route, fallback = _served_route(slug)
        data = request.data
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise InvalidRequest('Send {"records": [...]}: a list of records.', code="invalid_batch")
        if not records:
            raise InvalidRequest("The batch has no records.", code="empty_batch")
        limit = int(settings.MAX_PREDICT_BATCH)
        if len(records) > limit:
            raise InvalidRequest(
                f"The batch has {len(records)} records; at most {limit} are taken per request.",
                code="batch_too_large",
                limit=limit,
            )
        allow_missing = data.get(ALLOW_MISSING, False)  # type: ignore[union-attr]  # a dict: records were found
        if not isinstance(allow_missing, bool):
            raise InvalidRequest(f"{ALLOW_MISSING}: must be true or false.", code="invalid_batch", field=ALLOW_MISSING)
        inputs = _inputs(records, prefix="records", allow_missing=allow_missing)
        return Response(_answer(route, inputs, fallback, request, started=started, prefix="records"))


class FeedbackView(APIView):
    authentication_classes = AUTHENTICATION
    parser_classes = PARSERS
    permission_classes = [serving_permission(PERM_GIVE_FEEDBACK)]
    throttle_scope = "feedback"  # THROTTLE_FEEDBACK_RATE (learning_engine.throttling)

    @extend_schema(
        summary="Confirm the diagnosis of a prediction",
        description="Marks the prediction right or wrong (once: a second feedback is 409 'feedback_exists'), "
        "updates the version's live accuracy and, with 'case', submits the case for review under the "
        "sender's case source (an account bound to a source may send only that one, or none: 403 "
        "'source_not_allowed'; an account with no source and no right to add cases: 403 'no_case_source'). "
        "A case whose source and external id are on file already is left as it is; the answer is the same "
        "as for a new case, so it tells nothing about which encounters exist.",
        request=FeedbackRequestSerializer,
        examples=FEEDBACK_EXAMPLES,
        responses={
            201: FeedbackSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="Invalid body or case ('invalid_case', 'diagnosis_mismatch')."
            ),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            403: OpenApiResponse(
                ErrorSerializer,
                description="Not a clinician or prediction client; a case under a source not yours "
                "('source_not_allowed', 'no_case_source').",
            ),
            404: OpenApiResponse(
                ErrorSerializer, description="No such prediction (or not yours, for a prediction client)."
            ),
            409: OpenApiResponse(ErrorSerializer, description="Feedback given already ('feedback_exists')."),
            429: OpenApiResponse(ErrorSerializer, description="Too many requests ('throttled')."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        body = FeedbackRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        prediction = self.get_prediction(request, pk)
        code = body.validated_data["diagnosis_code"]
        record = None
        if body.validated_data.get("case") is not None:
            try:
                record = feedback_case_record(
                    body.validated_data["case"],
                    cohort=prediction.model_type.cohort,
                    diagnosis_code=code,
                    source=case_source_for(request.user),
                )
            except RecordError as exc:
                raise InvalidRequest(str(exc), code="invalid_case", field=exc.field) from None
        feedback = prediction.give_feedback(diagnosis_code=code, by=request_actor(request), case_record=record)
        if feedback.case_id is not None:
            # A raw record taken in, like a submission through the case API (docs/privacy.md).
            record_access(
                action=AccessLogEntry.Action.SUBMIT, case_ids=[feedback.case_id], actor=request.user, request=request
            )
        return Response(FeedbackSerializer(feedback).data, status=status.HTTP_201_CREATED)

    def get_prediction(self, request: Request, pk: int) -> Prediction:
        user = request.user
        any_prediction = user.is_superuser or user.has_perm(PERM_REVIEW_CASE)
        prediction = (
            Prediction.objects.feedback_allowed_for(user, any_prediction=any_prediction)
            .select_related("model_type")
            .filter(pk=pk)
            .first()
        )
        if prediction is None:
            raise NotFound("No such prediction.")
        return prediction

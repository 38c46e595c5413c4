"""The CDS Hooks endpoints: discovery, the services, and feedback (CDS Hooks 2.0).

Who may call: a record system registered as a ``TrustedClient``, with a JWT signed by its key
(``cds_hooks.auth``), acting as its account; the account must hold the predict permission
(discovery and the services) or the feedback permission (feedback), as for the REST API. Any
other caller is 401 (no token or a refused one) or 403 (an account without the permission).

A service call predicts through serving's one path (``models_registry.serving.serve``): the A/B
routing (sticky per patient), the dictionary check of the answering version, the prediction log
(under the client's account; the patient only as an HMAC of the record system's patient id).
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import get_script_prefix, get_urlconf, reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases.interchange import RecordError
from cds_hooks import cards
from cds_hooks.auth import CdsHooksAuthentication, TokenUse
from cds_hooks.models import TrustedClient
from cds_hooks.openapi import (
    CallSerializer,
    CardsSerializer,
    DiscoverySerializer,
    FeedbackAnswerSerializer,
    FeedbackSerializer,
)
from cds_hooks.prefetch import PrefetchRefused, read_prefetch, required_keys
from cds_hooks.services import (
    HOOKS,
    CallRefused,
    describe,
    parse_call,
    parse_service_id,
    prefetched_findings,
    served_checks,
)
from learning_engine.actors import request_actor
from learning_engine.exceptions import DomainError, InvalidRequest
from learning_engine.parsers import SafeJSONParser
from learning_engine.roles import PERM_GIVE_FEEDBACK, PERM_PREDICT
from learning_engine.serializers import ErrorSerializer
from models_registry.serving.inputs import DictionaryCheck, RecordRefused, dictionary_check, prediction_input
from models_registry.serving.models import Prediction
from models_registry.serving.router import ROUTER, Route, RoutingTable, UnknownModelType
from models_registry.serving.serve import serve
from models_registry.serving.views import serving_permission
from training.models import ModelType


class PreconditionFailed(DomainError):
    """The record system did not send prefetch data the service needs (CDS Hooks: 412)."""

    code = "prefetch_missing"
    status_code = status.HTTP_412_PRECONDITION_FAILED


class CdsHooksView(APIView):
    authentication_classes = [CdsHooksAuthentication]
    parser_classes = [SafeJSONParser]
    permission_classes = [serving_permission(PERM_PREDICT)]

    def client(self, request: Request) -> TrustedClient:
        client = request.auth
        assert isinstance(client, TrustedClient)
        return client


_names: tuple[RoutingTable | None, dict[str, str]] = (None, {})


def model_names(table: RoutingTable) -> dict[str, str]:
    """Model type names by slug, read once per routing table (a table lives for one serving
    generation, so a renamed model type shows under its new name from the next activation on)."""
    global _names
    if _names[0] is not table:
        _names = (table, dict(ModelType.objects.values_list("slug", "name")))
    return _names[1]


def _route(slug: str) -> tuple[Route, RoutingTable]:
    try:
        route, table = ROUTER.route_in_table(slug)
    except UnknownModelType:
        raise NotFound("There is no such CDS service.") from None
    if not route.arms:
        raise NotFound("There is no such CDS service (the model type has no active version).")
    return route, table


# The 401 of a CDS Hooks endpoint has codes of its own (cds_hooks.auth).
TOKEN_REFUSED = OpenApiResponse(
    ErrorSerializer,
    description="No token, or one refused: 'not_authenticated', 'malformed_token', 'algorithm_not_allowed', "
    "'unknown_issuer', 'unknown_key', 'invalid_signature', 'wrong_audience', 'token_expired', "
    "'token_not_yet_valid', 'token_lifetime_too_long', 'token_replayed', 'missing_claim', 'invalid_token', "
    "'untrusted_jku', 'token_too_large', 'keys_unavailable', 'inactive_client'. A user's API token or "
    "session is no CDS Hooks token.",
)


class DiscoveryView(CdsHooksView):
    @extend_schema(
        summary="CDS Hooks discovery",
        description="The CDS Services (CDS Hooks 2.0): per model type with an active version, a patient-view "
        "and an order-select service with their prefetch templates.",
        responses={200: DiscoverySerializer, 401: TOKEN_REFUSED},
    )
    def get(self, request: Request) -> Response:
        table = ROUTER.table()
        served = sorted(slug for slug, route in table.routes.items() if route.arms)
        names = model_names(table)
        services = []
        for slug in served:
            findings = prefetched_findings(served_checks(table.routes[slug], table))
            services += [describe(hook, slug, names.get(slug, slug), findings) for hook in HOOKS]
        return Response({"services": services})


class ServiceView(CdsHooksView):
    """A successful call's jti is written in the prediction log's transaction (one commit per
    call: ``serve``'s ``extra_writes``); any other answer (4xx, a refused record's card, a 500)
    writes it on its own, and answers ``token_replayed`` if it was used already, since the body is
    not signed."""

    throttle_scope = "predict"
    token_use: TokenUse

    def setup(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)
        self.token_use = TokenUse()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if self.token_use.pending is not None:
            try:
                self.token_use.write()
            except AuthenticationFailed as exc:
                response = self.handle_exception(exc)
        return super().finalize_response(request, response, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        try:
            return super().handle_exception(exc)
        except Exception:
            # An error DRF does not answer (a 500): the token is spent all the same.
            if self.token_use.pending is not None:
                with contextlib.suppress(AuthenticationFailed):
                    self.token_use.write()
            raise

    @extend_schema(
        summary="Call a CDS Service",
        description="A patient-view or order-select call with its prefetch: the most likely diagnosis as a "
        "card, predicted and logged as predict does.",
        request=CallSerializer,
        responses={
            200: CardsSerializer,
            401: TOKEN_REFUSED,
            412: OpenApiResponse(
                ErrorSerializer,
                description="A prefetch key the service needs is missing ('prefetch_missing', with 'missing'); "
                "the service never reads the record system's FHIR server, fhirAuthorization or not.",
            ),
        },
    )
    def post(self, request: Request, service_id: str) -> Response:
        started = time.perf_counter()
        parsed = parse_service_id(service_id)
        if parsed is None:
            raise NotFound("There is no such CDS service.")
        hook, slug = parsed
        route, table = _route(slug)
        try:
            call = parse_call(request.data, hook)
        except CallRefused as exc:
            raise InvalidRequest(f"{exc.field}: {exc.message}" if exc.field else exc.message, field=exc.field) from None
        checks = served_checks(route, table)
        findings = prefetched_findings(checks)
        missing = [key for key in required_keys(findings) if key not in call.prefetch]
        if missing:
            raise PreconditionFailed(
                "The call lacks prefetched data this service needs (and the service does not read the FHIR "
                f"server): {', '.join(missing)}.",
                missing=missing,
            )
        client = self.client(request)
        model_name = model_names(table).get(slug, slug)
        if not checks:
            raise NotFound("There is no such CDS service (its cohort has no data dictionary).")
        try:
            read = read_prefetch(call, checks[0].definition, client_id=client.pk)
        except PrefetchRefused as exc:
            raise InvalidRequest(f"{exc.field}: {exc.message}", code=exc.code, field=exc.field, **exc.extra) from None
        try:
            item = prediction_input(read.record)
        except RecordError as exc:  # the mapping gives numbers and a known sex: a bug if reached
            raise InvalidRequest(exc.message, code="invalid_prefetch", field=exc.field) from None
        fallback = lambda: dictionary_check(table, route.cohort)  # noqa: E731
        try:
            answer = serve(
                route,
                [item],
                by=request_actor(request),
                started=started,
                fallback=fallback,
                extra_writes=self.token_use.write_in_transaction,
            )[0]
        except RecordRefused as exc:
            self.token_use.write()  # nothing was predicted or logged
            return Response({"cards": [_refused_card(exc, model_name, checks[0], read.notes)]})
        self.token_use.written()
        check = next((c for c in checks if c.version == answer.get("dictionary_version")), checks[0])
        diagnosis_names, finding_names = _names_of(check)
        card = cards.prediction_card(
            answer,
            model_name=model_name,
            diagnosis_names=diagnosis_names,
            finding_names=finding_names,
            feedback_url=_feedback_url(client, answer["id"]),
            notes=read.notes,
        )
        return Response({"cards": [card]})


# id(check) -> (the check, its diagnosis names, its findings' display names): a check lives as long
# as its model version is cached, so its names are worked out once, not on every call.
_NAMES: dict[int, tuple[DictionaryCheck, dict[str, str], dict[str, str]]] = {}
_MAX_NAMES = 64


def _names_of(check: DictionaryCheck) -> tuple[dict[str, str], dict[str, str]]:
    """(diagnosis code -> display name, finding key -> display name) of a dictionary check; the
    caller must not change them."""
    entry = _NAMES.get(id(check))
    if entry is None or entry[0] is not check:  # an id is reused only once its check is gone
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        names = {key: finding.display_name for key, finding in check.findings.items()}
        entry = (check, dict(check.diagnosis_names), names)
        _NAMES[id(check)] = entry
    return entry[1], entry[2]


def _refused_card(exc: RecordRefused, model_name: str, check: DictionaryCheck, notes: list[str]) -> dict[str, Any]:
    names = _names_of(check)[1]
    missing = exc.extra.get("missing") or []
    problems = [f"Missing: {', '.join(names.get(key, key) for key in missing)}."] if missing else []
    return cards.no_prediction_card(model_name=model_name, reason=exc.message, problems=problems + notes)


_SOME_ID = 987654321


@functools.lru_cache(maxsize=16)
def _feedback_path(script_prefix: str, urlconf: str | None) -> tuple[str, str]:
    """The feedback path of a prediction below the script prefix, split around its id: one
    ``reverse()`` per URL configuration, not one per call."""
    path = reverse("prediction-feedback", urlconf=urlconf, kwargs={"pk": _SOME_ID}).removeprefix(script_prefix)
    head, _, tail = path.partition(str(_SOME_ID))
    return head, tail


def _feedback_url(client: TrustedClient, prediction_id: int) -> str:
    head, tail = _feedback_path(get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF)
    return f"{client.base_url}/{head}{prediction_id}{tail}"


OUTCOMES = ("accepted", "overridden")


class FeedbackView(CdsHooksView):
    """``POST {baseUrl}/cds-services/{id}/feedback``: an override whose reason is an ICD-10-CM
    diagnosis of the cohort becomes the prediction's feedback (``Prediction.give_feedback``: once,
    the version's live accuracy refreshed). Any other outcome is taken and recorded nowhere:
    "accepted" (the cards carry no suggestions), an override without a reason or with "not
    applicable". A user comment is never stored (free text, where identifiers hide)."""

    permission_classes = [serving_permission(PERM_GIVE_FEEDBACK)]
    throttle_scope = "feedback"

    def token_audiences(self, request: Request) -> tuple[str, ...]:
        # Record systems differ on the aud of a feedback call: the feedback URL or its service's.
        return (request.path_info.rstrip("/").removesuffix("/feedback"),)

    @extend_schema(
        summary="Feedback on CDS Service cards",
        description="An override whose reason is an ICD-10-CM diagnosis of the cohort becomes the "
        "prediction's feedback; other outcomes are taken and noted.",
        request=FeedbackSerializer,
        responses={200: FeedbackAnswerSerializer, 401: TOKEN_REFUSED},
    )
    def post(self, request: Request, service_id: str) -> Response:
        parsed = parse_service_id(service_id)
        if parsed is None:
            raise NotFound("There is no such CDS service.")
        _hook, slug = parsed
        entries = _feedback_entries(request.data)
        user = request_actor(request)
        results = []
        with transaction.atomic():
            for index, entry in enumerate(entries):
                results.append({"card": entry["card"], "status": _apply(entry, index, slug, user)})
        return Response({"feedback": results})


def _feedback_entries(body: Any) -> list[dict[str, Any]]:
    entries = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest('Send {"feedback": [...]}: a non-empty list.', code="invalid_feedback", field="feedback")
    if len(entries) > 100:
        raise InvalidRequest("At most 100 feedback entries per call.", code="invalid_feedback", field="feedback")
    for index, entry in enumerate(entries):
        where = f"feedback[{index}]"
        if not isinstance(entry, dict):
            raise InvalidRequest(f"{where}: must be an object.", code="invalid_feedback", field=where)
        if not isinstance(entry.get("card"), str):
            raise InvalidRequest(
                f"{where}.card: the card's uuid is required.", code="invalid_feedback", field=f"{where}.card"
            )
        if entry.get("outcome") not in OUTCOMES:
            raise InvalidRequest(
                f"{where}.outcome: must be accepted or overridden.", code="invalid_feedback", field=f"{where}.outcome"
            )
        if not isinstance(entry.get("outcomeTimestamp"), str):
            raise InvalidRequest(
                f"{where}.outcomeTimestamp: is required.", code="invalid_feedback", field=f"{where}.outcomeTimestamp"
            )
        reason = entry.get("overrideReason")
        if reason is not None and (not isinstance(reason, dict) or not isinstance(reason.get("reason", {}), dict)):
            raise InvalidRequest(
                f"{where}.overrideReason: must be an object with a reason Coding.",
                code="invalid_feedback",
                field=f"{where}.overrideReason",
            )
    return entries


def _apply(entry: dict[str, Any], index: int, slug: str, user: Any) -> str:
    """What one feedback entry did: ``recorded``, ``already_recorded`` or ``noted``."""
    where = f"feedback[{index}]"
    prediction_id = cards.prediction_of_card(entry["card"])
    prediction = None
    if prediction_id is not None:
        # A client's own predictions only, as for the REST feedback of a prediction client.
        prediction = (
            Prediction.objects.feedback_allowed_for(user, any_prediction=False)
            .select_related("model_type")
            .filter(pk=prediction_id, model_type__slug=slug)
            .first()
        )
    if prediction is None:
        raise NotFound(f"{where}.card: no card of this service has this uuid.")
    reason = (entry.get("overrideReason") or {}).get("reason") or {}
    if entry["outcome"] != "overridden" or reason.get("system") != cards.ICD10_CM:
        return "noted"
    code = reason.get("code")
    if not isinstance(code, str) or not code:
        raise InvalidRequest(
            f"{where}.overrideReason.reason.code: is required.",
            code="invalid_feedback",
            field=f"{where}.overrideReason",
        )
    existing = getattr(prediction, "feedback", None)  # None when it has none (the reverse one-to-one)
    if existing is not None and existing.diagnosis_code == code.strip().upper():
        return "already_recorded"  # the same override sent again (CDS Hooks allows repeats)
    prediction.give_feedback(diagnosis_code=code, by=user)
    return "recorded"

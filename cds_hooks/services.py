"""The CDS Services this engine offers, and the checks of a call's body (CDS Hooks 2.0).

Every model type with an active version is offered as two services, one per hook, since a
service answers one hook: ``patient-view-{slug}`` (a clinician opens the patient's record) and
``order-select-{slug}`` (a clinician selects an order). The prefixes differ, so an id names one
hook and one model type whatever the slugs are.

Prefetch templates ask for the minimum the model reads: the Patient (age and sex) and, for each
finding the serving version(s) take as a model input and the data dictionary codes in LOINC, the
patient's latest Observation with that code. Findings without a LOINC code cannot come from a
record system and are left to imputation; conditions, notes and orders are never asked for.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from cases.dictionary.definition import Finding
from models_registry.serving.inputs import DictionaryCheck, dictionary_check
from models_registry.serving.model_cache import MODEL_CACHE
from models_registry.serving.router import Route, RoutingTable
from models_registry.serving.serve import check_of

PATIENT_VIEW = "patient-view"
ORDER_SELECT = "order-select"
HOOKS = (PATIENT_VIEW, ORDER_SELECT)
PATIENT_KEY = "patient"
OBSERVATION_PREFIX = "obs-"
LOINC = "http://loinc.org"
# A FHIR id (R4 "id" datatype).
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def service_id(hook: str, slug: str) -> str:
    return f"{hook}-{slug}"


def parse_service_id(value: str) -> tuple[str, str] | None:
    """(hook, model type slug) of a service id, or None."""
    for hook in HOOKS:
        slug = value.removeprefix(f"{hook}-")
        if slug != value and slug:
            return hook, slug
    return None


def served_checks(route: Route, table: RoutingTable) -> list[DictionaryCheck]:
    """The dictionary check of each arm serving ``route`` (its version's, else the cohort's current)."""
    fallback = functools.partial(dictionary_check, table, route.cohort)
    checks = []
    for arm in route.arms:
        check = check_of(MODEL_CACHE.get(arm), fallback)
        if check is not None and check not in checks:
            checks.append(check)
    return checks


def prefetched_findings(checks: list[DictionaryCheck]) -> list[Finding]:
    """The model-input findings with a LOINC code, over every serving arm, in dictionary order."""
    found: dict[str, Finding] = {}
    for check in checks:
        for key in check.model_findings:
            finding = check.findings.get(key)
            if finding is not None and finding.loinc and key not in found:
                found[key] = finding
    return list(found.values())


def prefetch_templates(findings: list[Finding]) -> dict[str, str]:
    templates = {PATIENT_KEY: "Patient/{{context.patientId}}"}
    for finding in findings:
        templates[f"{OBSERVATION_PREFIX}{finding.key}"] = (
            f"Observation?patient={{{{context.patientId}}}}&combo-code={LOINC}|{finding.loinc}&_sort=-date&_count=1"
        )
    return templates


def describe(hook: str, slug: str, model_name: str, findings: list[Finding]) -> dict[str, Any]:
    """One service of the discovery answer."""
    when = "when a patient's record is opened" if hook == PATIENT_VIEW else "when an order is selected"
    return {
        "hook": hook,
        "title": f"{model_name}: most likely diagnosis",
        "description": f"The most likely diagnosis by the active {model_name} model, with its probability, "
        f"{when}; from the patient's age, sex and latest "
        + (", ".join(finding.display_name for finding in findings) or "findings")
        + ". Override a card with the diagnosis you hold true and the model learns from it.",
        "id": service_id(hook, slug),
        "prefetch": prefetch_templates(findings),
    }


class CallRefused(ValueError):
    """A call body that does not follow the specification: 400 with ``field``."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Call:
    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    encounter_id: str | None
    prefetch: dict[str, Any] = field(default_factory=dict)


def _string(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CallRefused(f"{where}{key}", "is required: a non-empty string." if required else "must be a string.")
    return value


def parse_call(body: Any, hook: str) -> Call:
    """The checked fields of a service call for ``hook``; raises ``CallRefused``.

    ``fhirServer`` and ``fhirAuthorization`` are checked for their form and otherwise not used:
    the service reads only what the record system prefetched and never calls its FHIR server.
    """
    if not isinstance(body, dict):
        raise CallRefused("", "The body must be a JSON object.")
    if body.get("hook") != hook:
        raise CallRefused("hook", f"must be {hook!r} for this service.")
    instance = _string(body, "hookInstance", "")
    try:
        uuid.UUID(str(instance))
    except ValueError:
        raise CallRefused("hookInstance", "must be a UUID.") from None
    server = body.get("fhirServer")
    if server is not None and (not isinstance(server, str) or not server.startswith(("https://", "http://"))):
        raise CallRefused("fhirServer", "must be the URL of the record system's FHIR server.")
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict):
            raise CallRefused("fhirAuthorization", "must be an object.")
        if server is None:
            raise CallRefused("fhirServer", "is required with fhirAuthorization.")
    context = body.get("context")
    if not isinstance(context, dict):
        raise CallRefused("context", "is required: an object.")
    patient_id = _string(context, "patientId", "context.")
    if not FHIR_ID.fullmatch(str(patient_id)):
        raise CallRefused("context.patientId", "must be a FHIR id.")
    user_id = _string(context, "userId", "context.")
    encounter_id = _string(context, "encounterId", "context.", required=False)
    if hook == ORDER_SELECT:
        selections = context.get("selections")
        if not isinstance(selections, list) or not selections or not all(isinstance(s, str) for s in selections):
            raise CallRefused("context.selections", "is required: a non-empty list of references.")
        orders = context.get("draftOrders")
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise CallRefused("context.draftOrders", "is required: a Bundle.")
    prefetch = body.get("prefetch", {})
    if not isinstance(prefetch, dict):
        raise CallRefused("prefetch", "must be an object.")
    return Call(
        hook=hook,
        hook_instance=str(instance),
        patient_id=str(patient_id),
        user_id=str(user_id),
        encounter_id=encounter_id,
        prefetch=prefetch,
    )

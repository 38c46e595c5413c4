"""FHIR R4 resources, parsed and validated by fhir.resources, with errors that hold no patient data.

fhir.resources dropped FHIR R4 (4.0.1) in its version 7; its Pydantic 2 releases carry R5 (the
default import path), R4B (4.3.0) and STU3. We use ``fhir.resources.R4B``: R4B changed none of the
elements of the five resources read here (Patient, Encounter, Observation, Condition and Bundle;
its changes are in the medication-definition and subscription resources), so an R4 resource of
these types validates as R4B. Anything the model does not define (an element R4 does not have, a
typo) is refused, as is a value of the wrong type; a resource that fails is reported by its
position and the path of the problem, never with its values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cases.fhir import plain

# The resources the engine reads; every other resource type is counted and skipped.
USED_TYPES = ("Patient", "Encounter", "Observation", "Condition")
# What a report counts a resourceType under when FHIR has no such resource: the name a file gives is
# never echoed (it is the sender's text, and may hold anything, a patient's name included).
NOT_A_RESOURCE_TYPE = "(not a FHIR resource type)"


# Every resource type of FHIR R4B (as fhir.resources.R4B defines them; a test holds the two equal)
# and those of R4 (4.0.1) that R4B renamed or dropped, as record systems still export them.
R4B_RESOURCE_TYPES = frozenset(
    (  # noqa: SIM905 (names read better as words than as 141 quoted strings)
        "Account ActivityDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance "
        "Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure "
        "Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition "
        "Citation Claim ClaimResponse ClinicalImpression ClinicalUseDefinition CodeSystem Communication "
        "CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract "
        "Coverage CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
        "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest "
        "DocumentReference Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare "
        "EventDefinition Evidence EvidenceReport EvidenceVariable ExampleScenario ExplanationOfBenefit "
        "FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService "
        "ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide "
        "Ingredient InsurancePlan Invoice Library Linkage List Location ManufacturedItemDefinition "
        "Measure MeasureReport Media Medication MedicationAdministration MedicationDispense "
        "MedicationKnowledge MedicationRequest MedicationStatement MedicinalProductDefinition "
        "MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder NutritionProduct "
        "Observation ObservationDefinition OperationDefinition OperationOutcome Organization "
        "OrganizationAffiliation PackagedProductDefinition Parameters Patient PaymentNotice "
        "PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure Provenance "
        "Questionnaire QuestionnaireResponse RegulatedAuthorization RelatedPerson RequestGroup "
        "ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment "
        "Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition "
        "StructureMap Subscription SubscriptionStatus SubscriptionTopic Substance SubstanceDefinition "
        "SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet "
        "VerificationResult VisionPrescription"
    ).split()
)
R4_ONLY_RESOURCE_TYPES = frozenset(
    (  # noqa: SIM905 (names read better as words than as 18 quoted strings)
        "EffectEvidenceSynthesis MedicinalProduct MedicinalProductAuthorization "
        "MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient "
        "MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged "
        "MedicinalProductPharmaceutical MedicinalProductUndesirableEffect RiskEvidenceSynthesis "
        "SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation "
        "SubstanceSourceMaterial SubstanceSpecification"
    ).split()
)
RESOURCE_TYPES = R4B_RESOURCE_TYPES | R4_ONLY_RESOURCE_TYPES


def reported_type(name: str) -> str:
    """``name`` if it is an R4 or R4B resource type, else ``NOT_A_RESOURCE_TYPE``: what a report may
    show of a resource the engine skips."""
    return name if name in RESOURCE_TYPES else NOT_A_RESOURCE_TYPE


MAX_REPORTED_PROBLEMS = 3  # of one resource: the first few say enough


class ResourceInvalid(ValueError):
    """A resource fhir.resources refuses. ``path`` is the element (``valueQuantity.value``);
    the message is fhir.resources' own, without the input it refused."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# The elements the engine reads of each resource type (``cases.fhir.mapping``), and those FHIR
# requires: what the import validates. The rest (narrative, meta, extensions, category, ...) is
# checked by name only: an element the type does not define is still refused.
READ_ELEMENTS: dict[str, frozenset[str]] = {
    "Patient": frozenset({"resourceType", "id", "identifier", "name", "gender", "birthDate", "address", "telecom"}),
    "Encounter": frozenset({"resourceType", "id", "status", "class", "subject", "period", "diagnosis"}),
    "Observation": frozenset(
        {
            "resourceType",
            "id",
            "status",
            "code",
            "encounter",
            "effectiveDateTime",
            "effectiveInstant",
            "effectivePeriod",
            "issued",
            "valueQuantity",
            "valueInteger",
            "valueBoolean",
            "valueString",
            "valueCodeableConcept",
            "valueRange",
            "valueRatio",
            "valueSampledData",
            "dataAbsentReason",
            "component",
        }
    ),
    "Condition": frozenset({"resourceType", "id", "code", "verificationStatus", "subject", "encounter"}),
}


@functools.cache
def element_names(resource_type: str) -> frozenset[str]:
    """Every element name a resource of this type may carry in JSON (``class``, ``_birthDate``...)."""
    fields = model_class(resource_type).model_fields
    return frozenset({"resourceType", *(field.alias or name for name, field in fields.items())})


@functools.cache
def model_class(resource_type: str) -> Any:
    """The R4B model class of a resource type this module reads."""
    if resource_type == "Patient":
        from fhir.resources.R4B.patient import Patient

        return Patient
    if resource_type == "Encounter":
        from fhir.resources.R4B.encounter import Encounter

        return Encounter
    if resource_type == "Observation":
        from fhir.resources.R4B.observation import Observation

        return Observation
    if resource_type == "Condition":
        from fhir.resources.R4B.condition import Condition

        return Condition
    raise ValueError(f"Not a resource type this importer reads: {resource_type}")


def _path(loc: tuple[Any, ...], error_type: str) -> str:
    # An element that is not allowed is named by where it is, not by its name: a key of the
    # input is text the sender chose (it could be a name).
    parts = loc[:-1] if error_type == "extra_forbidden" else loc
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "has an element FHIR R4 does not define there."
    if error["type"] == "fhir-validation-wrong-resource-type":
        return "is not the resource type expected."
    # Pydantic's messages describe the expectation ("Input should be a valid list"), and
    # include_input=False keeps the refused value out; collapse fhir.resources' line breaks.
    return " ".join(str(error["msg"]).split()).removeprefix("Value error, ")


def validate(resource: Any, resource_type: str | None = None) -> Any:
    """``resource`` (decoded JSON, or a model already validated) as its fhir.resources R4B model.

    Raises ``ResourceInvalid`` naming the first problems' paths. ``resource_type`` defaults to the
    resource's own ``resourceType``, which must then be one of ``USED_TYPES``.
    """
    if not isinstance(resource, dict):
        if resource_type and getattr(resource, "get_resource_type", lambda: None)() == resource_type:
            return resource
        raise ResourceInvalid("", "A resource must be a JSON object.")
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind not in USED_TYPES:
        raise ResourceInvalid("resourceType", "is not a resource type this importer reads.")
    if resource_type is not None and kind != resource_type:
        raise ResourceInvalid("resourceType", f"must be {resource_type}.")
    _json_types(resource)
    try:
        return model_class(kind).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if len(errors) == 1:  # its path beside its message, not named twice
            raise ResourceInvalid(_path(tuple(errors[0]["loc"]), errors[0]["type"]), _message(errors[0])) from None
        shown = [f"{_path(tuple(error['loc']), error['type']) or kind}: {_message(error)}" for error in errors]
        more = len(shown) - MAX_REPORTED_PROBLEMS
        text = "; ".join(shown[:MAX_REPORTED_PROBLEMS]) + (f" (and {more} more)" if more > 0 else "")
        raise ResourceInvalid("", text) from None
    except (RecursionError, OverflowError, ValueError, TypeError):
        # Validators deeper in fhir-core can raise on hostile input (nesting, huge numbers).
        raise ResourceInvalid("", "fhir.resources could not read this resource.") from None


_DATE_ELEMENTS = ("birthDate", "effectiveDateTime", "effectiveInstant", "issued")
_PERIOD_ELEMENTS = ("period", "effectivePeriod")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _json_types(resource: dict[str, Any]) -> None:
    """Pydantic's lax mode reads a JSON number as a Unix time (``"birthDate": 0`` was 1970-01-01),
    "yes" or 1 as a boolean, "88" as a number. FHIR JSON writes dates and times as strings, booleans
    as true/false and numbers as numbers; the read elements are checked here, before fhir.resources."""
    found: list[tuple[str, Any, Callable[[Any], bool]]] = [
        (name, resource.get(name), lambda value: isinstance(value, str)) for name in _DATE_ELEMENTS
    ]
    for name in _PERIOD_ELEMENTS:
        period = resource.get(name)
        if isinstance(period, dict):
            found += [
                (f"{name}.{end}", period.get(end), lambda value: isinstance(value, str)) for end in ("start", "end")
            ]
    components = resource.get("component")
    parts = [("", resource)]
    if isinstance(components, list):
        parts += [(f"component[{index}].", part) for index, part in enumerate(components) if isinstance(part, dict)]
    for prefix, part in parts:
        found.append((f"{prefix}valueBoolean", part.get("valueBoolean"), lambda value: isinstance(value, bool)))
        found.append((f"{prefix}valueInteger", part.get("valueInteger"), lambda value: type(value) is int))
        quantity = part.get("valueQuantity")
        if isinstance(quantity, dict):
            found.append((f"{prefix}valueQuantity.value", quantity.get("value"), _is_number))
    for path, value, right in found:
        if value is not None and not right(value):
            raise ResourceInvalid(
                path,
                "has the wrong JSON type for its FHIR type (a date is a string, a boolean "
                "true or false, a number a number).",
            )


def validate_read(resource: dict[str, Any], resource_type: str) -> Any:
    """The import's validation: every element name checked against the type, and the elements the
    engine reads (``READ_ELEMENTS``) validated by fhir.resources. The model holds only those.

    Validating whole resources cost the import more than half its time (fhir.resources builds a
    Python model per nested element: 300-800 us an Observation on the development machine), and
    what the engine never reads cannot make a case wrong. A malformed element it does not read
    (a category that is a string) goes unreported; an unknown element anywhere at the top does not.
    Elements in the plain shape record systems write are read by ``plain`` (an ``Element`` view
    with the same values); the rest, malformed ones included, by fhir.resources.
    """
    try:  # the plain shape, read in one walk: the names checked and the read elements read
        return _plain_reader(resource_type)(resource)
    except (plain.NotPlain, RecursionError):
        pass  # judged as before, by the same reader or fhir.resources
    if not element_names(resource_type).issuperset(resource):  # a key it does not define
        raise ResourceInvalid("", "has an element FHIR R4 does not define there.")
    read = READ_ELEMENTS[resource_type]
    return validate_elements({key: value for key, value in resource.items() if key in read}, resource_type)


@functools.cache
def _plain_reader(resource_type: str) -> Callable[[Any], Any]:
    """``validate_read``'s reader of a resource in the plain shape: the ``READ_ELEMENTS`` read by
    ``plain``, every other element the type defines passed over, anything else not plain."""
    read = READ_ELEMENTS[resource_type]
    return plain.resource_reader(resource_type, read, element_names(resource_type) - read)


def validate_elements(elements: dict[str, Any], resource_type: str) -> Any:
    """``elements`` (a resource reduced to what its reader uses) as a model of ``resource_type``:
    read by ``plain`` when in the plain shape (checked by hand at least as strictly), else
    validated by fhir.resources, which raises ``ResourceInvalid`` as ``validate`` does."""
    try:
        return plain.read(elements, resource_type)
    except (plain.NotPlain, RecursionError):  # fhir.resources judges it, as it always has
        return validate(elements, resource_type)

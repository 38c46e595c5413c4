"""The cards a service call answers with (CDS Hooks 2.0, "CDS Service Response"), and their uuids.

A prediction becomes one card: the most likely diagnosis by its display name, code and probability
in the summary (under 140 characters), the runners-up, the model version, the data dictionary
version and what was missing, imputed or out of range in the Markdown detail, the model as the
source, a link to the prediction's feedback, and ``overrideReasons``: one per other diagnosis of
the cohort's code set, coded in ICD-10-CM (so an override names the diagnosis the clinician holds
true and the feedback endpoint records it), and one that says only "not applicable".

A card's ``uuid`` carries its prediction's id and an HMAC of it under the site's secret key
(``card_uuid``): feedback finds the prediction without a table of issued cards, and a made-up or
altered uuid is refused. It says nothing about the patient.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from django.utils.crypto import salted_hmac

SUMMARY_LIMIT = 139  # "<140-character summary"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
OVERRIDE_SYSTEM = "urn:clinical-diagnosis-engine:cds-hooks:override-reason"
NOT_APPLICABLE = "not-applicable"
RUNNERS_UP = 3
_ID_BYTES = 6  # prediction ids up to 2**48
_SALT = "cds_hooks.card"


def _mac(prediction_id: int) -> bytes:
    return salted_hmac(_SALT, str(prediction_id), algorithm="sha256").digest()[: 16 - _ID_BYTES]


def _stamped(raw: bytes) -> bytes:
    """RFC 9562 version 8 (custom) and variant bits over the MAC's bytes."""
    data = bytearray(raw)
    data[6] = (data[6] & 0x0F) | 0x80
    data[8] = (data[8] & 0x3F) | 0x80
    return bytes(data)


def card_uuid(prediction_id: int) -> str:
    """The uuid of the card of prediction ``prediction_id``."""
    return str(uuid.UUID(bytes=_stamped(prediction_id.to_bytes(_ID_BYTES, "big") + _mac(prediction_id))))


def prediction_of_card(value: Any) -> int | None:
    """The prediction id a card uuid of ours carries; None for any other text."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        raw = uuid.UUID(value).bytes
    except ValueError:
        return None
    prediction_id = int.from_bytes(raw[:_ID_BYTES], "big")
    expected = _stamped(raw[:_ID_BYTES] + _mac(prediction_id))
    return prediction_id if hmac.compare_digest(expected, raw) else None


def _percent(probability: float) -> str:
    return f"{probability * 100:.0f}%" if probability >= 0.01 else "<1%"


def _summary(name: str, code: str, probability: float) -> str:
    tail = f" ({code}): {_percent(probability)}"
    head = "Most likely "
    room = SUMMARY_LIMIT - len(head) - len(tail)
    if len(name) > room:
        name = name[: max(0, room - 1)].rstrip() + "…"
    return f"{head}{name}{tail}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def prediction_card(
    answer: dict[str, Any],
    *,
    model_name: str,
    diagnosis_names: dict[str, str],
    finding_names: dict[str, str],
    feedback_url: str,
    notes: list[str],
) -> dict[str, Any]:
    """The card of one served prediction (``serve``'s answer).

    ``diagnosis_names``: the code set of the answering version's dictionary (code -> display
    name); ``finding_names``: finding key -> display name; ``notes``: sentences about the data
    read from the record system (units converted, values left out), shown in the detail.
    """
    code = answer["diagnosis"]["code"]
    probabilities: dict[str, float] = answer["probabilities"]
    name = answer["diagnosis"].get("display_name") or diagnosis_names.get(code) or answer["diagnosis"]["label"] or code
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    version = answer["model_version"]
    lines = [
        f"**{_cell(name)}** ({code}) is the most likely diagnosis of {_cell(model_name)} {version}, "
        f"with a probability of {_percent(probabilities[code])}.",
        "",
        "| Diagnosis | Code | Probability |",
        "| --- | --- | --- |",
        *(
            f"| {_cell(diagnosis_names.get(other) or other)} | {other} | {_percent(probability)} |"
            for other, probability in ranked[: RUNNERS_UP + 1]
        ),
        "",
    ]
    warnings = answer.get("warnings") or []
    imputed = answer.get("imputed") or []
    if imputed:
        missing = ", ".join(finding_names.get(key, key) for key in imputed)
        lines.append(
            f"**Missing, imputed from the training data:** {missing} "
            f"(completeness {answer.get('completeness', 1.0):.0%})."
        )
    for warning in warnings:
        lines.append(f"**Out of range:** {warning['message']}")
    lines.extend(f"- {note}" for note in notes)
    dictionary = answer.get("dictionary_version")
    lines.append(
        ""
        + f"Model {_cell(model_name)} {version}"
        + (f", data dictionary version {dictionary}" if dictionary is not None else "")
        + f", prediction {answer['id']}. Decision support, not a diagnosis: confirm or correct it "
        "(override with the diagnosis you hold true) and the model learns from it."
    )
    reasons = [
        {"system": ICD10_CM, "code": other, "display": f"The diagnosis is {diagnosis_names[other]}"[:140]}
        for other in diagnosis_names
        if other != code
    ]
    reasons.append({"system": OVERRIDE_SYSTEM, "code": NOT_APPLICABLE, "display": "Not applicable to this patient"})
    return {
        "uuid": card_uuid(answer["id"]),
        "summary": _summary(name, code, probabilities[code]),
        "indicator": "warning" if warnings or imputed else "info",
        "detail": "\n".join(lines).strip(),
        "source": {"label": f"{model_name} {version}"[:140]},
        "links": [{"label": "Confirm or correct the diagnosis (feedback)", "url": feedback_url, "type": "absolute"}],
        "overrideReasons": reasons,
    }


def no_prediction_card(*, model_name: str, reason: str, problems: list[str]) -> dict[str, Any]:
    """The card of a call the model could not answer: what is missing or refused, and no uuid
    (there is no prediction to give feedback on)."""
    detail = [reason, *(f"- {problem}" for problem in problems)]
    summary = f"No prediction by {model_name}: the record lacks data the model needs"
    return {
        "summary": summary[:SUMMARY_LIMIT],
        "indicator": "info",
        "detail": "\n".join(detail),
        "source": {"label": model_name[:140]},
    }

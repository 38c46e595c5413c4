"""The case record sent with feedback, parsed as the interchange format parses a case."""

from __future__ import annotations

from typing import Any

from cases.interchange import CaseRecord, RecordError


def feedback_case_record(
    raw: dict[str, Any], *, cohort: str, diagnosis_code: str, source: str | None = None
) -> CaseRecord:
    """The case sent with feedback, parsed: cohort defaults to the model type's, the diagnosis
    code to the confirmed one, the source to the sender's bound one (``ClientSource``). Raises
    ``RecordError`` (its field prefixed with ``case.``)."""
    from cases.interchange import parse_record

    obj = dict(raw)
    obj.setdefault("cohort", cohort)
    diagnosis = obj.get("diagnosis")
    if diagnosis is None:
        obj["diagnosis"] = {"code": diagnosis_code}
    elif isinstance(diagnosis, dict) and not diagnosis.get("code"):
        obj["diagnosis"] = {**diagnosis, "code": diagnosis_code}
    try:
        return parse_record(obj, default_source=source)
    except RecordError as exc:
        raise RecordError(f"case.{exc.field}" if exc.field else "case", exc.message) from None

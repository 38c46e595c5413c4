"""Where a record meets its cohort's dictionary: one check for the API, the import, the admin form
and feedback. ``cases.dictionary.validation`` does the checking (pure); this module finds the
cohort's current published version and turns the result into the errors each path reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from rest_framework import status

from cases.dictionary.models import Cohort, DataDictionary
from cases.dictionary.validation import Issue, ValidationResult, check_diagnosis_code, validate_record
from learning_engine.exceptions import InvalidRequest

if TYPE_CHECKING:
    from cases.interchange import CaseRecord


class RecordRefused(InvalidRequest):
    """A record its cohort's dictionary does not take: 400 with every problem (``errors``)."""

    code = "dictionary_violation"
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, issues: Iterable[Issue], code: str | None = None, **extra: Any) -> None:
        self.issues = tuple(issues)
        super().__init__(message, code=code, errors=[issue.to_json() for issue in self.issues], **extra)

    def summary(self) -> str:
        """One line for an import report: every problem, positions included, no value."""
        return "; ".join(str(issue) for issue in self.issues)


@dataclass(frozen=True, slots=True)
class Checked:
    dictionary: DataDictionary
    result: ValidationResult


class DictionaryCache:
    """The current version per cohort, read once per import (or request), and the site's date."""

    def __init__(self) -> None:
        self._by_slug: dict[str, DataDictionary | None] = {}
        self._today: dt.date | None = None
        self._tomorrow: dt.datetime | None = None  # when ``_today`` ends: the next local midnight

    def today(self) -> dt.date:
        """``timezone.localdate()``, worked out again only once the local day is over: it cost as
        much as the rest of an import's check of a record (15 us against 14, asked once a record)."""
        now = timezone.now()
        if self._today is None or self._tomorrow is None or now >= self._tomorrow:
            local = timezone.localtime(now)
            self._today = local.date()
            next_day = self._today + dt.timedelta(days=1)
            self._tomorrow = dt.datetime.combine(next_day, dt.time(), tzinfo=local.tzinfo)
        return self._today

    def current(self, slug: str) -> DataDictionary | None:
        if slug not in self._by_slug:
            self._by_slug[slug] = current_dictionary(slug)
        return self._by_slug[slug]


def current_dictionary(slug: str) -> DataDictionary | None:
    """The cohort's newest published version, or None (no such cohort, or nothing published)."""
    return (
        DataDictionary.objects.select_related("cohort")
        .filter(cohort__slug=slug, status=DataDictionary.Status.PUBLISHED)
        .order_by("-version")
        .first()
    )


def _unknown_cohort(slug: str) -> RecordRefused:
    exists = Cohort.objects.filter(slug=slug).exists()
    message = (
        "The cohort has no published data dictionary yet; a clinical lead must publish one first."
        if exists
        else "No such cohort. Cohorts are created with their data dictionary (admin, or manage.py load_dictionary)."
    )
    issue = Issue("unknown_cohort", "cohort", message)
    return RecordRefused(message, issues=[issue], code="unknown_cohort")


def check_record(record: CaseRecord, *, cache: DictionaryCache | None = None) -> Checked:
    """Check ``record`` against its cohort's current version. Raises ``RecordRefused`` (400)."""
    dictionary = cache.current(record.cohort) if cache is not None else current_dictionary(record.cohort)
    if dictionary is None:
        raise _unknown_cohort(record.cohort)
    today = cache.today() if cache is not None else timezone.localdate()
    result = validate_record(record, dictionary.parsed, today=today)
    if result.errors:
        raise RecordRefused(
            f"The record does not fit the {dictionary.cohort.slug} data dictionary (version {dictionary.version}).",
            issues=result.errors,
            cohort=dictionary.cohort.slug,
            dictionary_version=dictionary.version,
        )
    return Checked(dictionary, result)


def check_diagnosis(cohort: str, code: str) -> None:
    """Feedback: ``code`` must be in the cohort's code set. Raises ``RecordRefused`` with code
    ``unknown_diagnosis_code``. A cohort without a published dictionary has no code set to check."""
    dictionary = current_dictionary(cohort)
    if dictionary is None:
        return
    issue = check_diagnosis_code(code, dictionary.parsed)
    if issue is not None:
        raise RecordRefused(
            issue.message,
            issues=[issue],
            code="unknown_diagnosis_code",
            cohort=cohort,
            dictionary_version=dictionary.version,
        )

"""Cohorts and their versioned data dictionaries (imported by ``cases.models``: app label ``cases``).

A version is a draft until it is published. A draft may be edited; a published version never
changes, and neither does one that anything refers to (a case, a dataset snapshot, a model
version: any foreign key to ``DataDictionary``). A change is a new draft, copied from a version.

Concurrency: ``edit`` and ``publish`` claim the row with one conditional UPDATE on the status and
the definition hash they read (``learning_engine.transitions.claim``), so a stale copy cannot
overwrite a newer edit or edit a version published meanwhile. New version numbers are unique per
cohort (a constraint); two copies made at once make one of them fail with a clear error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.dispatch import Signal
from django.utils import timezone

from cases.dictionary.definition import Definition, DefinitionError, definition_sha256, parse_definition
from learning_engine.audit import AuditEntry
from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from learning_engine.transitions import check_allowed, claim

if TYPE_CHECKING:
    from learning_engine.actors import Actor, SystemActor

# Sent on commit of a publication (``dictionary=``): serving re-reads which version checks records.
dictionary_published = Signal()


class Cohort(models.Model):
    """A population whose cases share one data dictionary (``breast-mass``, ``respiratory``)."""

    slug = models.SlugField(max_length=100, unique=True, help_text="The `cohort` of interchange records.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def current_dictionary(self) -> DataDictionary | None:
        """The newest published version: what new records are validated against."""
        return self.dictionaries.filter(status=DataDictionary.Status.PUBLISHED).order_by("-version").first()


class DataDictionaryQuerySet(models.QuerySet["DataDictionary"]):
    def published(self) -> DataDictionaryQuerySet:
        return self.filter(status=DataDictionary.Status.PUBLISHED)


class DataDictionary(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {Status.PUBLISHED: frozenset({Status.DRAFT})}

    cohort = models.ForeignKey(Cohort, on_delete=models.PROTECT, related_name="dictionaries")
    version = models.PositiveIntegerField(editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, editable=False)
    definition = models.JSONField(help_text="Findings, symptoms, diagnoses, demographics (docs/data-dictionary.md).")
    definition_sha256 = models.CharField(max_length=64, editable=False)
    based_on = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="copies", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    published_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = DataDictionaryQuerySet.as_manager()

    class Meta:
        ordering = ["cohort__slug", "-version"]
        verbose_name = "data dictionary version"
        constraints = [
            models.UniqueConstraint(fields=["cohort", "version"], name="datadictionary_unique_cohort_version"),
            models.CheckConstraint(
                condition=models.Q(status__in=["draft", "published"]), name="datadictionary_status_valid"
            ),
        ]
        permissions = [("publish_datadictionary", "Can publish a data dictionary version")]

    def __str__(self) -> str:
        return f"{self.cohort.slug} v{self.version} ({self.status})"

    # --- Reading ---------------------------------------------------------------------------------

    @property
    def parsed(self) -> Definition:
        """The parsed definition (cached per instance; a stored definition was checked when written)."""
        cached: Definition | None = getattr(self, "_parsed", None)
        if cached is None or getattr(self, "_parsed_sha", None) != self.definition_sha256:
            cached = parse_definition(self.definition)
            self._parsed, self._parsed_sha = cached, self.definition_sha256
        return cached

    def expected_ranges(self) -> dict[str, tuple[float, float]]:
        """The expected range of every numeric finding (open bounds infinite): the quality score's
        "implausible" for records checked against this version."""
        ranges = {}
        for finding in self.parsed.findings:
            if finding.value_type in ("number", "integer"):
                low, high = finding.expected_range.min, finding.expected_range.max
                ranges[finding.key] = (-math.inf if low is None else low, math.inf if high is None else high)
        return ranges

    def is_referenced(self) -> bool:
        """True when a case, dataset snapshot or model version (anything with a foreign key or a
        many-to-many field to this model) refers to it (``references``)."""
        return bool(self.references(first_only=True))

    def references(self, *, first_only: bool = False) -> list[str]:
        """What refers to this version, as the plural names of the referring models ("cases",
        "dataset snapshots", "model versions"); ``first_only`` stops at the first found.

        Found through the model's reverse relations, so an app that adds a reference later is
        covered without this module importing it. Its own audit rows and copies do not count.
        One ``exists()`` query per kind of reference.
        """
        found: list[str] = []
        for relation in self._meta.related_objects:
            related = relation.related_model
            if related is DataDictionary or issubclass(related, AuditEntry):
                continue
            if not (relation.one_to_many or relation.one_to_one or relation.many_to_many):
                continue
            if related._default_manager.filter(**{relation.field.name: self}).exists():
                found.append(str(related._meta.verbose_name_plural))
                if first_only:
                    break
        return found

    def can_edit(self) -> bool:
        return self.status == self.Status.DRAFT and not self.is_referenced()

    def can_publish(self) -> bool:
        return self.status == self.Status.DRAFT

    # --- Creating --------------------------------------------------------------------------------

    @staticmethod
    def check_definition(definition: Any) -> Definition:
        try:
            return parse_definition(definition)
        except DefinitionError as error:
            raise InvalidRequest(str(error), code="invalid_definition", path=error.path) from None

    @classmethod
    def create_draft(
        cls,
        cohort: Cohort,
        definition: Any,
        *,
        by: SystemActor,
        based_on: DataDictionary | None = None,
        reason: str = "",
    ) -> DataDictionary:
        """A new draft with the next version number of ``cohort``. Writes the audit row."""
        cls.check_definition(definition)
        try:
            with transaction.atomic():
                latest = cohort.dictionaries.order_by("-version").values_list("version", flat=True).first()
                draft = cls.objects.create(
                    cohort=cohort,
                    version=(latest or 0) + 1,
                    definition=definition,
                    definition_sha256=definition_sha256(definition),
                    based_on=based_on,
                    created_by=by,
                )
                DictionaryTransition.objects.create(
                    dictionary=draft, actor=by, from_state="", to_state=cls.Status.DRAFT, reason=reason or "Created."
                )
        except IntegrityError:
            raise DomainError(
                f"Another version of {cohort.slug} was created at the same time; try again.", code="concurrent_update"
            ) from None
        return draft

    def copy(self, *, by: Actor) -> DataDictionary:
        """A new draft with this version's definition: how a published version is changed."""
        return self.create_draft(
            self.cohort, self.definition, by=by, based_on=self, reason=f"Copied from version {self.version}."
        )

    # --- Transitions -----------------------------------------------------------------------------

    def edit(self, definition: Any, *, by: Actor, reason: str = "") -> bool:
        """Replace a draft's definition (draft -> draft, audited). False and no write when unchanged."""
        self.check_definition(definition)
        if self.status != self.Status.DRAFT:
            raise TransitionError(
                f"{self} is {self.status}; copy it to a new draft to change it.", current_status=self.status
            )
        references = self.references()
        if references:
            raise TransitionError(
                f"{self} is referred to by {', '.join(references)}; copy it to a new draft to change it."
            )
        sha = definition_sha256(definition)
        if sha == self.definition_sha256:
            return False
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.DRAFT, "definition_sha256": self.definition_sha256},
                definition=definition,
                definition_sha256=sha,
            )
            DictionaryTransition.objects.create(
                dictionary=self, actor=by, from_state=self.status, to_state=self.status, reason=reason or "Edited."
            )
        return True

    def publish(self, *, by: SystemActor, reason: str = "") -> None:
        """draft -> published: from now on the version never changes and new records use it."""
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.PUBLISHED, label=str(self))
        self.check_definition(self.definition)
        source = self.status
        with transaction.atomic():
            claim(
                self,
                expected={"status": source, "definition_sha256": self.definition_sha256},
                status=self.Status.PUBLISHED,
                published_by=by,
                published_at=timezone.now(),
            )
            DictionaryTransition.objects.create(
                dictionary=self, actor=by, from_state=source, to_state=self.status, reason=reason or "Published."
            )
            transaction.on_commit(lambda: dictionary_published.send(sender=DataDictionary, dictionary=self))


class DictionaryTransition(AuditEntry):
    """Audit trail of a dictionary version: created, edited, published."""

    dictionary = models.ForeignKey(DataDictionary, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "dictionary audit entry"
        verbose_name_plural = "dictionary audit entries"

"""Model versions: every trained model, its approval and its deployment, with an audited history.

Concurrency policy:
- Approval transitions claim the row with a conditional UPDATE on the approval status.
- Registration assigns the next version label under the model type row lock.
- Activation locks the model type row (``select_for_update``) for the whole switch, so two
  activations of one model type queue behind each other on PostgreSQL; the conditional unique
  constraint "one active version per model type" holds on every database, so even without the
  lock (SQLite) a racing activation fails (409) instead of leaving two active versions.
- Every change of the active version writes an ``ActivationHistory`` row in the same transaction
  and bumps the serving generation on commit, so every process reloads its routing table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from alerts.events import EventType, emit, safe_label
from learning_engine.audit import AppendOnlyModel, AuditEntry
from learning_engine.exceptions import ConcurrentUpdate, DomainError, FourEyesViolation, TransitionError
from learning_engine.transitions import check_allowed, claim
from models_registry.generation import bump_generation

if TYPE_CHECKING:
    from learning_engine.actors import Actor, SystemActor

SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


class VersionQuerySet(models.QuerySet["ModelVersion"]):
    def active(self) -> VersionQuerySet:
        return self.filter(deployment_status=ModelVersion.Deployment.ACTIVE)


class ModelVersion(models.Model):
    class Approval(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    class Deployment(models.TextChoices):
        INACTIVE = "inactive", "Inactive"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    APPROVAL_TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Approval.APPROVED: frozenset({Approval.PENDING}),
        Approval.REJECTED: frozenset({Approval.PENDING}),
    }
    DEPLOYMENT_TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Deployment.ACTIVE: frozenset({Deployment.INACTIVE}),
        Deployment.INACTIVE: frozenset({Deployment.ACTIVE}),
        Deployment.ARCHIVED: frozenset({Deployment.INACTIVE}),
    }

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=32, help_text="v1.0.0, v1.1.0, ... in order, or a client's own label.")
    job = models.OneToOneField(
        "training.TrainingJob", on_delete=models.PROTECT, null=True, blank=True, related_name="model_version"
    )
    dataset = models.ForeignKey(
        "training.DatasetSnapshot", on_delete=models.PROTECT, null=True, blank=True, related_name="model_versions"
    )
    # The data dictionary version the model was trained under: its snapshot's, else the cohort's
    # current published one at registration (an upload's, or a job without a recorded snapshot
    # version). Predict checks records against it, not the cohort's current version. Null: the
    # cohort had no published dictionary (predict then checks against the current one, if any).
    dictionary = models.ForeignKey(
        "cases.DataDictionary",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="model_versions",
        help_text="The data dictionary version the model was trained under; predict checks records against it. "
        "Empty: its cohort had none published (predict then uses the cohort's current version, if any).",
    )
    # Per numeric model input, min and max of the train split (``training.ranges``): predict warns
    # out_of_range outside them. {} when not measured (the dictionary's expected range stands in).
    training_ranges = models.JSONField(
        default=dict, blank=True, editable=False, help_text='{"findings.<key>" or "age": {"min": x, "max": y}}'
    )
    algorithm = models.CharField(max_length=32)
    hyperparameters = models.JSONField(default=dict, blank=True)
    artifact = models.CharField(max_length=500)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_format = models.CharField(max_length=16, default="skops")
    # The validation record (docs/artifacts.md): the sha256 of the bytes that passed the structural
    # validation (and, for an upload, the sandboxed evaluation), and what was checked. Serving
    # loads a version only when this equals artifact_sha256.
    artifact_validated_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    artifact_validation = models.JSONField(default=dict, blank=True, editable=False)
    metrics = models.JSONField(default=dict, blank=True, help_text="Headline metrics of the registry's own evaluation.")

    approval_status = models.CharField(
        max_length=16, choices=Approval.choices, default=Approval.PENDING, editable=False
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    approval_note = models.TextField(blank=True, editable=False)
    deployment_status = models.CharField(
        max_length=16, choices=Deployment.choices, default=Deployment.INACTIVE, editable=False
    )
    deployed_at = models.DateTimeField(null=True, blank=True, editable=False)
    deactivated_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = VersionQuerySet.as_manager()

    class Meta:
        ordering = ["model_type", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["model_type", "version"], name="version_unique_per_model_type"),
            models.UniqueConstraint(
                fields=["model_type"],
                condition=models.Q(deployment_status="active"),
                name="one_active_version_per_model_type",
            ),
            models.CheckConstraint(
                condition=~models.Q(deployment_status="active") | models.Q(approval_status="approved"),
                name="only_approved_versions_are_active",
            ),
        ]
        permissions = [
            ("approve_modelversion", "Can approve or reject model versions"),
            ("deploy_modelversion", "Can activate, deactivate, archive and roll back model versions"),
        ]

    def __str__(self) -> str:
        return f"{self.version}"

    # --- Creation --------------------------------------------------------------------------------

    @staticmethod
    def next_version(model_type: Any) -> str:
        """The next minor version: v1.0.0 first, then v1.1.0, v1.2.0, ..."""
        minors = [
            int(match.group(2))
            for label in ModelVersion.objects.filter(model_type=model_type).values_list("version", flat=True)
            if (match := SEMVER.match(label)) and match.group(1) == "1"
        ]
        return f"v1.{max(minors) + 1}.0" if minors else "v1.0.0"

    @classmethod
    def register(
        cls,
        job: Any,
        *,
        version: str | None = None,
        metrics: dict[str, Any] | None = None,
        artifact: str | None = None,
        artifact_sha256: str | None = None,
        reason: str = "",
        actor: Any = None,
        validation: dict[str, Any] | None = None,
        training_ranges: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        test_set_size: int | None = None,
    ) -> ModelVersion:
        """A version for a completed job with an artifact (idempotent: one version per job), and
        its offline performance record in the same transaction (``ensure_offline_record``):
        ``evaluation`` and ``test_set_size``, default the job's (the worker's own evaluation).

        The version records the data dictionary version it was trained under (``dictionary_of``)
        and the train split's ranges: ``training_ranges``, default the job's (the worker's).

        ``artifact`` and ``artifact_sha256`` default to the job's; an external trainer's upload
        (``models_registry.registry.evaluation.register_upload``) passes the artifact it stored itself, and
        the uploader as ``actor``: the creation's audit row names them, so the two-person rule
        (``actor_ids``) refuses them as approver.
        """
        from training.models import ModelType

        existing = cls.objects.filter(job=job).first()
        if existing is not None:
            return existing
        dictionary = cls.dictionary_of(job)
        for _attempt in range(3):
            try:
                with transaction.atomic():
                    # Labels follow each other per model type, so workers completing jobs at once
                    # would all compute the same next label: the model type row lock (the same one
                    # activation takes) makes them take turns. SQLite's IMMEDIATE transactions
                    # serialise them anyway.
                    ModelType.objects.select_for_update().get(pk=job.model_type_id)
                    label = version or cls.next_version(job.model_type)
                    created = cls.objects.create(
                        model_type=job.model_type,
                        version=label,
                        job=job,
                        dataset=job.dataset,
                        dictionary=dictionary,
                        training_ranges=training_ranges if training_ranges is not None else job.training_ranges,
                        algorithm=job.algorithm,
                        hyperparameters=job.hyperparameters,
                        artifact=artifact if artifact is not None else job.artifact,
                        artifact_sha256=artifact_sha256 if artifact_sha256 is not None else job.artifact_sha256,
                        artifact_format=job.artifact_format or "skops",
                        metrics=metrics if metrics is not None else _headline(job.evaluation),
                        created_by=job.created_by,
                    )
                    if validation is not None:
                        created.record_validation(validation)
                    VersionTransition.objects.create(
                        version=created,
                        actor=actor,
                        from_state="",
                        to_state="pending",
                        reason=reason or f"Job {job.pk}.",
                    )
                    created.ensure_offline_record(evaluation=evaluation, test_set_size=test_set_size)
                return created
            except IntegrityError:
                if version is not None:
                    raise DomainError(f"Version {version} already exists.", code="duplicate_version") from None
                existing = cls.objects.filter(job=job).first()
                if existing is not None:
                    return existing
        raise ConcurrentUpdate("Could not assign a version label; try again.")

    @staticmethod
    def dictionary_of(job: Any) -> Any:
        """The dictionary version a job's model was trained under: its snapshot's, else (a snapshot
        that recorded none, or no snapshot) the cohort's current published version, else None."""
        from cases.dictionary.checking import current_dictionary

        dataset = job.dataset
        if dataset is not None and dataset.dictionary_id is not None:
            return dataset.dictionary
        return current_dictionary(job.model_type.cohort)

    # --- Approval --------------------------------------------------------------------------------

    def actor_ids(self) -> set[int]:
        """Every user who had a hand in making this version: none of them may approve it.

        Read from the append-only audit rows, not from fields an action could overwrite: the
        job's creator, every actor of the job's transitions (who started it, completed it,
        failed, retried or cancelled it through the API or the admin), the version's creator and
        whoever registered it (the uploader of an external job's artifact). A worker's or the
        reaper's step has no actor.
        """
        ids: set[int | None] = {self.created_by_id}
        if self.job_id is not None:
            assert self.job is not None
            ids.add(self.job.created_by_id)
            ids.update(self.job.transitions.exclude(actor=None).values_list("actor_id", flat=True))
        ids.update(
            self.transitions.filter(from_state="", to_state=self.Approval.PENDING)
            .exclude(actor=None)
            .values_list("actor_id", flat=True)
        )
        return {pk for pk in ids if pk is not None}

    def _check_two_person(self, by: Actor) -> None:
        """The two-person rule: the approver (or rejecter) made no part of the version.

        Superusers included: holding every permission does not make one person two.
        """
        if by is None or by.pk in self.actor_ids():
            raise FourEyesViolation(
                f"{by} took part in making {self.version} (trained, started, completed or uploaded it); "
                "another person must approve it (two-person rule).",
            )

    def _audit(self, *, by: SystemActor, source: str, target: str, reason: str = "") -> None:
        VersionTransition.objects.create(version=self, actor=by, from_state=source, to_state=target, reason=reason)

    def approve(self, *, by: Actor, note: str = "") -> None:
        """approval pending -> approved. The approver must be none of the version's actors (``actor_ids``)."""
        check_allowed(self.APPROVAL_TRANSITIONS, current=self.approval_status, target="approved", label=self.version)
        self._check_two_person(by)
        with transaction.atomic():
            claim(
                self,
                expected={"approval_status": self.Approval.PENDING},
                approval_status=self.Approval.APPROVED,
                approved_by=by,
                approved_at=timezone.now(),
                approval_note=note,
            )
            self._audit(by=by, source="pending", target="approved", reason=note)

    def reject(self, *, by: Actor, note: str = "") -> None:
        """approval pending -> rejected."""
        check_allowed(self.APPROVAL_TRANSITIONS, current=self.approval_status, target="rejected", label=self.version)
        self._check_two_person(by)
        with transaction.atomic():
            claim(
                self,
                expected={"approval_status": self.Approval.PENDING},
                approval_status=self.Approval.REJECTED,
                approved_by=by,
                approved_at=timezone.now(),
                approval_note=note,
            )
            self._audit(by=by, source="pending", target="rejected", reason=note)

    # --- Deployment ------------------------------------------------------------------------------

    def activate(self, *, by: SystemActor, reason: str = "") -> None:
        """inactive -> active; the previously active version of the model type becomes inactive.

        Only approved versions, and not while the model type has a running A/B test (409). Locks the
        model type row for the switch (see the module docstring).
        """
        from training.models import ModelType

        if self.approval_status != self.Approval.APPROVED:
            raise TransitionError(
                f"{self.version} is {self.approval_status}; only an approved version can be activated.",
                code="not_approved",
            )
        try:
            with transaction.atomic():
                ModelType.objects.select_for_update().get(pk=self.model_type_id)
                self._refuse_if_guarded("activate")
                fresh = type(self).objects.get(pk=self.pk)
                check_allowed(
                    self.DEPLOYMENT_TRANSITIONS,
                    current=fresh.deployment_status,
                    target="active",
                    label=self.version,
                )
                previous = type(self).objects.active().filter(model_type_id=self.model_type_id).first()
                now = timezone.now()
                if previous is not None:
                    claim(
                        previous,
                        expected={"deployment_status": self.Deployment.ACTIVE},
                        deployment_status=self.Deployment.INACTIVE,
                        deactivated_at=now,
                    )
                    previous._audit(by=by, source="active", target="inactive", reason=f"Replaced by {self.version}.")
                claim(
                    self,
                    expected={"deployment_status": self.Deployment.INACTIVE, "approval_status": "approved"},
                    deployment_status=self.Deployment.ACTIVE,
                    deployed_at=now,
                )
                self._audit(by=by, source="inactive", target="active", reason=reason)
                ActivationHistory.objects.create(
                    model_type_id=self.model_type_id, from_version=previous, to_version=self, actor=by, reason=reason
                )
                transaction.on_commit(_bump_generation)
        except IntegrityError:
            # Another activation of this model type committed first (only possible without row
            # locks, i.e. on SQLite): the constraint kept one active version; this one lost.
            raise ConcurrentUpdate(
                f"Another version of {self.model_type_id} was activated at the same time; reload and retry."
            ) from None

    def _refuse_if_guarded(self, verb: str) -> None:
        """Ask every registered deployment guard whether ``verb`` may change this version (see
        ``register_deployment_guard``); a guard refuses by raising (409). Called with the model type
        row locked, the lock ``ABTest.start`` takes too."""
        for guard in _DEPLOYMENT_GUARDS:
            guard(self, verb)

    def deactivate(self, *, by: Actor, reason: str = "") -> None:
        """active -> inactive: the model type has no active version afterwards.

        Refused (409) while the version is an arm of a running A/B test.
        """
        from training.models import ModelType

        with transaction.atomic():
            ModelType.objects.select_for_update().get(pk=self.model_type_id)
            self._refuse_if_guarded("deactivate")
            check_allowed(
                self.DEPLOYMENT_TRANSITIONS, current=self.deployment_status, target="inactive", label=self.version
            )
            claim(
                self,
                expected={"deployment_status": self.Deployment.ACTIVE},
                deployment_status=self.Deployment.INACTIVE,
                deactivated_at=timezone.now(),
            )
            self._audit(by=by, source="active", target="inactive", reason=reason)
            ActivationHistory.objects.create(
                model_type_id=self.model_type_id, from_version=self, to_version=None, actor=by, reason=reason
            )
            transaction.on_commit(_bump_generation)

    def archive(self, *, by: Actor, reason: str = "") -> None:
        """inactive -> archived (kept for the record, never served again).

        Refused (409) while the version is an arm of a running A/B test.
        """
        from training.models import ModelType

        check_allowed(
            self.DEPLOYMENT_TRANSITIONS, current=self.deployment_status, target="archived", label=self.version
        )
        with transaction.atomic():
            ModelType.objects.select_for_update().get(pk=self.model_type_id)
            self._refuse_if_guarded("archive")
            claim(
                self,
                expected={"deployment_status": self.Deployment.INACTIVE},
                deployment_status=self.Deployment.ARCHIVED,
            )
            self._audit(by=by, source="inactive", target="archived", reason=reason)

    @classmethod
    def rollback(cls, model_type: Any, *, by: Actor, reason: str = "") -> ModelVersion:
        """Re-activate the version that was active before the current state of ``model_type``.

        "Before" follows the activation history: the most recent version that became active and
        is not the one active now (after a deactivation, the version that was deactivated). The
        switch is an ordinary ``activate`` (same lock, audit row, history row and generation bump),
        whose reason names the rollback. Rolling back twice therefore swaps back: the version
        active before the first rollback is the "previous" one again.

        Raises ``TransitionError`` (409) with code ``no_previous_version`` when the history names
        no other version, and ``rollback_target_unavailable`` when that version has been archived
        since (never skipping to an older one: which model serves patients is a decision for a
        person, not a guess).
        """
        from training.models import ModelType

        with transaction.atomic():
            # Locked here already (activate locks again, in the same transaction) so that the
            # "current" and "previous" read below cannot change before the switch.
            ModelType.objects.select_for_update().get(pk=model_type.pk)
            current = cls.objects.active().filter(model_type_id=model_type.pk).first()
            rows = ActivationHistory.objects.filter(model_type_id=model_type.pk, to_version__isnull=False)
            if current is not None:
                rows = rows.exclude(to_version_id=current.pk)
            previous_row = rows.select_related("to_version").order_by("-created_at", "-id").first()
            if previous_row is None or previous_row.to_version is None:
                raise TransitionError(
                    f"{model_type} has no previously active version to roll back to.", code="no_previous_version"
                )
            target: ModelVersion = previous_row.to_version
            if target.deployment_status != cls.Deployment.INACTIVE:
                raise TransitionError(
                    f"The previously active version {target.version} is {target.deployment_status}; "
                    "it cannot be re-activated. Activate a version explicitly instead.",
                    code="rollback_target_unavailable",
                    current_status=target.deployment_status,
                )
            label = f"Rollback from {current.version if current else 'no active version'} to {target.version}"
            target.activate(by=by, reason=f"{label}: {reason}" if reason else f"{label}.")
            from_text = f"version {current.pk}" if current is not None else "no active version"
            emit(
                EventType.VERSION_ROLLED_BACK,
                model_type=model_type,
                summary=f"Rolled back from {from_text} to version {target.pk}",
                data={
                    "from_version": current.pk if current is not None else None,
                    "from_label": safe_label(current.version) if current is not None else None,
                    "to_version": target.pk,
                    "to_label": safe_label(target.version),
                    "by": by.pk if by is not None else None,
                },
            )
        return target

    # --- Predicates (templates, admin) -----------------------------------------------------------

    def can_decide(self) -> bool:
        return self.approval_status == self.Approval.PENDING

    def can_activate(self) -> bool:
        return self.approval_status == self.Approval.APPROVED and self.deployment_status == self.Deployment.INACTIVE

    def can_deactivate(self) -> bool:
        return self.deployment_status == self.Deployment.ACTIVE

    def can_archive(self) -> bool:
        return self.deployment_status == self.Deployment.INACTIVE

    # --- Artifact --------------------------------------------------------------------------------

    def ensure_offline_record(
        self, *, evaluation: dict[str, Any] | None = None, test_set_size: int | None = None
    ) -> PerformanceRecord:
        """The version's offline performance record (the evaluation on its snapshot's test split),
        created once: the one place that creates it. ``evaluation`` and ``test_set_size`` default
        to the job's. Idempotent under the version row lock, so registration's hook and the
        reaper's sweep may both call it (and repair a version registered without one)."""
        with transaction.atomic():
            type(self).objects.select_for_update().filter(pk=self.pk).first()
            existing = self.performance.filter(source=PerformanceRecord.Source.OFFLINE).first()
            if existing is not None:
                return existing
            metrics = evaluation if evaluation is not None else (self.job.evaluation if self.job else {})
            size = test_set_size if test_set_size is not None else int(metrics.get("test_size") or 0)
            return PerformanceRecord.objects.create(
                version=self,
                source=PerformanceRecord.Source.OFFLINE,
                dataset=self.dataset,
                metrics=metrics,
                test_set_size=size,
            )

    def record_validation(self, validation: dict[str, Any]) -> None:
        """Record that the current artifact bytes (``artifact_sha256``) passed validation."""
        self.artifact_validated_sha256 = self.artifact_sha256
        self.artifact_validation = {**validation, "at": timezone.now().isoformat()}
        type(self).objects.filter(pk=self.pk).update(
            artifact_validated_sha256=self.artifact_validated_sha256, artifact_validation=self.artifact_validation
        )

    @property
    def artifact_validated(self) -> bool:
        return bool(self.artifact_sha256) and self.artifact_validated_sha256 == self.artifact_sha256

    def load_artifact(self, *, by: SystemActor = None, purpose: str = "", require_validated: bool = False) -> Any:
        """The version's fitted model (``training.artifacts.ModelArtifact``), checked before use.

        ``training.artifacts.load_artifact`` checks the sha256 before anything parses the bytes,
        then the trusted types. A refusal (changed bytes, untrusted types, an unreadable or
        missing file) writes an ``ArtifactRejection`` row and raises ``ArtifactRefused`` (409,
        with the refusal's code: ``artifact_integrity``, ``artifact_untrusted``,
        ``artifact_invalid``, ``artifact_too_large`` or ``artifact_missing``; with
        ``require_validated``, ``artifact_unvalidated`` when no passed validation of these bytes is
        on record). ``purpose`` says who loaded it ("compare", "serving", ...) for the audit row.

        The audit row is written in its own transaction; a caller that wraps this in an atomic
        block which then rolls back loses it, so call it outside one (loading is slow I/O anyway).
        """
        from training.artifacts import ArtifactError, load_artifact

        try:
            if require_validated and not self.artifact_validated:
                # Serving: only bytes whose sha256 passed validation (manage.py validate_artifacts).
                raise ArtifactError(
                    f"The artifact (sha256 {self.artifact_sha256}) has no passed validation on record.",
                    code="artifact_unvalidated",
                )
            return load_artifact(self.artifact, self.artifact_sha256)
        except ArtifactError as exc:
            code, detail = exc.code, exc.message
        except OSError as exc:  # the file is gone from storage
            code, detail = "artifact_missing", f"The artifact {self.artifact!r} cannot be read: {exc.strerror or exc}"
        ArtifactRejection.objects.create(version=self, code=code, detail=detail[:2000], purpose=purpose[:32], actor=by)
        raise ArtifactRefused(
            f"The artifact of {self.model_type.slug} {self.version} was refused: {detail}",
            code=code,
            version=self.version,
        )


class ArtifactRefused(DomainError):
    """A version's stored artifact failed its checks; it was not deserialised (or not used)."""

    code = "artifact_refused"


def headline_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The metrics a version carries (``ModelVersion.metrics``) out of a full evaluation."""
    return _headline(evaluation)


def _headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "auroc_macro",
        "brier",
        "brier_definition",
        "ece",
        "ece_ci",
        "calibration",
        "test_size",
    )
    return {key: evaluation[key] for key in keys if key in evaluation}


def _bump_generation() -> None:
    bump_generation()


# A layer above the registry may refuse a deployment change: a running A/B test
# (``models_registry.experiments``) keeps its arms and forbids another activation of its model type.
# The registry does not import it: the experiments register a guard from ``AppConfig.ready()``
# (a callback this layer declares, so the import runs upward only). A guard is called with the
# version and the verb ("activate", "deactivate", "archive") inside the transition's transaction,
# the model type row locked, and refuses by raising a ``DomainError``.
DeploymentGuard = Callable[["ModelVersion", str], None]
_DEPLOYMENT_GUARDS: list[DeploymentGuard] = []


def register_deployment_guard(guard: DeploymentGuard) -> None:
    """Add ``guard`` (once: ``ready()`` may run again in tests) to the checks of every deployment change."""
    if guard not in _DEPLOYMENT_GUARDS:
        _DEPLOYMENT_GUARDS.append(guard)


class VersionTransition(AuditEntry):
    """Audit of a version's approval and deployment changes."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "model version transition"


class ArtifactRejection(AppendOnlyModel):
    """Audit (append-only): a version's stored artifact was refused when something loaded it.

    Not a state change of the version, so not a ``VersionTransition``: the version stays what it
    was, but every refusal (a changed byte, an untrusted type, a missing file) is on record with
    who asked and why, for the security review that should follow.
    """

    # None for a refused upload: no version was registered; the job and the bytes' sha256 say what was refused.
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="artifact_rejections"
    )
    job = models.ForeignKey(
        "training.TrainingJob", on_delete=models.PROTECT, null=True, blank=True, related_name="artifact_rejections"
    )
    sha256 = models.CharField(max_length=64, blank=True, help_text="sha256 of the refused bytes (uploads).")
    code = models.CharField(max_length=32, help_text="artifact_integrity, artifact_untrusted, artifact_invalid, ...")
    detail = models.TextField()
    purpose = models.CharField(max_length=32, blank=True, help_text="What loaded it: compare, serving, ...")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.version or f'job {self.job_id} upload'} {self.code}"


class ActivationHistory(AppendOnlyModel):
    """Append-only: which version was active for a model type, from when (``to_version`` None: none)."""

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="activation_history")
    from_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "activation history"

    def __str__(self) -> str:
        return f"{self.from_version or '-'} -> {self.to_version or '-'}"

    @classmethod
    def active_at(cls, model_type: Any, when: Any) -> ModelVersion | None:
        """Which version of ``model_type`` was active at time ``when``."""
        row = cls.objects.filter(model_type=model_type, created_at__lte=when).order_by("-created_at", "-id").first()
        return row.to_version if row is not None else None


class PerformanceRecord(models.Model):
    """One evaluation of a version: offline on a test split, reported by a client, or live."""

    class Source(models.TextChoices):
        OFFLINE = "offline", "Offline (registry, test split)"
        REPORTED = "reported", "Reported by a client"
        LIVE = "live", "Live (clinician feedback)"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="performance")
    source = models.CharField(max_length=16, choices=Source.choices)
    dataset = models.ForeignKey("training.DatasetSnapshot", on_delete=models.PROTECT, null=True, blank=True)
    metrics = models.JSONField(default=dict)
    test_set_size = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.version} {self.source} {self.created_at:%Y-%m-%d}"

"""manage.py validate_artifacts: validate the artifacts of versions with no passed validation on record."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.models import ModelVersion
from models_registry.registry.models import ArtifactRejection
from training.artifact_sandbox import evaluate_in_sandbox
from training.artifacts import ArtifactError, check_artifact_bytes


class Command(BaseCommand):
    help = (
        "Validate, in the resource-limited sandbox, the artifact of every version whose current sha256 "
        "has no passed validation on record (versions registered before validation existed, or whose "
        "registration could not validate). Serving loads only validated artifacts (docs/artifacts.md). "
        "A refusal is audited (ArtifactRejection, purpose 'validate') and makes the exit status non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List the versions that would be validated.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        verbosity = options["verbosity"]
        pending = [
            version
            for version in ModelVersion.objects.select_related("model_type").exclude(artifact="").order_by("pk")
            if not version.artifact_validated
        ]
        passed: list[int] = []
        refused: list[int] = []
        for index, version in enumerate(pending, start=1):
            name = f"{version.model_type.slug} {version.version}"
            if dry_run:
                if verbosity >= 1:
                    self.stdout.write(f"{index}/{len(pending)} {name}: would be validated")
                continue
            try:
                with default_storage.open(version.artifact, "rb") as handle:
                    data = handle.read()
                check_artifact_bytes(data, version.artifact_sha256)
                # Validation only: no dataset is read, so the sandbox loads and checks, then answers.
                result = evaluate_in_sandbox(data, version.artifact_sha256, b"")
            except (ArtifactError, OSError) as exc:
                code = getattr(exc, "code", "artifact_missing")
                message = getattr(exc, "message", None) or str(exc)
                ArtifactRejection.objects.create(
                    version=version,
                    sha256=version.artifact_sha256,
                    code=code,
                    detail=message[:2000],
                    purpose="validate",
                )
                refused.append(version.pk)
                self.stderr.write(f"{index}/{len(pending)} {name}: refused ({code}): {message[:300]}")
                continue
            version.record_validation({**result.validation, "sandbox": True, "by": "validate_artifacts"})
            passed.append(version.pk)
            if verbosity >= 1:
                self.stdout.write(f"{index}/{len(pending)} {name}: passed")
        if verbosity >= 1:
            done = "dry run, nothing validated" if dry_run else f"{len(passed)} passed, {len(refused)} refused"
            self.stdout.write(f"{len(pending)} versions without a validation on record: {done}.")
        if refused:
            raise CommandError(
                f"{len(refused)} artifacts were refused (versions {refused}); serving will not load them."
            )

"""``manage.py prepare_dataset --model-type SLUG``: build a dataset snapshot now, with progress.

The same build as ``POST /api/v1/datasets/`` (``training.datasets``), run in this process. Prints
a summary: the cases per split and label, the content hash and where the file is stored; with
``--output`` the file is copied there too. Verbosity 0 prints one line, 1 the stages and the
summary, 2 also progress within each stage.

Before building, the command works out the content the snapshot would have (``preview_snapshot``:
the read, split and content hash, no file): when a ready snapshot of the model type already has
that content, it names it and builds nothing (``--force`` builds another copy). ``--dry-run``
stops after that step and says what the snapshot would include. The flags use the words of the
admin's "Add dataset snapshot" form and of the API's fields (``--validation-fraction``,
``--test-fraction``, ``--min-quality``, ...); ``--val-fraction`` is kept as an alias.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning_engine.exceptions import DomainError
from training.datasets import SnapshotPreview, build_snapshot, preview_snapshot, same_content, snapshot_request
from training.models import DatasetSnapshot, ModelType
from training.splitting import SPLIT_NAMES, check_fractions


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and less than 1, got {value}")
    return number


def _quality(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if not 0 <= number <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**31 - 1}")
    return number


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date as YYYY-MM-DD, got {value!r}") from None


class Command(BaseCommand):
    help = (
        "Build a dataset snapshot for a model type now: approved, de-identified cases of its cohort, split "
        "by patient into train / validation / test, written as Parquet and scanned for residual identifiers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # The words of the admin form's labels and of the API's fields (DatasetCreateForm).
        parser.add_argument("--model-type", required=True, metavar="SLUG", help="Model type (its slug).")
        parser.add_argument(
            "--min-quality", type=_quality, metavar="Q", help="Minimum quality score (default: the model type's)."
        )
        parser.add_argument(
            "--validation-fraction",
            "--val-fraction",
            dest="validation_fraction",
            type=_fraction,
            default=0.15,
            metavar="F",
            help="Validation fraction: share of patients in the validation split (default 0.15).",
        )
        parser.add_argument(
            "--test-fraction",
            type=_fraction,
            default=0.2,
            metavar="F",
            help="Test fraction: share of patients in the test split (default 0.2).",
        )
        parser.add_argument("--seed", type=_seed, default=0, metavar="N", help="Seed of the split (default 0).")
        parser.add_argument(
            "--encounter-after",
            type=_date,
            metavar="DATE",
            help="Encounter after: encounters on or after DATE; a 1 January unless --created-by names a user with "
            "the PHI permission.",
        )
        parser.add_argument(
            "--encounter-before",
            type=_date,
            metavar="DATE",
            help="Encounter before: encounters on or before DATE; a 31 December unless --created-by names a user "
            "with the PHI permission.",
        )
        parser.add_argument("--output", metavar="PATH", help="Also copy the file here (a file or a folder).")
        parser.add_argument("--created-by", metavar="USERNAME", help="Record this user as the snapshot's author.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what the snapshot would include (cases, patients, splits, labels, content hash); build nothing.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Build even when a ready snapshot of the model type already has the same content.",
        )

    def handle(
        self,
        *args: Any,
        model_type: str,
        min_quality: float | None,
        test_fraction: float,
        validation_fraction: float,
        seed: int,
        encounter_after: dt.date | None,
        encounter_before: dt.date | None,
        output: str | None,
        created_by: str | None,
        dry_run: bool,
        force: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        self.verbosity = verbosity
        kind = ModelType.objects.filter(slug=model_type).first()
        if kind is None:
            known = ", ".join(ModelType.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"Unknown model type {model_type!r} (known: {known}).")
        try:
            check_fractions(validation_fraction, test_fraction)
        except ValueError as error:
            raise CommandError(str(error)) from None
        author = None
        if created_by:
            author = get_user_model().objects.filter(username=created_by).first()
            if author is None:
                raise CommandError(f"Unknown user {created_by!r} for --created-by.")
        destination = self._destination(output) if output else None

        try:
            request = snapshot_request(
                kind,
                by=author,
                min_quality=min_quality,
                encounter_after=encounter_after,
                encounter_before=encounter_before,
                validation_fraction=validation_fraction,
                test_fraction=test_fraction,
                seed=seed,
            )
        except DomainError as error:
            hint = ""
            if error.code == "date_range_too_fine":
                hint = " A finer range needs --created-by naming a user with the PHI permission."
            raise CommandError(error.message + hint) from None

        if dry_run or not force:
            self._say(
                1, f"Working out the content of a dataset for {kind.slug} (cohort {kind.cohort!r}, seed {seed}) ..."
            )
            try:
                # The build's stages are shown once, by the build; here only with --verbosity 2.
                preview = preview_snapshot(request, progress=self._progress if self.verbosity >= 2 else None)
            except DomainError as error:
                if dry_run:
                    raise CommandError(f"Dry run: no dataset could be built ({error.code}): {error.message}") from None
                # The build below fails the same way and records the failed snapshot with its reason.
                preview = None
            twin = same_content(kind, preview.content_hash) if preview else None
            if dry_run and preview is not None:
                self._dry_run_summary(preview, twin)
                return
            if twin is not None:
                copied = self._copy(twin, destination) if destination else None
                self.stdout.write(
                    f"Dataset {twin.pk} (ready since {twin.finished_at or twin.created_at:%Y-%m-%d %H:%M}) already has "
                    f"this content: {twin.case_count} cases, content hash {twin.content_hash}. Nothing built; use "
                    f"dataset {twin.pk}" + (f" (copied to {copied})" if copied else "") + ", or add --force to "
                    "build another copy."
                )
                return

        request.save(force_insert=True)
        snapshot = request
        self._say(1, f"Dataset {snapshot.pk} for {kind.slug} (cohort {kind.cohort!r}, seed {seed}):")
        try:
            snapshot = build_snapshot(snapshot.pk, progress=self._progress)
        except DomainError as error:
            raise CommandError(f"Dataset {snapshot.pk} failed ({error.code}): {error.message}") from None

        copied = self._copy(snapshot, destination) if destination else None
        self._summary(snapshot, copied)

    def _dry_run_summary(self, preview: SnapshotPreview, twin: DatasetSnapshot | None) -> None:
        splits = ", ".join(f"{name} {preview.split_sizes.get(name, 0)}" for name in SPLIT_NAMES)
        same = f" Dataset {twin.pk} already has this content." if twin else " No ready dataset has this content yet."
        self.stdout.write(
            f"Dry run, nothing built: the dataset would include {preview.case_count} cases of "
            f"{preview.patient_count} patients ({splits}); content hash {preview.content_hash}.{same}"
        )
        if self.verbosity >= 1:
            self.stdout.write(self._label_table(preview.label_counts, preview.split_sizes))

    # --- Output ----------------------------------------------------------------------------------

    def _say(self, level: int, text: str) -> None:
        if self.verbosity >= level:
            self.stdout.write(text)

    def _progress(self, stage: str, done: int, total: int) -> None:
        if done == 0:
            self._say(1, f"  {stage} ...")
        elif self.verbosity >= 2 and total:
            self._say(2, f"    {done}/{total}")

    def _destination(self, output: str) -> Path:
        path = Path(output).expanduser()
        folder = path if path.is_dir() else path.parent
        if not folder.is_dir():
            raise CommandError(f"--output: the folder {str(folder)!r} does not exist.")
        return path

    def _copy(self, snapshot: DatasetSnapshot, destination: Path) -> Path:
        target = (
            destination / Path(snapshot.file.name or "dataset.parquet").name if destination.is_dir() else destination
        )
        try:
            with snapshot.file.open("rb") as source, target.open("wb") as copy:
                shutil.copyfileobj(source, copy, length=1 << 20)
        except OSError as error:
            raise CommandError(
                f"Dataset {snapshot.pk} is ready, but copying it to {str(target)!r} failed: {error.strerror}."
            ) from None
        return target

    def _summary(self, snapshot: DatasetSnapshot, copied: Path | None) -> None:
        where = f"{snapshot.file.name}" + (f" (copied to {copied})" if copied else "")
        if self.verbosity == 0:
            self.stdout.write(
                f"Dataset {snapshot.pk} ready: {snapshot.case_count} cases, {snapshot.content_hash}, {where}"
            )
            return
        sizes = {name: len(snapshot.manifest.get(name, [])) for name in SPLIT_NAMES}
        lines = [
            f"Dataset {snapshot.pk} is ready: {snapshot.case_count} cases of {snapshot.patient_count} patients.",
            self._label_table(snapshot.label_counts, sizes),
        ]
        lines += [
            f"  Policy:       {snapshot.policy_version}",
            f"  Content hash: {snapshot.content_hash}",
            f"  File:         {where} ({snapshot.file_size} bytes, sha256 {snapshot.file_sha256})",
        ]
        self.stdout.write("\n".join(lines))

    @staticmethod
    def _label_table(label_counts: dict[str, dict[str, int]], sizes: dict[str, int]) -> str:
        labels = sorted({label for counts in label_counts.values() for label in counts})
        width = max([len("label"), *(len(label) for label in labels)])
        lines = [f"    {'label':<{width}}" + "".join(f"  {name:>10}" for name in SPLIT_NAMES)]
        for label in labels:
            counts = "".join(f"  {label_counts.get(name, {}).get(label, 0):>10}" for name in SPLIT_NAMES)
            lines.append(f"    {label:<{width}}{counts}")
        totals = "".join(f"  {sizes.get(name, 0):>10}" for name in SPLIT_NAMES)
        lines.append(f"    {'total':<{width}}{totals}")
        return "\n".join(lines)

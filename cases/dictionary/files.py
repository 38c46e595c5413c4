"""Dictionary files: one cohort and one dictionary version per JSON file, for version control.

    {"cohort": {"slug": "respiratory", "name": "...", "description": "..."},
     "dictionary": {"findings": [...], "symptoms": [...], "diagnoses": [...], "demographics": {...}}}

``export_document`` adds ``"version"`` and ``"status"`` (for the reader; ``load_document`` ignores
them), so an exported file loads back as it was. Loading a file whose dictionary equals the
cohort's newest version makes no new version; otherwise it makes one (published unless asked for
a draft), so a hospital can keep its dictionaries in git and load them on every deploy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import transaction

from cases.dictionary.definition import DefinitionError, definition_sha256, parse_definition
from cases.dictionary.models import Cohort, DataDictionary

if TYPE_CHECKING:
    from learning_engine.actors import SystemActor

DEMO_DIRECTORY = Path(__file__).resolve().parent.parent / "dictionaries"
DEMO_FILES = ("breast-mass.json", "respiratory.json")
MAX_FILE_BYTES = 5 * 1024 * 1024
_DOCUMENT_KEYS = frozenset({"cohort", "dictionary", "version", "status"})
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")


class DictionaryFileError(ValueError):
    """A file that cannot be loaded; the message says what and where."""


@dataclass(frozen=True)
class LoadResult:
    dictionary: DataDictionary
    created: bool  # False: the newest version already held this definition

    def summary(self) -> str:
        what = "created" if self.created else "unchanged"
        return f"{self.dictionary.cohort.slug}: version {self.dictionary.version} ({self.dictionary.status}), {what}"


def read_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DictionaryFileError(f"{path} is larger than {MAX_FILE_BYTES} bytes.")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise DictionaryFileError(f"Cannot read {path}: {error.strerror or error}.") from None
    except UnicodeDecodeError:
        raise DictionaryFileError(f"{path} is not UTF-8 text.") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise DictionaryFileError(f"{path} is not valid JSON ({error}).") from None


def _cohort_fields(document: Any) -> tuple[str, str, str]:
    if not isinstance(document, dict):
        raise DictionaryFileError("The file must hold a JSON object with 'cohort' and 'dictionary'.")
    unknown = sorted(set(document) - _DOCUMENT_KEYS)
    if unknown:
        raise DictionaryFileError(f"Unknown top-level keys: {', '.join(unknown)}.")
    cohort = document.get("cohort")
    if not isinstance(cohort, dict):
        raise DictionaryFileError("cohort: must be an object with slug, name and description.")
    slug, name, description = cohort.get("slug"), cohort.get("name"), cohort.get("description", "")
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise DictionaryFileError("cohort.slug: must be 1 to 100 letters, digits, '-' or '_'.")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise DictionaryFileError("cohort.name: must be a text of 1 to 200 characters.")
    if not isinstance(description, str):
        raise DictionaryFileError("cohort.description: must be a text.")
    if "dictionary" not in document:
        raise DictionaryFileError("dictionary: is required.")
    return slug, name.strip(), description


def load_document(document: Any, *, by: SystemActor = None, publish: bool = True) -> LoadResult:
    """Load one file's content. Raises ``DictionaryFileError`` (nothing written) when it is not valid."""
    slug, name, description = _cohort_fields(document)
    definition = document["dictionary"]
    try:
        parse_definition(definition)
    except DefinitionError as error:
        where = f"dictionary.{error.path}" if error.path else "dictionary"
        raise DictionaryFileError(f"{where}: {error.message}") from None
    with transaction.atomic():
        cohort, created = Cohort.objects.get_or_create(slug=slug, defaults={"name": name, "description": description})
        if not created and (cohort.name, cohort.description) != (name, description):
            Cohort.objects.filter(pk=cohort.pk).update(name=name, description=description)
        latest = cohort.dictionaries.order_by("-version").first()
        if latest is not None and latest.definition_sha256 == definition_sha256(definition):
            if publish and latest.can_publish():
                latest.publish(by=by, reason="Published by load_dictionary.")
            return LoadResult(latest, created=False)
        draft = DataDictionary.create_draft(
            cohort, definition, by=by, based_on=latest, reason="Loaded from a dictionary file."
        )
        if publish:
            draft.publish(by=by, reason="Published by load_dictionary.")
    return LoadResult(draft, created=True)


def load_file(path: str | Path, *, by: SystemActor = None, publish: bool = True) -> LoadResult:
    try:
        return load_document(read_file(path), by=by, publish=publish)
    except DictionaryFileError as error:
        raise DictionaryFileError(f"{path}: {error}") from None


def export_document(cohort: Cohort, *, version: int | None = None) -> dict[str, Any]:
    """The cohort and one version (by default the newest published one) as a file's content."""
    versions = cohort.dictionaries.all()
    if version is not None:
        dictionary = versions.filter(version=version).first()
        if dictionary is None:
            raise DictionaryFileError(f"{cohort.slug} has no version {version}.")
    else:
        dictionary = versions.filter(status=DataDictionary.Status.PUBLISHED).order_by("-version").first()
        if dictionary is None:
            raise DictionaryFileError(f"{cohort.slug} has no published version (name one with --dictionary-version).")
    return {
        "cohort": {"slug": cohort.slug, "name": cohort.name, "description": cohort.description},
        "version": dictionary.version,
        "status": dictionary.status,
        "dictionary": dictionary.definition,
    }


def load_demo_dictionaries(*, by: SystemActor = None) -> list[LoadResult]:
    """The shipped dictionaries of the demo cohorts (``cases/dictionaries/``)."""
    return [load_file(DEMO_DIRECTORY / name, by=by) for name in DEMO_FILES]

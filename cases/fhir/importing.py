"""FHIR R4 import: Bundles (collection, transaction, batch) and NDJSON bulk-export files to cases.

Shared by ``manage.py import_fhir`` and ``POST /api/v1/fhir/``. One case per Encounter: its
Patient gives the identifiers, its Observations the findings and its Conditions the diagnosis and
symptoms (``cases.fhir.mapping``). The cases are written by ``cases.importing.import_objects``, so
an FHIR import keeps every guarantee of ``import_cases``: the dictionary check, quality scoring,
chunked transactions, idempotent re-import (an unchanged Encounter is "unchanged"; one whose
content changed updates its case while that is still under review), de-identification when a
case is approved.

Reading streams: a Bundle's entries are read one at a time (ijson), NDJSON line by line, and each
resource is validated by fhir.resources and reduced at once to the little the mapping needs (an
identity, an Encounter's id and date, a LOINC code with its value and unit, a Condition's codes).
An Encounter needs resources that may come anywhere after it, so what is kept grows with the used
resources (about 300 bytes each), never with the input's size or its unused resources. Each Bundle
is written when it ends (a Synthea export is one Bundle per patient); NDJSON files of one import
are written together at the end (bulk export puts each resource type in its own file).

Reporting: every problem names its resource by position (``entry[17]``, ``line 5``, ``file 3``),
its type, a code and a message, never an identifier or a value: file names are not repeated (a
Synthea file is named after its patient). Errors (a resource fhir.resources refuses, a unit that
cannot be converted, a value outside the hard limits, an Encounter whose case is refused) fail
that resource and the rest still imports; warnings (a missing finding, a value outside the
expected range, an Observation of no Encounter in the import) do not. Resource types the engine
does not use are counted and skipped.
"""

from __future__ import annotations

import datetime as dt
import io
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import IO, TYPE_CHECKING, Any

import ijson
import numpy as np

from cases.dictionary.checking import DictionaryCache
from cases.dictionary.definition import Definition
from cases.dictionary.models import Cohort, DataDictionary
from cases.dictionary.validation import Issue
from cases.fhir import mapping, resources
from cases.importing import CHUNK_SIZE, MAX_LINE_BYTES, ImportReport, LineError, import_objects, read_lines
from cases.interchange import RecordError

if TYPE_CHECKING:
    from learning_engine.actors import Actor

BUNDLE_TYPES = frozenset({"collection", "transaction", "batch"})
MAX_REPORTED_PROBLEMS = 1000  # a report of a million problems helps nobody
# No FHIR number has a thousand digits; ijson's C backend crashes on an integer of a few thousand.
MAX_DIGITS = 1000
# Nesting the parser is kept from: far beyond any resource, far below what harms ijson (hundreds of
# thousands of levels). A resource nested deeper than fhir.resources can validate within Python's
# recursion limit is refused on its own (RecursionError); NDJSON lines are bounded by the JSON
# parser's own limit.
BUNDLE_DEPTH = 1000
DEFAULT_SOURCE = "fhir"
# Problem codes that fail the resource they are reported at; every other code is a warning.
ERROR_CODES = frozenset(
    {
        "invalid_json",
        "invalid_resource",
        "unit_refused",
        "invalid_value",
        "outside_hard_limits",
        "no_patient",
        "no_cohort",
        "ambiguous_cohort",
        "refused",
        "missing_identifier",
        "missing_date",
        "missing_id",
    }
)


class ImportRefused(ValueError):
    """The input as a whole cannot be read (not a Bundle, a Bundle type not taken): nothing is written.
    ``code`` is the API's error code."""

    def __init__(self, message: str, *, code: str = "invalid_body") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Position:
    """Where a resource is: ``entry[17]`` of a Bundle or ``line 5`` of NDJSON, in ``file`` 3 of a folder."""

    index: int
    line: bool = False
    file: int | None = None

    def __str__(self) -> str:
        where = f"line {self.index}" if self.line else f"entry[{self.index}]"
        return f"file {self.file}, {where}" if self.file is not None else where

    def to_json(self) -> dict[str, int]:
        data = {"line" if self.line else "entry": self.index}
        if self.file is not None:
            data["file"] = self.file
        return data


@dataclass(frozen=True, slots=True)
class Problem:
    position: Position
    resource_type: str
    code: str
    field: str
    message: str

    @property
    def level(self) -> str:
        return "error" if self.code in ERROR_CODES else "warning"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.position.to_json(),
            "resource_type": self.resource_type,
            "level": self.level,
            "code": self.code,
            "field": self.field,
            "message": self.message,
        }

    def __str__(self) -> str:
        kind = f" {self.resource_type}" if self.resource_type else ""
        where = f" {self.field}:" if self.field else ""
        return f"{self.position}{kind}: {self.level} {self.code}:{where} {self.message}"


@dataclass
class FhirImportReport:
    resources: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # unused types, and resources entered in error
    encounters: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0  # encounters whose case was not written
    errors: int = 0
    warnings: int = 0
    problems: list[Problem] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)  # for the PHI access log, never answered

    def add(self, problem: Problem) -> None:
        if problem.level == "error":
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem)

    def summary(self, *, dry_run: bool = False) -> str:
        would = "would be " if dry_run else ""
        skipped = sum(self.skipped.values())
        return (
            f"{self.resources} resources read ({skipped} skipped), {self.encounters} encounters: "
            f"{self.created} {would}created, {self.updated} {would}updated, {self.unchanged} unchanged, "
            f"{self.failed} failed; {self.errors} errors, {self.warnings} warnings"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "resources": self.resources,
            "by_type": dict(sorted(self.by_type.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "encounters": self.encounters,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [problem.to_json() for problem in self.problems],
            "problems_truncated": self.errors + self.warnings > len(self.problems),
        }


ProblemCallback = Callable[[Problem], None]
ProgressCallback = Callable[[FhirImportReport], None]
# A resource read from the input, or the reason it could not be read.
Item = tuple[Position, Any]


@dataclass(frozen=True, slots=True)
class Unreadable:
    message: str


# --- Readers ---------------------------------------------------------------------------------------


def _bundle_head(stream: IO[bytes]) -> tuple[Any, Any]:
    """The Bundle's ``resourceType`` and ``type``: read up to its entries, or (when they follow
    the entries) by a second pass over the top-level values only."""
    found: dict[str, Any] = {}
    try:
        for prefix, event, value in ijson.parse(GuardedStream(stream, max_depth=BUNDLE_DEPTH)):
            if prefix in ("resourceType", "type") and event in ("string", "number", "boolean", "null"):
                found[prefix] = value
            elif prefix == "" and event in ("map_key", "end_map") and (event == "end_map" or value == "entry"):
                break
            if len(found) == 2:
                break
    except Exception:  # noqa: S110  # ijson's errors quote the text: the main pass reports the entries
        pass
    for key in ("resourceType", "type"):
        if key not in found:
            stream.seek(0)
            try:
                found[key] = next(ijson.items(GuardedStream(stream, max_depth=BUNDLE_DEPTH), key), None)
            except Exception:
                raise ImportRefused("The body is not valid JSON.", code="parse_error") from None
    stream.seek(0)
    return found.get("resourceType"), found.get("type")


_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEPS = np.zeros(256, dtype=np.int32)
_STEPS[[ord("["), ord("{")]] = 1
_STEPS[[ord("]"), ord("}")]] = -1
_BRACKETS = _STEPS != 0
# Every byte but a quote or a bracket: deleted by ``bytes.translate`` before a chunk without escapes
# is scanned, leaving a tenth of its bytes or so in their order.
_NOT_MARKS = bytes(byte for byte in range(256) if byte not in b'"[]{}')
_DIGITS = b"0123456789"
_DIGIT_FLAGS = bytes(49 if byte in _DIGITS else 48 for byte in range(256))
_DIGIT_RUN = b"1" * MAX_DIGITS


class GuardedStream:
    """A binary stream, checked as it is read, for what would take the JSON parser down.

    ijson's C backend is fast (an entry in about 30 us) but not hardened: an integer of a few
    thousand digits crashes the process, and nesting a few hundred thousand levels deep exhausts
    memory. Each chunk is scanned (vectorised, as ``learning_engine.parsers.raw_json_depth`` does
    for request bodies) for nesting deeper than ``max_depth`` outside strings and for runs of
    ``MAX_DIGITS`` digits, carrying the string, escape and depth state across chunks. The parser
    is handed the input up to the first such place and then an end of input, so what came before
    is still read; ``hostile`` says what was found.
    """

    def __init__(self, raw: IO[bytes], *, max_depth: int) -> None:
        self.raw = raw
        self.max_depth = max_depth
        self.hostile = ""
        self.depth = 0
        self.in_string = False
        self.digits = 0  # length of the digit run the last chunk ended with
        self.backslashes = 0  # length of the backslash run the last chunk ended with

    def read(self, size: int = -1) -> bytes:
        if self.hostile:
            return b""
        chunk = self.raw.read(size)
        cut = min(self._digits(chunk), self._nesting(chunk))
        if cut < len(chunk):
            return chunk[:cut]
        return chunk

    def _digits(self, chunk: bytes) -> int:
        lead = len(chunk) - len(chunk.lstrip(_DIGITS))
        if lead and self.digits + lead >= MAX_DIGITS:
            self.hostile = f"a number (or digit run) of {MAX_DIGITS:,} digits or more"
            return 0
        # Digits as 1 and all else as 0, then a substring search: a regex scan tries a run at
        # every digit and cost more than the JSON parser itself.
        found = chunk.translate(_DIGIT_FLAGS).find(_DIGIT_RUN)
        if found >= 0:
            self.hostile = f"a number (or digit run) of {MAX_DIGITS:,} digits or more"
            return found
        run = len(chunk) - len(chunk.rstrip(_DIGITS))
        self.digits = self.digits + run if run == len(chunk) else run
        return len(chunk)

    def _nesting(self, chunk: bytes) -> int:
        if not chunk:
            return 0
        if not self.backslashes and b"\\" not in chunk:  # no escapes (most chunks): every quote counts
            marks = chunk.translate(None, _NOT_MARKS)
            if not self._deeper(np.frombuffer(marks, dtype=np.uint8)):
                return len(chunk)
            # Too deep somewhere: the full scan below finds where, from the same state.
        codes = np.frombuffer(chunk, dtype=np.uint8)
        if self.backslashes or b"\\" in chunk:
            index = np.arange(len(codes))
            slash = codes == _BACKSLASH
            # The backslashes right before each byte (the last chunk's trailing run counts for the first).
            last_other = np.maximum.accumulate(np.where(slash, -1, index))
            before = np.empty(len(codes), dtype=np.int64)
            before[0] = self.backslashes
            previous = last_other[:-1]
            before[1:] = np.where(previous >= 0, index[:-1] - previous, index[1:] + self.backslashes)
            quotes = (codes == _QUOTE) & (before % 2 == 0)
            self.backslashes = (
                len(chunk) - int(last_other[-1]) - 1 if last_other[-1] >= 0 else self.backslashes + len(chunk)
            )
            # From here on only the quotes that count and the brackets matter.
            where = np.flatnonzero(quotes | _BRACKETS[codes])
            quotes = quotes[where]
        else:
            where = np.flatnonzero(_BRACKETS[codes] | (codes == _QUOTE))
            quotes = codes[where] == _QUOTE
        if not len(where):  # within one string, or between values
            return len(chunk)
        # The running sums over those bytes only (a fifth of a FHIR text or less), not every byte.
        toggles = np.cumsum(quotes, dtype=np.int64)
        inside = ((toggles + int(self.in_string)) & 1).astype(bool) | quotes
        steps = _STEPS[codes[where]]
        steps[inside] = 0
        levels = np.cumsum(steps, dtype=np.int64) + self.depth
        deep = np.flatnonzero(levels > self.max_depth)
        if len(deep):
            self.hostile = f"nesting deeper than {self.max_depth} levels"
            return int(where[deep[0]])
        self.depth = int(levels[-1])
        self.in_string = bool((int(toggles[-1]) + int(self.in_string)) & 1)
        return len(chunk)

    def _deeper(self, marks: np.ndarray) -> bool:
        """For a chunk without escapes, given its quotes and brackets only (in order): whether its
        nesting passes ``max_depth``; when not, the depth and string state are carried on as the
        full scan does. When it does, the state is left as it was for the full scan."""
        if not len(marks):  # within one string, or between values
            return False
        quotes = marks == _QUOTE
        toggles = np.cumsum(quotes, dtype=np.int64)
        inside = ((toggles + int(self.in_string)) & 1).astype(bool) | quotes
        steps = _STEPS[marks]
        steps[inside] = 0
        levels = np.cumsum(steps, dtype=np.int64) + self.depth
        if int(levels.max()) > self.max_depth:
            return True
        self.depth = int(levels[-1])
        self.in_string = bool((int(toggles[-1]) + int(self.in_string)) & 1)
        return False


def read_bundle(stream: IO[bytes], *, file: int | None = None) -> Iterator[Item]:
    """The entries' resources of a Bundle (JSON), one at a time. Raises ``ImportRefused`` when the
    input is not a Bundle of a type taken; a broken entry is yielded as ``Unreadable``."""
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    kind, bundle_type = _bundle_head(stream)
    if kind != "Bundle":
        raise ImportRefused(
            "A JSON input must be a FHIR Bundle (resourceType 'Bundle'); NDJSON takes one resource a line.",
            code="not_a_bundle",
        )
    if bundle_type not in BUNDLE_TYPES:
        raise ImportRefused(
            f"The Bundle type must be one of {', '.join(sorted(BUNDLE_TYPES))}.", code="bundle_type_not_taken"
        )
    index = -1
    guarded = GuardedStream(stream, max_depth=BUNDLE_DEPTH)
    try:
        for index, entry in enumerate(ijson.items(guarded, "entry.item")):
            yield Position(index, file=file), _entry_resource(entry)
    except Exception:  # ijson's errors (and decimal's, for an absurd exponent) say where, with the text
        reason = f"has {guarded.hostile}" if guarded.hostile else "is not valid JSON"
        yield Position(index + 1, file=file), Unreadable(f"The Bundle {reason} from here on; the rest was not read.")


def _entry_resource(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return Unreadable("A Bundle entry must be an object.")
    resource = entry.get("resource")
    if resource is None:
        return Unreadable("The entry has no resource.")
    if not isinstance(resource, dict):
        return Unreadable("The entry's resource must be an object.")
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and "id" not in resource:
        # A transaction may leave the id to the server and refer to the entry by its fullUrl.
        resource = {**resource, "_fullUrl": full_url}
    return resource


def read_ndjson(stream: IO[bytes], *, file: int | None = None) -> Iterator[Item]:
    """NDJSON: one resource a line (blank lines skipped, but counted for line numbers)."""
    for number, line in enumerate(read_lines(stream, max_line_bytes=MAX_LINE_BYTES), start=1):
        position = Position(number, line=True, file=file)
        if isinstance(line, RecordError):
            yield position, Unreadable(line.message)
            continue
        if not line.strip():
            continue
        yield position, _decode_line(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line)


def _decode_line(line: bytes) -> Any:
    from learning_engine.parsers import InvalidCharacter, InvalidNumber, loads, refuse_nul

    try:
        refuse_nul(line)
        return loads(line)
    except (InvalidCharacter, InvalidNumber, ValueError, RecursionError):
        return Unreadable("The line is not valid JSON (UTF-8, no NaN or Infinity).")


# --- Collecting ------------------------------------------------------------------------------------


# A position as the collector keeps it until the Bundle ends: a tuple of (index, line, file). The
# garbage collector stops tracking a tuple of numbers and None, while each of the thousands of
# ``Position`` objects kept would be walked by every full collection of a large import.
Where = tuple[int, bool, int | None]


def _where(position: Position) -> Where:
    return (position.index, position.line, position.file)


# What is kept of each used resource until its Bundle is written, in the shapes the garbage
# collector stops tracking (tuples of strings, numbers and such tuples; dicts of strings): a large
# Bundle keeps hundreds of thousands of them, and every full collection would walk each object it
# tracks. A measurement is kept as the tuple of its fields (``_row``) and made again when written.
_MEASUREMENT_FIELDS = tuple(item.name for item in fields(mapping.Measurement))
_row = operator.attrgetter(*_MEASUREMENT_FIELDS)  # Measurement -> the tuple of its fields, in order
MeasurementRow = tuple[Any, ...]
ConditionRow = tuple[Where, tuple[str, ...], str | None]  # position, ICD-10 codes, id
# A Patient: its position, the items of the record's patient object (strings: a tuple holding a
# dict stays tracked) and whether it has an MRN.
_Patient = tuple[Where, tuple[tuple[str, Any], ...], bool]


@dataclass(slots=True)
class _Encounter:
    """One tracked object per Encounter; what it gathers is in tuples, grown by concatenation."""

    position: Where
    id: str
    patient_id: str | None
    date: dt.date | None
    diagnosis_ranks: dict[str, int]  # Condition id -> rank
    measurements: tuple[MeasurementRow, ...] = ()
    conditions: tuple[ConditionRow, ...] = ()
    snomed: tuple[str, ...] = ()


class _Collector:
    """Reads resources and keeps what the mapping needs of the used ones."""

    def __init__(
        self, report: FhirImportReport, on_problem: ProblemCallback | None, wanted: frozenset[str] | None = None
    ) -> None:
        self.report = report
        self.on_problem = on_problem
        # The codes the dictionaries use (LOINC, ICD-10, SNOMED CT): an Observation or Condition
        # with none of them is skipped before it is validated. A Synthea export holds hundreds of
        # Observations per patient the engine never reads (surveys, panels, other labs).
        self.wanted = wanted
        self.patients: dict[str, _Patient] = {}  # across the whole import
        self.encounters: dict[str, _Encounter] = {}
        self.positions: list[Where] = []  # a Measurement's position indexes this
        # Observations and Conditions read before their Encounter (any order is allowed).
        self.waiting_measurements: dict[str, list[tuple[Where, tuple[MeasurementRow, ...]]]] = {}
        self.waiting_conditions: dict[str, list[tuple[Where, tuple[str, ...], tuple[str, ...], str | None]]] = {}

    def problem(self, position: Position | Where, resource_type: str, code: str, field_name: str, message: str) -> None:
        where = Position(*position) if isinstance(position, tuple) else position
        problem = Problem(where, resource_type, code, field_name, message)
        self.report.add(problem)
        if self.on_problem:
            self.on_problem(problem)

    def add(self, position: Position, item: Any) -> None:
        report = self.report
        report.resources += 1
        if isinstance(item, Unreadable):
            report.by_type["(unreadable)"] += 1
            self.problem(position, "", "invalid_json", "", item.message)
            return
        kind = item.get("resourceType") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not kind or len(kind) > 64 or not kind.isalpha():
            report.by_type["(unreadable)"] += 1
            self.problem(position, "", "invalid_resource", "resourceType", "A resource must name its resourceType.")
            return
        if kind not in resources.USED_TYPES:
            shown = resources.reported_type(kind)  # never a name FHIR does not have: the sender's text
            report.by_type[shown] += 1
            report.skipped[shown] += 1
            return
        report.by_type[kind] += 1
        if self.wanted is not None and kind in ("Observation", "Condition") and not self._may_use(item):
            report.skipped[f"{kind} (no code the dictionaries use)"] += 1
            return
        full_url = item.pop("_fullUrl", None)
        try:
            model = resources.validate_read(item, kind)
        except resources.ResourceInvalid as invalid:
            self.problem(position, kind, "invalid_resource", invalid.path, invalid.message)
            return
        fallback = mapping.reference_id(full_url, kind) if isinstance(full_url, str) else None
        _COLLECTING[kind](self, _where(position), model, fallback)

    def _may_use(self, item: dict[str, Any]) -> bool:
        """Whether a raw Observation or Condition carries a code (its own or a component's) that a
        dictionary uses; anything unexpected in its shape answers yes, so validation reports it."""
        assert self.wanted is not None
        concepts = [item.get("code")]
        components = item.get("component")
        if isinstance(components, list):
            concepts.extend(part.get("code") if isinstance(part, dict) else None for part in components)
        for concept in concepts:
            codings = concept.get("coding") if isinstance(concept, dict) else None
            if not isinstance(codings, list):
                return True
            for coding in codings:
                code = coding.get("code") if isinstance(coding, dict) else None
                if not isinstance(code, str):
                    return True
                if code in self.wanted or code.strip().upper() in self.wanted:
                    return True
                if item.get("resourceType") == "Condition" and mapping.normalise_icd10(code) in self.wanted:
                    return True
        return False

    def _patient(self, position: Where, model: Any, fallback: str | None) -> None:
        identity, problems = mapping.map_patient(model)
        pid = model.id or fallback
        if not pid:
            self.problem(position, "Patient", "missing_id", "id", "The Patient has no id (nor a urn:uuid fullUrl).")
            return
        for issue in problems:
            code = "missing_identifier" if issue.code == "missing" else issue.code
            self.problem(position, "Patient", code, issue.field, issue.message)
        self.patients[pid] = (position, tuple(identity.items()), "mrn" in identity)

    def _encounter(self, position: Where, model: Any, fallback: str | None) -> None:
        facts = mapping.encounter_facts(model, fallback_id=fallback)
        if facts.void:
            self.report.skipped["Encounter (entered in error or cancelled)"] += 1
            return
        if not facts.id:
            self.problem(position, "Encounter", "missing_id", "id", "The Encounter has no id (nor a urn:uuid fullUrl).")
            return
        if facts.id in self.encounters:
            self.problem(position, "Encounter", "refused", "id", "The Encounter's id repeats an earlier Encounter's.")
            return
        encounter = _Encounter(position, facts.id, facts.patient_id, facts.date, facts.diagnosis_ranks)
        self.encounters[facts.id] = encounter
        for _where, found in self.waiting_measurements.pop(facts.id, ()):
            encounter.measurements += found
        for where, icd10, snomed, cid in self.waiting_conditions.pop(facts.id, ()):
            encounter.conditions += ((where, icd10, cid),)
            encounter.snomed += snomed

    def _observation(self, position: Where, model: Any, fallback: str | None) -> None:
        if model.status in mapping.VOID_OBSERVATION:
            self.report.skipped["Observation (entered in error or cancelled)"] += 1
            return
        seq = len(self.positions)
        measured = mapping.measurements(model, seq)
        if not measured:
            return  # no LOINC code: nothing a dictionary could use
        found = tuple(map(_row, measured))
        self.positions.append(position)
        eid = mapping.reference_id(model.encounter.reference if model.encounter else None, "Encounter")
        if eid is None:
            self.problem(
                position, "Observation", "unlinked", "encounter", "The Observation refers to no Encounter; not used."
            )
            return
        if eid in self.encounters:
            self.encounters[eid].measurements += found
        else:
            self.waiting_measurements.setdefault(eid, []).append((position, found))

    def _condition(self, position: Where, model: Any, fallback: str | None) -> None:
        icd10 = tuple(mapping.condition_codes(model))
        snomed = tuple(mapping.condition_snomed_codes(model))
        if not icd10 and not snomed:
            return
        eid = mapping.reference_id(model.encounter.reference if model.encounter else None, "Encounter")
        if eid is None:
            self.problem(
                position, "Condition", "unlinked", "encounter", "The Condition refers to no Encounter; not used."
            )
            return
        cid = model.id or fallback
        if eid in self.encounters:
            encounter = self.encounters[eid]
            encounter.conditions += ((position, icd10, cid),)
            encounter.snomed += snomed
        else:
            self.waiting_conditions.setdefault(eid, []).append((position, icd10, snomed, cid))

    def take_encounters(self) -> list[_Encounter]:
        """The Encounters read since the last call; what still waits for an Encounter is reported."""
        for waiting in self.waiting_measurements.values():
            for position, _found in waiting:
                self.problem(
                    position,
                    "Observation",
                    "unlinked",
                    "encounter",
                    "The Observation's Encounter is not in this input; not used.",
                )
        for conditions in self.waiting_conditions.values():
            for position, *_rest in conditions:
                self.problem(
                    position,
                    "Condition",
                    "unlinked",
                    "encounter",
                    "The Condition's Encounter is not in this input; not used.",
                )
        self.waiting_measurements = {}
        self.waiting_conditions = {}
        taken = list(self.encounters.values())
        self.encounters = {}
        return taken


# Each used type's method, looked up once (bound methods kept on the collector would make a cycle
# that only a full collection frees).
_COLLECTING: dict[str, Callable[[_Collector, Where, Any, str | None], None]] = {
    "Patient": _Collector._patient,
    "Encounter": _Collector._encounter,
    "Observation": _Collector._observation,
    "Condition": _Collector._condition,
}


# --- Mapping and writing ---------------------------------------------------------------------------


class _Cohorts:
    """The cohort of each encounter: the one given, or the one whose dictionary knows most of its
    Observations' LOINC codes."""

    def __init__(self, cohort: str | None, cache: DictionaryCache) -> None:
        self.cache = cache
        self.fixed: DataDictionary | None = None
        self.by_loinc: dict[str, set[str]] = {}
        self.dictionaries: dict[str, DataDictionary] = {}
        if cohort is not None:
            dictionary = cache.current(cohort)
            if dictionary is None:
                raise ImportRefused(
                    "No such cohort, or it has no published data dictionary yet.", code="unknown_cohort"
                )
            self.fixed = dictionary
            return
        slugs = Cohort.objects.filter(dictionaries__status=DataDictionary.Status.PUBLISHED).values_list(
            "slug", flat=True
        )
        for slug in sorted(set(slugs)):
            dictionary = cache.current(slug)
            if dictionary is None:
                continue
            self.dictionaries[slug] = dictionary
            for loinc in mapping.loinc_index(dictionary.parsed):
                self.by_loinc.setdefault(loinc, set()).add(slug)

    def codes(self) -> frozenset[str]:
        """Every LOINC, ICD-10 and SNOMED CT code the dictionaries in play use."""
        dictionaries = [self.fixed] if self.fixed is not None else list(self.dictionaries.values())
        found: set[str] = set()
        for dictionary in dictionaries:
            definition = dictionary.parsed
            found.update(mapping.loinc_index(definition))
            found.update(definition.diagnosis_codes)
            found.update(symptom.snomed_ct for symptom in definition.symptoms if symptom.snomed_ct)
        return frozenset(found)

    def choose(self, measurements: list[mapping.Measurement]) -> DataDictionary | str:
        """The dictionary of an encounter with these measurements, or the problem code when none
        can be chosen."""
        if self.fixed is not None:
            return self.fixed
        votes: Counter[str] = Counter()
        for measurement in measurements:
            for slug in set().union(*(self.by_loinc.get(code, set()) for code in measurement.loinc)):
                votes[slug] += 1
        if not votes:
            return "no_cohort"
        ranked = votes.most_common(2)
        if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
            return "ambiguous_cohort"
        return self.dictionaries[ranked[0][0]]


class _Writer:
    def __init__(
        self,
        *,
        report: FhirImportReport,
        collector: _Collector,
        cohorts: _Cohorts,
        by: Actor,
        source: str,
        progress: ProgressCallback | None,
        chunk_size: int,
        max_encounters: int | None,
    ) -> None:
        self.report = report
        self.collector = collector
        self.cohorts = cohorts
        self.by = by
        self.source = source
        self.progress = progress
        self.chunk_size = chunk_size
        self.max_encounters = max_encounters

    def write(self, encounters: list[_Encounter]) -> None:
        if not encounters:
            return
        if self.max_encounters is not None and self.report.encounters + len(encounters) > self.max_encounters:
            raise ImportRefused(
                f"The input holds more than {self.max_encounters} encounters; at most that many are taken per "
                "request. Split it, or use `manage.py import_fhir` for large exports.",
                code="too_many_records",
            )
        self.report.encounters += len(encounters)
        positions: list[Where] = []  # of the records given so far, in order

        def records() -> Iterator[dict[str, Any]]:
            # Made as they are written, each Encounter let go once its record is: the collected
            # state shrinks while the cases are written instead of staying until the end.
            encounters.reverse()
            while encounters:
                encounter = encounters.pop()
                record = self._record(encounter)
                if record is None:
                    self.report.failed += 1
                    continue
                positions.append(encounter.position)
                yield record

        def refused(error: LineError) -> None:
            self.collector.problem(positions[error.line - 1], "Encounter", "refused", error.field, error.message)

        def progressed(report: ImportReport) -> None:
            if self.progress:
                self.progress(self._merged(report))

        result = import_objects(
            records(), by=self.by, progress=progressed, on_error=refused, chunk_size=self.chunk_size
        )
        merged = self._merged(result)
        self.report.created, self.report.updated = merged.created, merged.updated
        self.report.unchanged, self.report.failed = merged.unchanged, merged.failed
        self.report.case_ids = merged.case_ids

    def _merged(self, batch: ImportReport) -> FhirImportReport:
        """The report with this batch's counts added (the batch runs while earlier ones are done)."""
        view = FhirImportReport(**self.report.__dict__)
        view.created = self.report.created + batch.created
        view.updated = self.report.updated + batch.updated
        view.unchanged = self.report.unchanged + batch.unchanged
        view.failed = self.report.failed + batch.failed
        view.case_ids = self.report.case_ids + batch.case_ids
        return view

    def _record(self, encounter: _Encounter) -> dict[str, Any] | None:
        collector, position = self.collector, encounter.position
        patient = collector.patients.get(encounter.patient_id or "")
        if patient is None:
            collector.problem(
                position, "Encounter", "no_patient", "subject", "The Encounter's Patient is not in this input."
            )
            return None
        patient_position, identity, has_mrn = patient
        if not has_mrn:
            collector.problem(
                position,
                "Encounter",
                "missing_identifier",
                "subject",
                f"Its Patient ({Position(*patient_position)}) has no identifier of type MR.",
            )
            return None
        if encounter.date is None:
            collector.problem(
                position, "Encounter", "missing_date", "period", "The Encounter has no period start (or end)."
            )
            return None
        measurements = [mapping.Measurement(*row) for row in encounter.measurements]
        chosen = self.cohorts.choose(measurements)
        if isinstance(chosen, str):
            message = (
                "No cohort's data dictionary has a LOINC code of its Observations; name the cohort."
                if chosen == "no_cohort"
                else "Two cohorts' data dictionaries fit its Observations equally; name the cohort."
            )
            collector.problem(position, "Encounter", chosen, "", message)
            return None
        definition: Definition = chosen.parsed
        findings, problems = mapping.map_observations(measurements, definition)
        ranks = encounter.diagnosis_ranks
        conditions = encounter.conditions
        ranked = {index: ranks[cid] for index, (_where, _codes, cid) in enumerate(conditions) if cid and cid in ranks}
        code, label, diagnosis_problems = mapping.map_conditions(
            [codes for _where, codes, _cid in encounter.conditions], definition, ranked=ranked
        )
        for issue in problems:
            self._report(issue, encounter, "Observation", collector.positions)
        for issue in diagnosis_problems:
            self._report(issue, encounter, "Condition", [where for where, _codes, _cid in encounter.conditions])
        return {
            "external_id": encounter.id,
            "source": self.source,
            "cohort": chosen.cohort.slug,
            "patient": dict(identity),
            "encounter_date": encounter.date.isoformat(),
            "findings": findings,
            "symptoms": mapping.map_symptoms(encounter.snomed, definition),
            "diagnosis": {"code": code, "label": label} if code else None,
        }

    def _report(self, issue: Issue, encounter: _Encounter, kind: str, positions: list[Where]) -> None:
        if issue.position is None:  # about the encounter as a whole (a missing finding)
            self.collector.problem(encounter.position, "Encounter", issue.code, issue.field, issue.message)
        else:
            self.collector.problem(positions[issue.position], kind, issue.code, issue.field, issue.message)


def import_resources(
    groups: Iterable[Iterable[Item]],
    *,
    by: Actor,
    source: str = DEFAULT_SOURCE,
    cohort: str | None = None,
    progress: ProgressCallback | None = None,
    on_problem: ProblemCallback | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_encounters: int | None = None,
) -> FhirImportReport:
    """Import groups of resources: each group (a Bundle, or the NDJSON files of an import) is read,
    then its encounters are written. Patients are remembered across groups.

    Raises ``ImportRefused`` (nothing of that group is written) for an input that is not a Bundle
    of a type taken, an unknown ``cohort``, or more than ``max_encounters`` encounters.
    """
    report = FhirImportReport()
    cohorts = _Cohorts(cohort, DictionaryCache())
    collector = _Collector(report, on_problem, cohorts.codes())
    writer = _Writer(
        report=report,
        collector=collector,
        cohorts=cohorts,
        by=by,
        source=source,
        progress=progress,
        chunk_size=chunk_size,
        max_encounters=max_encounters,
    )
    for group in groups:
        for position, item in group:
            collector.add(position, item)
            if progress and report.resources % 10_000 == 0:
                progress(report)
        writer.write(collector.take_encounters())
    if progress:
        progress(report)
    return report

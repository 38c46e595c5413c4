"""Note scrubbing: identifier-token recall and clinical-token precision on generated notes, after vs before.

The notes (``benchmarks/scrubgen.py``, fixed seed) plant every category of issue #10 with the
place of each identifier known. A token (a run of letters and digits, with any invisible
characters or marks inside it) of an identifier is caught when none of its characters is left in
the scrubbed note; a clinical token is kept when all of them are. The scrubbed note is aligned
with the note (``difflib``, placeholders turned into one character that no note holds), so a
scrubber is judged by what it returns and nothing else.

Recall goal: at least 0.99 of identifier tokens, the figure published for the best open
scrubbers (the i2b2 2014 de-identification challenge's token-level recall; Philter reports
0.99+). Precision goal: at least 0.98 of clinical tokens kept.

Baseline, in the same run: the scrubber of policy safe-harbor-2026.2 (``cases/deid.py`` at commit
``BASELINE_COMMIT``, read with ``git show`` and loaded as a module), on the same notes. Without
git history (an exported tree) the baseline rows say so and only the current figures are shown.
The CPU time of both on the same notes is the throughput row.
"""

from __future__ import annotations

import datetime as dt
import difflib
import gc
import re
import subprocess
import sys
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import scrubgen
from benchmarks.harness import Result, scaled, timer
from cases.deid import scrubbing

NOTES = 2000
BASELINE_COMMIT = "ff4c236c1950630d812b56bfdee079636872714f"
BASELINE_POLICY = "safe-harbor-2026.2"
RECALL_GOAL = 0.99
PRECISION_GOAL = 0.98
MAX_SLOWDOWN = 3.0  # CPU time of the current scrubber over the baseline's on the same notes

_PLACEHOLDER = re.compile(r"\[(?:NAME|PHONE|EMAIL|MRN|SSN|ADDRESS|ZIP|DATE|URL|IP|ID|AGE)\]")
_MARK = "\x00"  # generated notes hold no NUL

Scrub = Callable[[str, dict[str, Any], dt.date], str]


def baseline_module() -> types.ModuleType | None:
    """``cases/deid.py`` as it was at ``BASELINE_COMMIT``, or None without the git history."""
    root = Path(__file__).resolve().parent.parent
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:cases/deid.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    module = types.ModuleType("benchmarks._baseline_deid")
    sys.modules[module.__name__] = module  # dataclasses look their module up while being made
    exec(compile(source, f"{BASELINE_COMMIT[:7]}:cases/deid.py", "exec"), module.__dict__)
    return module


def kept_characters(original: str, scrubbed: str) -> list[bool]:
    """For each character of ``original``, whether ``scrubbed`` still holds it (in place)."""
    marked = _PLACEHOLDER.sub(_MARK, scrubbed)
    kept = [False] * len(original)
    matcher = difflib.SequenceMatcher(None, original, marked, autojunk=False)
    for start, _other, size in matcher.get_matching_blocks():
        for position in range(start, start + size):
            kept[position] = True
    return kept


class Tally:
    """Identifier tokens caught and clinical tokens kept, by category."""

    def __init__(self) -> None:
        self.caught: dict[str, int] = defaultdict(int)
        self.planted: dict[str, int] = defaultdict(int)
        self.kept = 0
        self.clinical = 0

    def add(self, note: scrubgen.Note, scrubbed: str) -> None:
        kept = kept_characters(note.text, scrubbed)
        offset = 0
        for text, category in note.pieces:
            for start, end in scrubgen.tokens(text, offset):
                letters = [kept[i] for i in range(start, end) if note.text[i].isalnum()]
                if category is None:
                    self.clinical += 1
                    self.kept += all(letters)
                else:
                    self.planted[category] += 1
                    self.caught[category] += not any(letters)
            offset += len(text)

    @property
    def recall(self) -> float:
        return sum(self.caught.values()) / max(1, sum(self.planted.values()))

    @property
    def precision(self) -> float:
        return self.kept / max(1, self.clinical)

    def recall_of(self, category: str) -> float:
        return self.caught[category] / max(1, self.planted[category])


def measure(scrub: Scrub, notes: list[scrubgen.Note]) -> tuple[Tally, float]:
    """The tally of ``scrub`` on ``notes`` and its CPU seconds (scrubbing only)."""
    outputs: list[str] = []
    gc.collect()
    with timer() as timing:
        for note in notes:
            outputs.append(scrub(note.text, note.patient, note.encounter))
    tally = Tally()
    for note, scrubbed in zip(notes, outputs, strict=True):
        tally.add(note, scrubbed)
    return tally, timing.cpu


def _scrubber(module: Any) -> Scrub:
    return lambda text, patient, encounter: module.scrub_text(text, patient, encounter_date=encounter)


def run() -> list[Result]:
    notes = list(scrubgen.notes(scaled(NOTES)))
    after, after_cpu = measure(_scrubber(scrubbing), notes)
    baseline = baseline_module()
    before, before_cpu = measure(_scrubber(baseline), notes) if baseline is not None else (None, None)
    tokens = sum(after.planted.values())
    weakest = sorted(scrubgen.CATEGORIES, key=after.recall_of)[:3]
    recall_note = f"recall {after.recall:.4f} after"
    if before is not None:
        recall_note += f", {before.recall:.4f} before ({BASELINE_POLICY}, commit {BASELINE_COMMIT[:7]})"
    else:
        recall_note += f"; no baseline ({BASELINE_POLICY} needs the git history)"
    recall_note += (
        f"; goal >= {RECALL_GOAL}; {tokens:,} identifier tokens in {len(notes):,} notes; lowest: "
        + ", ".join(f"{category} {after.recall_of(category):.3f}" for category in weakest)
    )
    results = [
        Result(
            "scrub: identifier tokens left (1 - recall), generated notes",
            1 - after.recall,
            "",
            baseline=1 - RECALL_GOAL,
            max_ratio=1.0,
            note=recall_note,
        ),
        Result(
            "scrub: clinical tokens removed (1 - precision)",
            1 - after.precision,
            "",
            baseline=1 - PRECISION_GOAL,
            max_ratio=1.0,
            note=(
                f"precision {after.precision:.4f} after"
                + (f", {before.precision:.4f} before" if before is not None else "")
                + f"; goal >= {PRECISION_GOAL}; {after.clinical:,} clinical tokens"
            ),
        ),
    ]
    if before is not None and before_cpu is not None:
        results += [
            Result(
                f"scrub: identifier tokens left, after vs before ({BASELINE_POLICY})",
                1 - after.recall,
                "",
                baseline=1 - before.recall,
                note="recall by category, before -> after: "
                + "; ".join(
                    f"{category} {before.recall_of(category):.2f} -> {after.recall_of(category):.2f}"
                    for category in scrubgen.CATEGORIES
                ),
            ),
            Result(
                "scrub: CPU time for the same notes, after vs before",
                after_cpu,
                "s",
                baseline=before_cpu,
                max_ratio=MAX_SLOWDOWN,
                note=f"{len(notes) / after_cpu:,.0f} notes/s after, {len(notes) / before_cpu:,.0f} before",
            ),
        ]
    return results

"""One vocabulary for heartbeats and terminal transitions (issue 14.3).

A model that proves it is alive calls it ``heartbeat`` (``TrainingJob.heartbeat``,
``DatasetSnapshot.heartbeat``, the ``heartbeat_at`` columns), and a finished piece of work
``complete`` or ``fail`` (``TrainingJob.complete``, ``DatasetSnapshot.complete``), never ``beat``,
``mark_ready`` or ``mark_failed``. Every name defined, called or read in the project's code is checked,
so that a second word for one idea does not come back.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The words of the other vocabulary, as a whole name or as one part of a snake_case name.
# Test names are sentences ("a real model beats one trained on shuffled labels") and are left out.
RETIRED = re.compile(r"(?:^|_)(?:beat|beating)(?:_|$)|(?:^|_)mark_(?:ready|failed|complete|completed)(?:_|$)")


def project_files() -> list[Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [*config["tool"]["importlinter"]["root_packages"], "tests", "benchmarks"]
    return sorted(
        path for package in packages for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts
    )


def names_in(source: str) -> set[str]:
    """Every name a module defines, calls, reads or assigns (functions, methods, attributes, variables)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.keyword | ast.arg) and node.arg:
            names.add(node.arg)
    return names


def retired_names(source: str) -> list[str]:
    return sorted(name for name in names_in(source) if RETIRED.search(name.lower()) and not name.startswith("test_"))


def test_no_code_uses_a_retired_word_for_heartbeats_or_terminal_transitions():
    found = {
        str(path.relative_to(ROOT)): names
        for path in project_files()
        if path.name != Path(__file__).name
        for names in [retired_names(path.read_text())]
        if names
    }
    assert found == {}


def test_the_check_finds_each_retired_word_and_leaves_the_current_ones():
    source = """
def beat(self): ...
snapshot.mark_ready(); snapshot.mark_failed(reason="x")
def _beating(snapshot, report): ...
job.heartbeat(lease=lease); snapshot.complete(); job.fail(reason="x"); heartbeat_at = None
def test_a_model_beats_chance(): ...
"""
    assert retired_names(source) == ["_beating", "beat", "mark_failed", "mark_ready"]


def test_the_check_reads_the_apps_and_the_tests():
    files = {str(path.relative_to(ROOT)) for path in project_files()}
    assert "training/models/dataset.py" in files
    assert "training/datasets.py" in files
    assert "tests/training/test_jobs.py" in files

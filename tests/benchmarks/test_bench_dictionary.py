"""The dictionary benchmark keeps working: a tiny run through the benchmark runner, its own process.

Timings are not judged here (a tiny run on a shared machine says nothing about them); what is checked
is that the run gets to its table, i.e. that its set-up still serves and imports with the dictionary
and that its assertions found the switched-off paths really switched off.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "predict, one record: dictionary check vs none (median)",
    "batch predict, 1,000 records: dictionary check vs none (median)",
    "import_cases, 200 new cases: dictionary check vs none",
)


def test_the_dictionary_benchmark_runs_to_its_table_at_a_tiny_scale():
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "dictionary", "--scale", "0.01"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # 1 is a missed goal (noise at this size), but only with the table printed; a crash is 1 too.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    for row in ROWS:
        assert row in completed.stdout, f"{row!r} missing from:\n{completed.stdout}\n{completed.stderr[-3000:]}"

"""The learning-loop simulation keeps working: its quick run (``--scale 0.3``) through the benchmark
runner, in its own process.

Figures of a quick run are noisy and not judged here, except the two that must hold at any size: no
bad candidate passes the envelope, and no answer in the prediction log is by a version that did not
pass it. The run must get to its table with the drift detected and a cycle run (into which the bad
candidates are injected).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.simulation
def test_the_learning_loop_simulation_runs_to_its_table_at_a_quick_scale():
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "learning_loop", "--scale", "0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    # 1 is a missed goal (the loop's accuracy ratio is noise at this size), but only with the table printed.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    out = completed.stdout

    def row(start: str) -> str:
        found = [line for line in out.splitlines() if line.startswith(start)]
        assert found, f"{start!r} missing from:\n{out}\n{completed.stderr[-3000:]}"
        return found[0]

    assert re.search(r"\d+ cases", row("learning loop: drift detected")), out
    # At this size the locked set is small, so whether a candidate is promoted is noise; either way a
    # cycle ran and the bad candidates were injected into it.
    assert re.search(r"cycle 1 at encounter \d+ \(drift\)", out), out
    assert row("learning loop: bad candidates inside the envelope").split()[-1] == "pass", out
    assert row("learning loop: answers by a version outside the envelope").split()[-1] == "pass", out
    for kind in ("shuffled labels", "subgroup made worse", "miscalibrated"):
        assert f"{kind}: 0/" in out, out

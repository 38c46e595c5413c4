"""The benchmarks' memory probe measures the process it runs in, not the one that started it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A parent that holds ~400 MiB, then starts a small child that reports its own peak.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    child = "from benchmarks.harness import peak_rss_kib; print(peak_rss_kib())"
    print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited high-water mark is Linux's")
def test_a_small_child_of_a_large_parent_reports_a_small_peak():
    completed = subprocess.run(
        [sys.executable, "-c", PARENT], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    child_peak_mib = int(completed.stdout.strip()) / 1024
    assert child_peak_mib < 100, f"the child reported {child_peak_mib:.0f} MiB: the parent's peak, not its own"


GROWER = textwrap.dedent(
    """
    from benchmarks.harness import peak_rss_kib
    before = peak_rss_kib()
    ballast = bytearray(200 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    print(before, peak_rss_kib())
    """
)


def test_the_probe_sees_its_own_process_grow():
    completed = subprocess.run(
        [sys.executable, "-c", GROWER], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    before, after = (int(value) / 1024 for value in completed.stdout.split())
    assert after - before >= 190, f"peak {before:.0f} MiB, then {after:.0f} MiB after touching 200 MiB"

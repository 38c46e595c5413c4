"""Evaluate an artifact nobody here built in a separate, resource-limited process.

The structural validation (``training.artifact_validation``) is the first defence against a file
that would crash scikit-learn's native code; this is the second. The web process checks the bytes
without building any object from them (sha256, zip limits, trusted types: ``check_artifact_bytes``),
then starts ``python -m training.artifact_sandbox DIR`` with the artifact and the dataset file in
a private temporary directory. The child limits itself before importing numpy (address space,
CPU seconds, file size, no core dump), loads the artifact with every check, evaluates it on the
test split, and writes a JSON answer. Whatever the child does (a segmentation fault, an endless
tree walk, running out of memory), the web process only sees an exit status: a crash, a limit or
a missing answer is ``artifact_invalid``.

Limits (settings, docs/artifacts.md): ``ARTIFACT_SANDBOX_MEMORY_BYTES`` (address space),
``ARTIFACT_SANDBOX_CPU_SECONDS`` and ``ARTIFACT_SANDBOX_TIMEOUT_SECONDS`` (wall clock). When the
latency is measured (``latency_calls``), a median single-row prediction above
``ARTIFACT_MAX_PREDICT_MS`` is ``artifact_too_slow``: a model that passes every check but would
hold a serving worker for seconds per request is refused like any other unusable artifact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child's answer is read up to this size; a larger one is a refusal.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
# The structural validation also runs in the child (belt and braces). Only tests turn it off, to
# show that the sandbox alone keeps a crash out of the web process.
VALIDATE_IN_CHILD = True


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    memory_bytes: int
    cpu_seconds: int
    timeout_seconds: int
    max_predict_ms: float = float("inf")

    @classmethod
    def from_settings(cls) -> SandboxLimits:
        from django.conf import settings

        return cls(
            memory_bytes=settings.ARTIFACT_SANDBOX_MEMORY_BYTES,
            cpu_seconds=settings.ARTIFACT_SANDBOX_CPU_SECONDS,
            timeout_seconds=settings.ARTIFACT_SANDBOX_TIMEOUT_SECONDS,
            max_predict_ms=settings.ARTIFACT_MAX_PREDICT_MS,
        )


@dataclass(frozen=True, slots=True)
class SandboxResult:
    evaluation: dict[str, Any]
    validation: dict[str, Any]


def evaluate_in_sandbox(
    data: bytes,
    sha256: str,
    dataset: bytes,
    *,
    latency_calls: int = 0,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """The artifact's evaluation on the dataset file's test split, computed in a limited child.

    ``dataset`` is the snapshot's file, its sha256 already checked by the caller. Raises
    ``training.artifacts.ArtifactError`` (or a subclass) with the refusal's code: the child's own
    refusal (``artifact_invalid``, ``artifact_untrusted``, ``artifact_too_large``,
    ``artifact_unusable``), or ``artifact_invalid`` when the child crashed, ran out of a limit or
    gave no answer; ``artifact_too_slow`` when the measured median single-row latency is above
    ``limits.max_predict_ms``.
    """
    from training.artifacts import (
        ArtifactError,
        ArtifactTooLarge,
        ArtifactTooSlow,
        ArtifactUntrusted,
        ArtifactUnusable,
        ZipLimits,
    )

    limits = limits or SandboxLimits.from_settings()
    zip_limits = ZipLimits.from_settings()
    with tempfile.TemporaryDirectory(prefix="artifact-sandbox-") as directory:
        work = Path(directory)
        (work / "artifact.skops").write_bytes(data)
        (work / "dataset.parquet").write_bytes(dataset)
        request = {
            "sha256": sha256,
            "latency_calls": latency_calls,
            "validate": VALIDATE_IN_CHILD,
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "answer_bytes": MAX_ANSWER_BYTES,
            "zip_limits": {
                "max_members": zip_limits.max_members,
                "max_uncompressed_bytes": zip_limits.max_uncompressed_bytes,
                "max_schema_bytes": zip_limits.max_schema_bytes,
                "max_ratio": zip_limits.max_ratio,
            },
        }
        (work / "request.json").write_text(json.dumps(request))
        try:
            completed = subprocess.run(  # noqa: S603  # our own interpreter and module, no shell
                [sys.executable, "-m", "training.artifact_sandbox", str(work)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_child_environment(work),
                cwd=work,
                timeout=limits.timeout_seconds,
                check=False,
                close_fds=True,
            )
        except subprocess.TimeoutExpired:
            raise ArtifactError(
                f"Evaluating the artifact took longer than {limits.timeout_seconds} s; it was stopped."
            ) from None
        answer = _read_answer(work / "answer.json")
    if completed.returncode != 0 or answer is None:
        raise ArtifactError(_death(completed.returncode, limits))
    if not answer.get("ok"):
        code, message = str(answer.get("code")), str(answer.get("message"))[:2000]
        errors: dict[str, type[ArtifactError]] = {
            ArtifactUntrusted.code: ArtifactUntrusted,
            ArtifactTooLarge.code: ArtifactTooLarge,
            ArtifactUnusable.code: ArtifactUnusable,
        }
        raw_extra = answer.get("extra")
        extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
        raise errors.get(code, ArtifactError)(message, **extra)
    evaluation, validation = answer.get("evaluation"), answer.get("validation")
    if not isinstance(evaluation, dict) or not isinstance(validation, dict):
        raise ArtifactError("The evaluation process gave a malformed answer.")
    latency = evaluation.get("latency_ms")
    median = latency.get("median") if isinstance(latency, dict) else None
    if latency_calls and isinstance(median, int | float) and not median <= limits.max_predict_ms:
        raise ArtifactTooSlow(
            f"The artifact takes {median:.1f} ms (median of {latency_calls} calls) to predict one row; "
            f"the limit is {limits.max_predict_ms:g} ms (ARTIFACT_MAX_PREDICT_MS).",
            median_ms=round(float(median), 1),
            limit_ms=limits.max_predict_ms,
        )
    return SandboxResult(evaluation=evaluation, validation=validation)


def _child_environment(work: Path) -> dict[str, str]:
    """A bare environment: none of the parent's variables (its keys, DATABASE_URL) reach the child,
    and native thread pools keep to one thread (each pool thread reserves address space, which
    the memory limit counts). The interpreter finds its packages from its own path."""
    env = {
        "PATH": os.defpath,
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),  # the project, for training.*
    }
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def _read_answer(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_ANSWER_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_ANSWER_BYTES:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _death(returncode: int, limits: SandboxLimits) -> str:
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGXCPU or number == signal.SIGKILL:
            return (
                f"The artifact's evaluation was killed ({name}): it exceeded its limit of "
                f"{limits.cpu_seconds} CPU seconds or its memory."
            )
        return f"The artifact crashed the evaluation process ({name}); it was refused."
    if returncode == MEMORY_EXIT:
        return f"The artifact's evaluation ran out of its memory limit ({limits.memory_bytes} bytes)."
    return f"The artifact's evaluation process failed (exit status {returncode}) without an answer."


MEMORY_EXIT = 3


# --- The child ---------------------------------------------------------------------------------


def _limit_self(request: dict[str, Any]) -> None:
    import resource

    memory = int(request["memory_bytes"])
    cpu = int(request["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))  # SIGXCPU at the soft limit, SIGKILL later
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    answer = int(request["answer_bytes"]) + 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (answer, answer))


def _answer(work: Path, answer: dict[str, Any]) -> None:
    (work / "answer.json").write_text(json.dumps(answer, allow_nan=True))


def child(work: Path) -> int:
    """Runs in the sandbox process: limits, load with every check, evaluate, answer."""
    request = json.loads((work / "request.json").read_text())
    _limit_self(request)
    try:
        return _evaluate(work, request)
    except MemoryError:
        return MEMORY_EXIT


def _evaluate(work: Path, request: dict[str, Any]) -> int:
    from django.conf import settings

    if not settings.configured:  # no database, no apps: the modules below only need settings to import
        settings.configure()

    from training import artifacts
    from training.dataset_format import rows_by_split_of
    from training.evaluation import evaluate, plain

    data = (work / "artifact.skops").read_bytes()
    limits = artifacts.ZipLimits(**request["zip_limits"])
    try:
        if request.get("validate", True):
            artifact = artifacts.loads_artifact(data, request["sha256"], limits)
        else:
            artifact = artifacts.loads_unvalidated(data, request["sha256"], limits)
    except artifacts.ArtifactError as exc:
        _answer(work, {"ok": False, "code": exc.code, "message": exc.message, "extra": plain(exc.extra)})
        return 0
    dataset = (work / "dataset.parquet").read_bytes()
    if not dataset:  # validation only (manage.py validate_artifacts for a version without a dataset)
        _answer(work, {"ok": True, "evaluation": {}, "validation": artifact.validation})
        return 0
    rows: Sequence[Any] = rows_by_split_of(dataset).get("test") or []
    try:
        evaluation = evaluate(
            artifact.pipeline,
            rows,
            numeric_features=artifact.numeric_features,
            latency_calls=int(request["latency_calls"]),
        )
    except MemoryError:
        raise
    except Exception as exc:
        # Whatever makes a well-formed pipeline fail on the test rows is the artifact's fault.
        message = f"The artifact cannot predict the test split: {type(exc).__name__}: {exc}"
        _answer(work, {"ok": False, "code": "artifact_unusable", "message": message[:2000]})
        return 0
    _answer(work, {"ok": True, "evaluation": plain(evaluation), "validation": artifact.validation})
    return 0


if __name__ == "__main__":
    sys.exit(child(Path(sys.argv[1])))

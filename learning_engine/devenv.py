"""Write a developer checkout's ``.env``: DEBUG on and keys generated for this checkout only.

``make env`` (and so ``make run``) runs ``python -m learning_engine.devenv``; settings read the file
(see ``ENV_FILE`` in settings.py). Nothing here imports Django: settings refuse to load until the
keys exist. Values already in the file are kept (a developer's own DATABASE_URL, and above all the
PSEUDONYM_KEY: a new one would give every patient a new pseudonym in the existing database).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from dotenv import dotenv_values

BASE_DIR = Path(__file__).resolve().parent.parent

HEADER = (
    "# Written by `make env` for this checkout only (git-ignored). Never copy these keys to a real site;\n"
    "# with DEBUG off, set the variables in the environment instead (docs/deployment.md).\n"
)


def _defaults() -> dict[str, str]:
    return {
        "DEBUG": "1",
        # token_urlsafe(48) is 64 characters of [A-Za-z0-9_-]: nothing a shell or dotenv would expand.
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PSEUDONYM_KEY": secrets.token_urlsafe(48),
    }


def ensure_env_file(path: Path) -> list[str]:
    """Add to ``path`` each of DEBUG, SECRET_KEY and PSEUDONYM_KEY it lacks; the names added.

    A new file is created readable by its owner only (it holds secrets).
    """
    existing = dotenv_values(path) if path.exists() else {}
    missing = {name: value for name, value in _defaults().items() if not existing.get(name)}
    if not missing:
        return []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        size = path.stat().st_size
        if size == 0:
            handle.write(HEADER)
        elif not path.read_bytes().endswith(b"\n"):
            handle.write("\n")  # a hand-edited last line without one would swallow ours
        for name, value in missing.items():
            handle.write(f"{name}={value}\n")
    return list(missing)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else BASE_DIR / ".env"
    added = ensure_env_file(path)
    if added:
        print(f"{path}: wrote {', '.join(added)} (generated for this checkout).")
    else:
        print(f"{path}: DEBUG and keys already set, left as they are.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

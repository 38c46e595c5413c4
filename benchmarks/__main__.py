"""``python -m benchmarks [NAME ...] [--scale S]``: run the benchmarks and print one table.

NAME is a module suffix (``import`` for ``bench_import``); none means all. ``--scale 0.1`` (or
``BENCH_SCALE=0.1``) shrinks every benchmark for a quick run. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from benchmarks import harness

PREFIX = "bench_"


def available() -> list[str]:
    package = sys.modules["benchmarks"]
    return sorted(
        m.name.removeprefix(PREFIX) for m in pkgutil.iter_modules(package.__path__) if m.name.startswith(PREFIX)
    )


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(names)})"
    )
    parser.add_argument("--scale", type=float, help=f"size factor, e.g. 0.1 for a quick run (env {harness.SCALE_ENV})")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.scale is not None:
        os.environ[harness.SCALE_ENV] = str(args.scale)
    harness.scale()  # validate before spending minutes on set-up

    results: list[harness.Result] = []
    with harness.django_environment():
        modules = [importlib.import_module(f"benchmarks.{PREFIX}{name}") for name in args.names or names]
        # A module may set ORDER (default 50) to run before others that reuse its measurements.
        for module in sorted(modules, key=lambda m: getattr(m, "ORDER", 50)):
            print(f"running {module.__name__} (scale {harness.scale():g}) ...", file=sys.stderr, flush=True)
            results.extend(module.run())
    print()
    harness.print_table(results)
    return 1 if any(r.passed is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

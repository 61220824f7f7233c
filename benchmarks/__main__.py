"""``python -m benchmarks SUITE [options]``: run one maintained suite; ``--smoke`` runs its smallest configuration.

Suites: retrieval, backends, serve, training, qa, planner, peers, collections (``python -m benchmarks SUITE --help``
lists a suite's options). One-off studies live in ``benchmarks/ablations`` and are run as their own modules.
"""

from __future__ import annotations

import importlib
import os
import sys

SUITES = ("retrieval", "backends", "serve", "training", "qa", "planner", "peers", "collections")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SUITES:
        sys.exit(f"{__doc__}\nusage: python -m benchmarks {{{','.join(SUITES)}}} [--smoke] [options]")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    suite = importlib.import_module(f"benchmarks.{argv[0]}")
    rest = argv[1:]
    if "--smoke" in rest:
        rest = [*suite.SMOKE, *(a for a in rest if a != "--smoke")]
    sys.argv = [f"benchmarks {argv[0]}", *rest]
    suite.main()


if __name__ == "__main__":
    main(sys.argv[1:])

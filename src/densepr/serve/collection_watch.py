"""A served collection kept live: a thread watches its ``CURRENT`` and, when a sync publishes a version, loads it beside
the one serving (the question encoder is kept) and swaps it in with one assignment. Requests in flight finish on the
version they started with; none fails or waits for the load."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from densepr.errors import DenseprError
from densepr.retrieve.collection import current_version
from densepr.retrieve.searcher import open_collection
from densepr.retrieve.spec import SearchSpec
from densepr.serve.service import SearchService

log = logging.getLogger("densepr")


class CollectionWatcher:
    """Polls ``spec.collection`` every ``interval`` seconds and swaps ``service.searcher`` to each new version.

    >>> watcher = CollectionWatcher(service, spec); watcher.start()     # doctest: +SKIP
    """

    def __init__(self, service: SearchService, spec: SearchSpec, interval: float = 0.25):
        self.service, self.spec, self.interval = service, spec, interval
        self.folder = Path(str(spec.collection))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="densepr-collection-watch", daemon=True)
        self.failed: str | None = None  # the last load's error, while the previous version keeps serving

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """Load and swap in the published version if it is not the one serving; whether it swapped."""
        serving = self.service.searcher
        published = current_version(self.folder)
        if published is None or published == serving.version:
            return False
        dense = serving.dense
        try:
            fresh = open_collection(serving.spec, model=dense.model if dense is not None else None)
        except (DenseprError, OSError) as exc:  # e.g. the version was replaced again while loading: next poll
            self.failed = str(exc)
            log.warning("collection %s: version %s not loaded (%s); still serving version %s", self.folder, published,
                        exc, serving.version)
            return False
        self.service.searcher, self.failed = fresh, None
        log.info("collection %s: now serving version %s (%d passages)", self.folder, fresh.version, len(fresh.store))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

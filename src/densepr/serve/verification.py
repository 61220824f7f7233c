"""Index folders too large to checksum on load (:data:`densepr.fileio.AUTO_VERIFY_BYTES`) are checksummed in a background thread
once the server is up; ``/health`` reports the state, and a folder that fails stops the server answering (503)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from densepr import fileio
from densepr.errors import DenseprError

log = logging.getLogger("densepr")


class BackgroundVerify:
    """``state``: ``ok`` (nothing left to check, or all checked), ``verifying``, or ``failed: <reason>``.

    >>> BackgroundVerify.of(["flat/", "bm25/"]).start()     # doctest: +SKIP
    """

    def __init__(self, folders: Sequence[Path], state: str = "ok"):
        self.folders = list(folders)
        self.state = "verifying" if self.folders else state
        self._thread = threading.Thread(target=self._run, name="densepr-verify", daemon=True)

    @classmethod
    def of(cls, folders: Sequence[str | None]) -> BackgroundVerify:
        """For the folders too large to have been checksummed as they loaded."""
        return cls([Path(f) for f in folders if f and fileio.manifest_bytes(f) > fileio.AUTO_VERIFY_BYTES])

    @property
    def failed(self) -> bool:
        return self.state.startswith("failed")

    def start(self) -> None:
        if self.folders:
            self._thread.start()

    def _run(self) -> None:
        for folder in self.folders:
            try:
                fileio.check_manifest(folder, checksums=True)
            except (DenseprError, OSError) as exc:
                self.state = f"failed: {exc}"
                log.error("%s: %s; the server refuses to answer from it", folder, exc)
                return
        self.state = "ok"
        log.info("checksums verified: %s", ", ".join(map(str, self.folders)))

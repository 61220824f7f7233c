"""Index folders too large to checksum on load (:data:`densepr.fileio.AUTO_VERIFY_BYTES`) are checksummed in a background thread
once the server is up; ``/health`` reports the state, and a folder that fails stops the server answering (503)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from densepr import fileio

log = logging.getLogger("densepr")


class BackgroundVerify:
    """``state``: ``ok`` (nothing left to check, or all checked), ``verifying``, or ``failed: <reason>``; ``idle``:
    the state when there is nothing to check.

    >>> BackgroundVerify.of(["flat/", "bm25/"]).start()     # doctest: +SKIP
    """

    def __init__(self, folders: Sequence[Path], idle: str = "ok"):
        self.folders, self.idle = list(folders), idle
        self.checks: fileio.BackgroundChecksums | None = None

    @classmethod
    def of(cls, folders: Sequence[str | None]) -> BackgroundVerify:
        """For the folders too large to have been checksummed as they loaded."""
        return cls([Path(f) for f in folders if f and fileio.manifest_bytes(f) > fileio.AUTO_VERIFY_BYTES])

    @property
    def state(self) -> str:
        if not self.folders:
            return self.idle
        if self.checks is None or self.checks.running:
            return "verifying"
        return f"failed: {self.checks.error}" if self.checks.error is not None else "ok"

    @property
    def failed(self) -> bool:
        return self.state.startswith("failed")

    def start(self) -> None:
        if self.folders:
            self.checks = fileio.BackgroundChecksums(self.folders, checksums=True, then=self._report)

    def _report(self, error: BaseException | None) -> None:
        if error is not None:
            log.error("%s; the server refuses to answer from it", error)
        else:
            log.info("checksums verified: %s", ", ".join(map(str, self.folders)))

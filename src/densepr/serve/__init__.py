"""HTTP service over densepr indexes (needs the ``serve`` extra: fastapi, uvicorn).

>>> from densepr.serve import create_app                 # doctest: +SKIP
>>> app = create_app("flat/", "bm25/")                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from densepr.serve.fusion import rrf

__all__ = ["create_app", "rrf"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # imported on use: fastapi is an optional dependency
        from densepr.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

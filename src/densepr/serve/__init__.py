"""HTTP service over densepr indexes (needs the ``serve`` extra: fastapi, uvicorn).

>>> from densepr.serve import create_app                       # doctest: +SKIP
>>> app = create_app(index="flat/", bm25_index="bm25/")         # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.serve.app import create_app

_EXPORTS = {"create_app": "densepr.serve.app"}  # imported on use: fastapi is an optional dependency
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

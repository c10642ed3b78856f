"""``vestis serve``: embeddings (OpenAI-compatible), search, classify and catalog writes over HTTP,
with a web page. See ``docs/serve.md``.

``create_app`` and ``ServeConfig`` are imported lazily so that ``vestis --help`` does not load FastAPI.
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from vestis.serve import app

        return getattr(app, name)
    raise AttributeError(name)

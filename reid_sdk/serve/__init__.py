"""Serve: reid-serve, the HTTP person-search service over a gallery, its page, API keys, audit trail and retention.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, Pillow). The service logic
(:class:`~reid_sdk.serve.service.SearchService`) knows no HTTP; :func:`~reid_sdk.serve.app.create_app` puts it behind
FastAPI.
"""

from reid_sdk.serve.settings import ServeSettings

__all__ = ["ServeSettings"]

"""The error a Ray ingest stops with when a worker fails (kept apart from Ray, so catching it imports no Ray)."""

from __future__ import annotations


class RayJobFailed(RuntimeError):
    """A Ray worker raised (the extractor failed, or ran out of memory) and the job stopped. The entries added
    before are kept (a FAISS gallery is saved first): the same run with ``resume`` adds the rest."""

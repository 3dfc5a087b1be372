"""The embedded gallery backend: vectors in FAISS, labels in SQLite, generations of checksummed files on disk.

The only part of the gallery that imports FAISS: a Milvus-only install never loads it.
"""

from reid_sdk._utils.optional import require

require("faiss", "cpu", "gpu")  # before the modules that import it: a missing FAISS says what to install

from reid_sdk.gallery.faiss_sqlite.backend import FaissSqliteBackend  # noqa: E402

__all__ = ["FaissSqliteBackend"]

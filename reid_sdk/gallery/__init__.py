"""Gallery: FAISS vector index + SQLite metadata, filtered search, atomic persistence."""

from reid_sdk.optional import require

require("faiss", "cpu", "gpu")  # before the modules that import it: a missing FAISS says what to install

from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.gallery import Gallery
from reid_sdk.gallery.match import Match

__all__ = ["Gallery", "GalleryConfig", "Match"]

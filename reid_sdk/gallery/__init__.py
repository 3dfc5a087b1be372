"""Gallery: FAISS vector index + SQLite metadata, filtered search, atomic persistence."""

from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.gallery import Gallery
from reid_sdk.gallery.match import Match

__all__ = ["Gallery", "GalleryConfig", "Match"]

"""Gallery: re-ID features with their labels, filtered search; FAISS + SQLite embedded, or Milvus.

Importing it loads neither FAISS nor pymilvus: each backend is imported when a gallery of its kind is made or
opened, so an install with only one of them works.
"""

from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.errors import CorruptGalleryError, GalleryChangedError, ModelMismatchError
from reid_sdk.gallery.gallery import Gallery
from reid_sdk.gallery.match import Match

__all__ = ["CorruptGalleryError", "Gallery", "GalleryChangedError", "GalleryConfig", "Match", "ModelMismatchError"]

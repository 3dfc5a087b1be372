"""Gallery: re-ID features with their labels, filtered search; FAISS + SQLite embedded, or Milvus."""

from reid_sdk.optional import require

require("faiss", "cpu", "gpu")  # before the modules that import it: a missing FAISS says what to install

from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.faiss_sqlite import GalleryChangedError
from reid_sdk.gallery.gallery import Gallery, ModelMismatchError
from reid_sdk.gallery.integrity import CorruptGalleryError
from reid_sdk.gallery.match import Match

__all__ = ["CorruptGalleryError", "Gallery", "GalleryChangedError", "GalleryConfig", "Match", "ModelMismatchError"]

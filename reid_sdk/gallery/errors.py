"""The errors a gallery raises on any backend, importable without FAISS or pymilvus."""


class ModelMismatchError(ValueError):
    """A gallery is used with features of another model than the one that built it."""


class CorruptGalleryError(ValueError):
    """A gallery file is damaged, missing or does not match its manifest."""


class GalleryChangedError(RuntimeError):
    """Another process changed the gallery on disk in a way this save cannot merge: reopen it."""

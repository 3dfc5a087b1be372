"""Where a gallery lives, from one string: a directory (FAISS + SQLite) or a Milvus URI.

- ``gallery/`` or any path: the embedded FAISS + SQLite backend, saved in that directory.
- ``milvus-lite:PATH.db``: embedded Milvus Lite, data in the local file PATH.db.
- ``http://host:19530`` / ``https://...``: a Milvus standalone server or cluster; ``user:password@``
  in the URL becomes the token.

Milvus URIs take ``?collection=NAME`` (default ``reid_gallery``), so one Milvus holds several galleries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DEFAULT_COLLECTION = "reid_gallery"
MILVUS_LITE_SCHEME = "milvus-lite:"
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class GalleryLocation:
    """A parsed gallery location: ``backend`` is "faiss" or "milvus"."""

    text: str                      # for messages: the location as given, without credentials
    backend: str
    path: Path | None = None      # the FAISS directory, or the Milvus Lite file
    server_uri: str | None = None  # a Milvus server's URI without credentials
    token: str = ""
    collection: str = DEFAULT_COLLECTION

    @property
    def client_uri(self) -> str:
        """What pymilvus connects to: the Milvus Lite file or the server URI."""
        return str(self.path) if self.path is not None else str(self.server_uri)


def _collection(query: str, text: str) -> str:
    values = parse_qs(query, keep_blank_values=True)
    unknown = set(values) - {"collection"}
    if unknown:
        raise ValueError(f"gallery URI {text!r} has unknown parameters {sorted(unknown)}; only 'collection' is known")
    name = values.get("collection", [DEFAULT_COLLECTION])[-1]
    if not _COLLECTION_NAME.match(name):
        raise ValueError(f"collection name {name!r} in {text!r} must be letters, digits and _, "
                         "not starting with a digit")
    return name


def parse_location(value: str | Path) -> GalleryLocation:
    """The location named by a path or URI; ValueError for an unknown scheme or a malformed URI."""
    if isinstance(value, Path):
        return GalleryLocation(str(value), "faiss", path=value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a gallery location is a path or a URI string, got {value!r}")
    if value.startswith(MILVUS_LITE_SCHEME):
        file_part, _, query = value[len(MILVUS_LITE_SCHEME):].partition("?")
        if not file_part.endswith(".db"):
            raise ValueError(f"Milvus Lite keeps a gallery in a file whose name ends in .db, got {value!r}")
        return GalleryLocation(value, "milvus", path=Path(file_part).expanduser().resolve(),
                               collection=_collection(query, value))
    if _URI_SCHEME.match(value):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unknown gallery URI {value!r}: use a directory, milvus-lite:PATH.db or "
                             "http://host:19530")
        token = f"{parts.username or ''}:{parts.password or ''}" if parts.username else ""
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        server_uri = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        shown = server_uri + (f"?{parts.query}" if parts.query else "")  # never the credentials
        return GalleryLocation(shown, "milvus", server_uri=server_uri, token=token,
                               collection=_collection(parts.query, shown))
    return GalleryLocation(value, "faiss", path=Path(value))

"""What a gallery entry holds besides its vector, validated once for every backend.

Labels (identity, camera, track id) are a str, an int (int64) or None and keep their type: camera 2 and
camera "2" are different labels. Timestamps are finite seconds or None; metadata is a JSON object.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np

_INT64 = (-(2**63), 2**63 - 1)


class EntryRow(NamedTuple):
    """One entry's labels, as every backend stores and returns them."""

    identity: Any
    camera: Any
    timestamp: float | None
    track_id: Any
    metadata: dict[str, Any]


def label(value: Any, name: str) -> Any:
    """An identity / camera / track id as stored: str, int (within int64) or None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{name} {value} does not fit in a signed 64-bit integer")
        return value
    raise ValueError(f"{name} must be a str, an int or None, got {type(value).__name__}")


def label_set(value: Any, name: str) -> tuple[Any, ...] | None:
    """A filter's labels: one label or a collection of them (None: no filter)."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, set, frozenset, np.ndarray)) else [value]
    return tuple(label(v, name) for v in values)


def timestamp(value: Any) -> float | None:
    """Seconds as a finite float, or None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"timestamp must be a number (seconds) or None, got {value!r}") from error
    if not np.isfinite(value):
        raise ValueError(f"timestamp must be finite, got {value}")
    return value


def metadata(value: Any) -> dict[str, Any]:
    """A JSON object, normalised through JSON so every backend returns the same dict (tuples become lists)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"metadata must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be JSON-serialisable (no NaN): {error}") from error


def column(value: Any, n: int, name: str) -> list[Any]:
    """One value per entry: a scalar is repeated, a list / array must have length ``n``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} values for {n} features")
        return list(value)
    return [value] * n


def entry_rows(n: int, identities: Any = None, cameras: Any = None, timestamps: Any = None, track_ids: Any = None,
               metadata_values: Any = None) -> list[EntryRow]:
    """``n`` validated rows; each column is a scalar for all entries or one value per entry."""
    columns = (
        [label(v, "identity") for v in column(identities, n, "identities")],
        [label(v, "camera") for v in column(cameras, n, "cameras")],
        [timestamp(v) for v in column(timestamps, n, "timestamps")],
        [label(v, "track id") for v in column(track_ids, n, "track_ids")],
        [metadata(v) for v in column(metadata_values, n, "metadata")],
    )
    return [EntryRow(*values) for values in zip(*columns)]

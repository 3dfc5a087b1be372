"""MARS video re-id: ``bbox_train/``, ``bbox_test/`` frame folders indexed by the ``info/`` files.

``info/tracks_{train,test}_info.mat`` hold one row per tracklet, ``[start, end, pid, camera]``, where start/end
are 1-based inclusive line numbers of ``train_name.txt`` / ``test_name.txt``; ``query_IDX.mat`` holds the 1-based
rows of the test table used as queries, every other test row is gallery. Frame ``0001C1T0001F001.jpg`` lives in
``bbox_train/0001/``. pid -1 tracklets are junk (dropped); pid 0 tracklets are distractors (kept in the gallery).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import looks_like_image, warn_skipped
from .roots import DatasetLayoutError, require_records, resolve_root
from .records import DatasetSplits, TrackletRecord
from .statistics import log_statistics

LAYOUT = (
    "MARS layout ROOT/{bbox_train,bbox_test}/0001/0001C1T0001F001.jpg with ROOT/info/{tracks_train_info.mat,"
    "tracks_test_info.mat,query_IDX.mat,train_name.txt,test_name.txt}"
)
INFO_FILES = ("tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat", "train_name.txt", "test_name.txt")
JUNK_PID = -1


def load_mars(root: str | Path) -> DatasetSplits:
    """Read a MARS folder into train / query / gallery tracklet records."""
    base = resolve_root(root, ("bbox_train", "bbox_test", "info"), LAYOUT)
    info = base / "info"
    missing = [name for name in INFO_FILES if not (info / name).is_file()]
    if missing:
        raise DatasetLayoutError(f"{info} lacks {', '.join(missing)}; expected {LAYOUT}")
    train_table = _read_mat(info / "tracks_train_info.mat", "track_train_info")
    test_table = _read_mat(info / "tracks_test_info.mat", "track_test_info")
    query_rows = _read_mat(info / "query_IDX.mat", "query_IDX").ravel().astype(np.int64) - 1
    if query_rows.size and (query_rows.min() < 0 or query_rows.max() >= len(test_table)):
        raise DatasetLayoutError(f"{info / 'query_IDX.mat'} indexes rows outside tracks_test_info ({len(test_table)})")
    train_names = _read_names(info / "train_name.txt")
    test_names = _read_names(info / "test_name.txt")

    splits = DatasetSplits(name="mars", root=base)
    skipped: list[Path] = []
    train, junk_train = _tracklets(train_table, train_names, base / "bbox_train", skipped)
    test, junk_test = _tracklets(test_table, test_names, base / "bbox_test", skipped)
    is_query = np.zeros(len(test_table), dtype=bool)
    is_query[query_rows] = True
    splits.train = [record for _, record in train]
    splits.query = [record for row, record in test if is_query[row]]
    splits.gallery = [record for row, record in test if not is_query[row]]
    splits.dropped_junk = junk_train + junk_test
    require_records(splits.train + splits.query + splits.gallery, base, LAYOUT)
    splits.skipped = skipped
    warn_skipped(skipped, f"mars at {base}")
    log_statistics(splits)
    return splits


def _read_mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError, IndexError) as error:  # what scipy raises on a cut file
        raise DatasetLayoutError(f"cannot read {path}, damaged or truncated: {error}") from error
    if key not in content:
        raise DatasetLayoutError(f"{path} has no variable {key!r}; expected {LAYOUT}")
    table = np.asarray(content[key])
    if key != "query_IDX" and (table.ndim != 2 or table.shape[1] != 4):
        raise DatasetLayoutError(f"{path}: {key} must be an N x 4 table [start, end, pid, camera], got {table.shape}")
    return table.astype(np.int64)


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _tracklets(
    table: np.ndarray, names: list[str], folder: Path, skipped: list[Path]
) -> tuple[list[tuple[int, TrackletRecord]], int]:
    """(table row, record) pairs of the non-junk tracklets and the number of junk tracklets dropped."""
    records, junk = [], 0
    for row, (start, end, pid, camera) in enumerate(table.tolist()):
        if pid == JUNK_PID:
            junk += 1
            continue
        if not 1 <= start <= end <= len(names):
            raise DatasetLayoutError(f"tracklet row {row + 1} spans lines {start}..{end} of a {len(names)}-line list")
        frames = []
        for name in names[start - 1 : end]:
            path = folder / name[:4] / name
            (frames if looks_like_image(path) else skipped).append(path)
        if frames:
            records.append((row, TrackletRecord(frames=tuple(frames), pid=pid, camera=camera, tracklet_id=row)))
    return records, junk

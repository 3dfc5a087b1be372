"""What each step of a ``reid-adapt`` run consumed from outside its run folder, so a re-run redoes what changed.

A run folder is the adaptation to one site: when the site changes under it (a camera re-tracked, a video
replaced, a camera added or gone), its results describe a site that no longer exists, so the steps that read the
change run again, and every step after them (the report never mixes the old site with the new). The inputs:

- the site's cameras: each video's path, size and modification time (hashing gigabytes of video on every call
  would cost more than a step), the SHA-256 of each tracks and identities file (small, and a re-tracked camera
  may keep its size and time), and the cameras skipped with their reasons;
- the start, for the steps after the tracklets: the user's ``train.init_checkpoint`` (path, size, modification
  time), or nothing for the start reid-adapt makes itself (the settings, which ``adapt.json`` guards, decide it);
- the settings, for step 1 (a start stopped after step 1 may go on with other settings).

Each step's inputs are recorded in ``steps.json`` when the step starts (a run killed mid-training and run again on
a changed site trains from the start, not from stages of the old site). The later steps do not record the
settings: once anything past step 1 started, a run folder with other settings is refused by the pipeline (a second
experiment never overwrites the first one's results).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.tracks.site import SiteLayout

log = logging.getLogger(__name__)

STEPS_FILE = "steps.json"
_FILES = {"video": "video", "tracks": "tracks file", "identities": "identities file"}


def file_stamp(path: Path) -> list[Any] | None:
    """``[resolved path, size, modification time in ns]``; None for a file that is missing."""
    try:
        status = path.stat()
    except OSError:
        return None
    return [str(path.resolve()), status.st_size, status.st_mtime_ns]


def content_digest(path: Path) -> str | None:
    """The SHA-256 of the file's bytes; None for a file that is missing or unreadable."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def site_inputs(layout: SiteLayout) -> dict[str, Any]:
    """What the steps read of the site at ``layout`` (see the module docstring), as plain JSON values."""
    cameras = {camera.name: {"video": file_stamp(camera.video),
                             "tracks": content_digest(camera.tracks) if camera.tracks else None,
                             "identities": content_digest(camera.identities) if camera.identities else None}
               for camera in layout.cameras}
    return {"cameras": cameras, "skipped": {name: reason for name, reason in layout.skipped}}


def describe_changes(before: dict[str, Any], now: dict[str, Any]) -> str:
    """How the inputs ``now`` differ from ``before`` (both as :class:`StepLedger` records them), as one clause."""
    site_before, site_now = before.get("site") or {}, now.get("site") or {}
    cameras_before, cameras_now = site_before.get("cameras") or {}, site_now.get("cameras") or {}
    skipped_now = site_now.get("skipped") or {}
    changes = [f"camera {name} added" for name in cameras_now if name not in cameras_before]
    for name, files in cameras_before.items():
        if name not in cameras_now:
            changes.append(f"camera {name} now skipped ({skipped_now[name]})" if name in skipped_now
                           else f"camera {name} gone")
            continue
        changes += [f"camera {name}: {label} changed" for key, label in _FILES.items()
                    if files.get(key) != cameras_now[name].get(key)]
    if before.get("start") != now.get("start"):
        changes.append("the start checkpoint changed")
    if before.get("settings") != now.get("settings"):
        changes.append("the settings changed")
    return "; ".join(changes) or "the site changed"


class StepLedger:
    """``steps.json``: each step's inputs when it last started (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, Any] = {}
        if path.is_file():
            try:
                records = json.loads(path.read_text())
                if not isinstance(records, dict):
                    raise ValueError("not a mapping of steps")
                self.records = records
            except ValueError as error:
                log.warning("%s is damaged (%s): every step runs again", path, error)

    def stale(self, steps: Sequence[str], inputs: dict[str, dict[str, Any]]) -> tuple[list[str], str | None]:
        """The steps to run again, in order: from the first whose recorded inputs differ from ``inputs[step]`` (or
        that has no record) to the last; and how its inputs changed (None when it had no record)."""
        for position, step in enumerate(steps):
            recorded = self.records.get(step)
            if recorded != _plain(inputs[step]):
                return list(steps[position:]), (describe_changes(recorded, inputs[step]) if recorded else None)
        return [], None

    def record(self, step: str, inputs: dict[str, Any]) -> None:
        """Note that ``step`` starts on ``inputs`` and save."""
        self.records[step] = _plain(inputs)
        self._save()

    def _save(self) -> None:
        with atomic_write(self.path) as handle:
            handle.write(json.dumps(self.records, indent=1).encode())


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists), so a record compares equal to what it was made from."""
    return json.loads(json.dumps(value))

"""The run directory: resolved config, the training data's fingerprint, per-stage checkpoints, metrics.jsonl,
best model and the stage plot.

Stage checkpoints are written atomically and carry the metrics rows so far, so a run
killed at any moment resumes from its last complete stage with consistent files. Only the
newest few stage checkpoints are kept; temporary files a killed run left are removed on start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.training.config import RunConfig, save_config
from reid_sdk.training.data_fingerprint import DataFingerprint

STAGE_FORMAT = "reid-sdk-stage"
_STAGE_FILE = re.compile(r"stage_(\d+)\.pt$")


class RunDirectory:
    """Paths and file formats of one ``reid-train`` run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.data_fingerprint = self.root / "data_fingerprint.json"
        self.metrics = self.root / "metrics.jsonl"
        self.stages = self.root / "stages"
        self.best = self.root / "best.pt"
        self.plot = self.root / "stages.png"
        self.skipped = self.root / "skipped_files.txt"

    def stage_path(self, stage: int) -> Path:
        return self.stages / f"stage_{stage:02d}.pt"

    def completed_stages(self) -> list[int]:
        """Indices of the stages with a checkpoint, ascending."""
        if not self.stages.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.stages.iterdir() if (m := _STAGE_FILE.search(p.name)))

    def prepare(self, config: RunConfig) -> None:
        """Create the folders, remove temporaries of an interrupted write and write the resolved config."""
        self.stages.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.stages):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        save_config(config, self.config)

    def write_data_fingerprint(self, fingerprint: DataFingerprint) -> None:
        """Record the training data the run starts on, for ``--resume`` to compare."""
        with atomic_write(self.data_fingerprint) as handle:
            handle.write(json.dumps(fingerprint.to_dict()).encode())

    def read_data_fingerprint(self) -> DataFingerprint | None:
        """The recorded fingerprint; None for a run from before fingerprints; ValueError when unreadable."""
        if not self.data_fingerprint.is_file():
            return None
        try:
            return DataFingerprint.from_dict(json.loads(self.data_fingerprint.read_text()))
        except ValueError as error:  # json.JSONDecodeError is one
            raise ValueError(f"{self.data_fingerprint}: {error}") from error

    def prune_stages(self, keep: int) -> None:
        """Delete all but the ``keep`` newest stage checkpoints (``keep`` 0: delete none)."""
        if keep:
            for stage in self.completed_stages()[:-keep]:
                self.stage_path(stage).unlink(missing_ok=True)

    def write_skipped(self, paths: list[Path]) -> None:
        """List the files left out as unreadable, one per line (the file is removed when there are none)."""
        if paths:
            with atomic_write(self.skipped) as handle:
                handle.write("".join(f"{path}\n" for path in paths).encode())
        else:
            self.skipped.unlink(missing_ok=True)

    def save_stage(self, stage: int, state: dict[str, Any]) -> Path:
        path = self.stage_path(stage)
        with atomic_write(path) as handle:
            torch.save({"format": STAGE_FORMAT, "stage": stage, **state}, handle)
        return path

    def load_stage(self, stage: int) -> dict[str, Any]:
        path = self.stage_path(stage)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise ValueError(f"cannot read stage checkpoint {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != STAGE_FORMAT:
            raise ValueError(f"{path} is not a reid-sdk stage checkpoint")
        return state

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl with ``rows`` (one JSON object per completed stage)."""
        with atomic_write(self.metrics) as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in rows).encode())

"""Calibration crops for INT8 quantization, preprocessed exactly like inference (reid_sdk.inference.preprocess).

Real crops from a folder are best (the camera's own lighting and framing); without one, rendered synthetic
pedestrians stand in. Every crop is used once; the last batch holds only the remainder, never read past.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from reid_sdk.datasets.files import image_files, read_image, warn_skipped
from reid_sdk.inference.preprocess import preprocess_batch


DEFAULT_MAX_IMAGES = 256


class CalibrationBatches:
    """uint8 RGB N x 3 x H x W batches of at most ``batch_size`` calibration crops; iterable more than once.

    ``folder``: crops read recursively (unreadable files skipped and counted in one warning; a folder
    without images is an error), at most ``max_images`` of them. ``folder=None``: ``max_images`` rendered
    synthetic pedestrians. ``files``: these crops (under ``folder``), spread evenly over the list when it holds
    more than ``max_images`` (e.g. frames of many tracklets, so that every part of a site is seen).

        batches = CalibrationBatches("crops/", input_size=(256, 128), batch_size=32)
        for batch in batches: ...
    """

    def __init__(self, folder: str | Path | None, input_size: tuple[int, int], batch_size: int = 32,
                 max_images: int = DEFAULT_MAX_IMAGES, files: Sequence[Path] | None = None) -> None:
        if batch_size < 1 or max_images < 1:
            raise ValueError(f"calibration batch_size and max_images must be >= 1, got {batch_size}, {max_images}")
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None and not self.folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {self.folder}")
        if files is not None and self.folder is None:
            raise ValueError("calibration files are named under a folder (their source, for reports)")
        if files is not None:
            count = min(max_images, len(files))
            self.files = [Path(files[index * len(files) // count]) for index in range(count)]
        else:
            self.files = [] if self.folder is None else image_files(self.folder, recursive=True)[:max_images]
        if self.folder is not None and not self.files:
            raise ValueError(f"calibration folder {self.folder} has no images")
        self.input_size = input_size
        self.batch_size = batch_size
        self.max_images = max_images
        self.skipped: list[Path] = []

    def describe(self) -> str:
        """Where the crops come from, for logs and reports."""
        if self.folder is None:
            return f"{self.max_images} rendered synthetic pedestrians"
        return f"{len(self.files)} crops from {self.folder}"

    def _crops(self) -> Iterator[np.ndarray]:
        if self.folder is None:
            from reid_sdk.synthetic.layouts import sample_crops

            yield from sample_crops(self.max_images, seed=1, image_size=self.input_size)
            return
        self.skipped = []
        for path in self.files:
            image = read_image(path)
            if image is None:
                self.skipped.append(path)
            else:
                yield image
        warn_skipped(self.skipped, "calibration images")

    def __iter__(self) -> Iterator[np.ndarray]:
        crops: list[np.ndarray] = []
        for crop in self._crops():
            crops.append(crop)
            if len(crops) == self.batch_size:
                yield preprocess_batch(crops, self.input_size)
                crops = []
        if crops:
            yield preprocess_batch(crops, self.input_size)

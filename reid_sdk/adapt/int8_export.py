"""reid-adapt --int8: the adapted model as INT8 ONNX, calibrated on the site's own tracklet crops and verified.

The tracklets are split in two, alternating in camera and track order: every other tracklet's crops calibrate
the activation ranges (spread evenly, at most ``DEFAULT_MAX_IMAGES``), the first crop of each of the others is
held out for the parity check against torch fp32 (INT8 tolerance, :mod:`reid_sdk.export.verify`). The file is
written only when that check passes; the outcome goes into ``parity.json`` either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid_sdk.datasets.files import read_image
from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES, CalibrationBatches
from reid_sdk.export.int8 import quantize_int8
from reid_sdk.export.verify import Tolerance, verify_parity
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.model import read_checkpoint
from reid_sdk.tracks.site_tracklets import SiteTrack

log = logging.getLogger(__name__)


def export_site_int8(fp32: Path, out: Path, checkpoint: Path, tracklets: Path, tracks: Sequence[SiteTrack],
                     parity_crops: int, device: str = "cpu") -> dict[str, Any]:
    """Quantize the fp32 ONNX file ``fp32`` of ``checkpoint`` into ``out`` (the backbone's INT8 recipe), calibrated
    on half of ``tracks`` (under the folder ``tracklets``) and checked on up to ``parity_crops`` crops of the other
    half; returns the record for ``parity.json`` (``passed``, ``checks``, ``calibration``, ``tolerance``)."""
    if len(tracks) < 2:
        raise ValueError(f"INT8 calibration and its check need >= 2 tracklets, the site has {len(tracks)}")
    calibrate, held_out = tracks[::2], tracks[1::2]
    input_size = ModelMetadata.from_checkpoint(read_checkpoint(checkpoint)).input_size
    calibration = CalibrationBatches(tracklets, input_size, max_images=DEFAULT_MAX_IMAGES,
                                     files=[frame for track in calibrate for frame in track.frames])
    step = max(1, len(held_out) // parity_crops)
    crops = [image for track in held_out[::step][:parity_crops] if (image := read_image(track.frames[0])) is not None]
    candidate = out.with_name(f"{out.stem}.unverified.onnx")
    quantize_int8(fp32, candidate, calibration)
    checks = verify_parity(candidate, checkpoint, crops, device=device)
    tolerance = Tolerance.for_precision("int8")
    record = {"passed": all(check.passes(tolerance) for check in checks),
              "checks": [f"{check.verdict(tolerance):<6}{check.describe()}" for check in checks],
              "calibration": f"{len(calibration.files)} crops of {len(calibrate)} tracklets; "
                             f"checked on {len(crops)} crops of {len(held_out)} others",
              "tolerance": vars(tolerance)}
    if record["passed"]:
        os.replace(candidate, out)
    else:
        candidate.unlink(missing_ok=True)
        log.warning("INT8 model not written: its features differ from the checkpoint's beyond the INT8 tolerance "
                    "on the site's held-out crops: %s", "; ".join(record["checks"]))
    return record

"""Uploaded crops checked before they are decoded: size in bytes, format and dimensions read from the header.

Pillow reads only an image's header on ``Image.open`` (no pixels), so a decompression bomb (a few KB that decode to
gigapixels) is refused from its declared size; OpenCV then decodes the accepted bytes into the BGR crop the SDK takes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "BMP", "WEBP")


class UploadRefused(ValueError):
    """An upload the service will not decode; ``status`` is the HTTP code (413 too large, 415 not an image)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """The most bytes and pixels one uploaded crop may have."""

    max_bytes: int = 5 << 20
    max_pixels: int = 16_000_000


def decode_crop(data: bytes, limits: UploadLimits, name: str = "upload") -> np.ndarray:
    """The BGR uint8 crop in ``data``; UploadRefused for too many bytes or pixels, or anything but an image of
    :data:`FORMATS`."""
    if len(data) > limits.max_bytes:
        raise UploadRefused(f"{name} has {len(data)} bytes, more than the limit of {limits.max_bytes}", 413)
    if not data:
        raise UploadRefused(f"{name} is empty: upload a JPEG, PNG, BMP or WebP crop", 415)
    try:
        with Image.open(io.BytesIO(data)) as header:
            kind, (width, height) = header.format, header.size
    except Image.DecompressionBombError as error:
        raise UploadRefused(f"{name} declares more pixels than the limit of {limits.max_pixels}", 413) from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UploadRefused(f"{name} is not an image ({type(error).__name__}): upload a JPEG, PNG, BMP or WebP "
                            "crop", 415) from error
    if kind not in FORMATS:
        raise UploadRefused(f"{name} is a {kind} image: upload a JPEG, PNG, BMP or WebP crop", 415)
    if width * height > limits.max_pixels:
        raise UploadRefused(f"{name} declares {width} x {height} pixels, more than the limit of {limits.max_pixels}",
                            413)
    crop = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if crop is None or crop.size == 0:
        raise UploadRefused(f"{name} is a damaged {kind} image that cannot be decoded", 415)
    return crop

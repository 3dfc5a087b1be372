"""A small served gallery for the reid-serve tests: synthetic pedestrians seen by three cameras, crops on disk as
the thumbnails' media, a deterministic stand-in extractor, and an admin and a search key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.gallery import Gallery
from reid_sdk.inference.preprocess import as_crop_list, preprocess_batch
from reid_sdk.serve.keys import add_key
from reid_sdk.serve.settings import ServeSettings
from reid_sdk.synthetic.layouts import Shot, SyntheticConfig, SyntheticWorld

START = 1_767_225_600.0  # 2026-01-01 UTC: entries carry dates, as retention needs
PEOPLE, CAMERAS, CROPS_PER_TRACK = 4, ("c1", "c2", "c3"), 2


class ColourExtractor:
    """A deterministic stand-in model: the real preprocessing at 16 x 8, then a fixed random projection."""

    feature_dim = 32
    model_id = "colour-projection-test"

    def __init__(self) -> None:
        self.projection = np.random.default_rng(0).standard_normal((3 * 16 * 8, self.feature_dim)).astype(np.float32)

    def extract(self, crops) -> np.ndarray:
        pixels = preprocess_batch(as_crop_list(crops), (16, 8)).reshape(len(as_crop_list(crops)), -1)
        features = (pixels.astype(np.float32) / 255 - 0.5) @ self.projection
        return features / np.linalg.norm(features, axis=1, keepdims=True)


@dataclass
class ServedGallery:
    settings: ServeSettings
    admin_key: str
    search_key: str
    media: Path


def build_served_gallery(root: Path, location: str | None = None, **settings) -> ServedGallery:
    """Write the gallery (track t of camera c: person t, two crops, timestamps from START) at ``location`` (default:
    the FAISS + SQLite directory ``root/gallery``), keys and settings."""
    location = location or str(root / "gallery")
    world = SyntheticWorld(SyntheticConfig(seed=3, image_size=(128, 64)))
    media = root / "media"
    media.mkdir(parents=True)
    extractor = ColourExtractor()
    gallery = Gallery(extractor.feature_dim, path=location, model_id=extractor.model_id)
    for number, camera in enumerate(CAMERAS):
        for person in range(PEOPLE):
            crops = [world.render(Shot(path="", pid=person + 1, camera=number + 1, stream=(person, shot)))[0]
                     for shot in range(CROPS_PER_TRACK)]
            paths = []
            for shot, crop in enumerate(crops):
                paths.append(media / f"{camera}_{person}_{shot}.png")
                cv2.imwrite(str(paths[-1]), crop)
            gallery.add(extractor.extract(crops), identities=person, cameras=camera, track_ids=person + 1,
                        timestamps=[START + 600 * number + 60 * person + shot for shot in range(CROPS_PER_TRACK)],
                        metadata=[{"path": str(path)} for path in paths])
    gallery.save()
    gallery.close()
    keys = root / "keys.json"
    values = dict(media_roots=(media,), crop_dir=root / "crops")
    values.update(settings)
    served = ServeSettings(location, keys, root / "audit" / "audit.jsonl", **values)
    return ServedGallery(served, add_key(keys, "admin", "admin"), add_key(keys, "alice", "search"), media)

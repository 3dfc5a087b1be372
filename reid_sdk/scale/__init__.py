"""Scale-out ingest on Ray Data (the optional ``ray`` extra: ``pip install 'reid-sdk[ray]'``).

:func:`ingest` runs the work list of ``reid-index build`` or ``reid-index ingest`` (image folder shards, camera
videos) on a Ray cluster: units are read and cropped on CPU tasks, extracted on a pool of actors holding one
FeatureExtractor each, and written by the driver through the same single writer as the one-process path, so both
give the same gallery and a re-run with ``resume`` adds only what is missing. Importing this package does not
import Ray.
"""

from reid_sdk.scale.errors import RayJobFailed
from reid_sdk.scale.ray_ingest import ExtractorFactory, ingest

__all__ = ["ExtractorFactory", "RayJobFailed", "ingest"]

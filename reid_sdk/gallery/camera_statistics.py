"""Per-camera mean features, and camera standardisation: each feature minus its camera's mean, re-normalised.

Every camera's light, background and viewpoint shift all its crops' features the same way; subtracting the
camera's mean feature removes that shared shift, so what is left compares people rather than cameras. A camera
with few features has a noisy mean, so it is shrunk towards the global mean: with ``n_c`` features of mean
``m_c`` and shrinkage ``s``, the camera's mean is ``(n_c * m_c + s * m_global) / (n_c + s)``. A camera the
statistics have not seen, or no camera (None), uses the global mean.

Sums are kept in 32.32 fixed point (int64), so adding and then removing features restores them bit for bit and
the statistics do not depend on the order features came in: the ones a gallery kept up to date equal those
computed again from its stored features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

DEFAULT_SHRINKAGE = 10.0  # a camera's mean counts as much as 10 features at the global mean
_FIXED_POINT = 2.0**32     # components of unit vectors in [-1, 1]: 2**31 features fit in an int64 sum
_NEGLIGIBLE = 1e-6         # a standardised feature shorter than this is its camera's mean: it becomes zero


def _plain_label(camera: Any) -> Any:
    return camera.item() if isinstance(camera, np.generic) else camera


def camera_groups(cameras: Iterable[Any]) -> tuple[list[Any], np.ndarray]:
    """(distinct camera labels in order of first appearance, each row's position in that list)."""
    positions: dict[Any, int] = {}
    inverse = [positions.setdefault(_plain_label(camera), len(positions)) for camera in cameras]
    return list(positions), np.asarray(inverse, dtype=np.int64)


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """Float32 copy of (N, D) ``features`` with unit rows; ValueError for non-finite or all-zero rows."""
    array = np.array(features, dtype=np.float32, ndmin=2)
    if array.ndim != 2:
        raise ValueError(f"features must be a (N, D) array, got shape {np.shape(features)}")
    if not np.isfinite(array).all():
        raise ValueError("features contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not norms.all():
        raise ValueError("features contain an all-zero row, which has no direction to compare")
    return array / norms


def check_shrinkage(shrinkage: float) -> float:
    """``shrinkage`` as a float; ValueError unless it is finite and >= 0."""
    value = float(shrinkage)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"camera shrinkage must be a finite number >= 0 (features' worth of global mean), got "
                         f"{shrinkage!r}")
    return value


class CameraStatistics:
    """Sum and count of the L2-normalised features of each camera, updated exactly as features come and go.

    Example:
        ```python
        statistics = CameraStatistics(dim=4)
        statistics.add(np.eye(4, dtype=np.float32), cameras=[1, 1, 2, 2])
        standardised = statistics.standardise(np.eye(4, dtype=np.float32), cameras=[1, 1, 2, 2])
        ```
    """

    def __init__(self, dim: int, shrinkage: float = DEFAULT_SHRINKAGE) -> None:
        self.dim = int(dim)
        self._shrinkage = check_shrinkage(shrinkage)
        self._sums: dict[Any, np.ndarray] = {}   # camera -> fixed-point int64 sum of its unit features
        self._counts: dict[Any, int] = {}
        self.version = 0                         # bumped by every change: derived data compares it

    @property
    def shrinkage(self) -> float:
        """How many features' worth of the global mean each camera's mean is shrunk with."""
        return self._shrinkage

    @shrinkage.setter
    def shrinkage(self, value: float) -> None:
        self._shrinkage = check_shrinkage(value)
        self.version += 1

    @classmethod
    def of(cls, features: np.ndarray, cameras: Sequence[Any], shrinkage: float = DEFAULT_SHRINKAGE) -> CameraStatistics:
        """The statistics of (N, D) ``features`` seen by ``cameras`` (normalised here)."""
        statistics = cls(np.shape(features)[-1], shrinkage)
        statistics.add(features, cameras)
        return statistics

    # -- updates --------------------------------------------------------------------------------------------------
    def add(self, features: np.ndarray, cameras: Sequence[Any]) -> None:
        """Count (N, D) ``features`` (normalised here) under their ``cameras`` (None: no camera)."""
        self._update(features, cameras, +1)

    def remove(self, features: np.ndarray, cameras: Sequence[Any]) -> None:
        """Take back features :meth:`add` counted (the same vectors and cameras); ValueError if a camera runs short."""
        self._update(features, cameras, -1)

    def _update(self, features: np.ndarray, cameras: Sequence[Any], sign: int) -> None:
        if not len(features) and not len(cameras):
            return
        unit = l2_normalised(features)
        if unit.shape[1] != self.dim or len(unit) != len(cameras):
            raise ValueError(f"expected ({len(cameras)}, {self.dim}) features for {len(cameras)} cameras, got "
                             f"{unit.shape}")
        labels, inverse = camera_groups(cameras)
        fixed = np.rint(unit.astype(np.float64) * _FIXED_POINT).astype(np.int64)
        for position, camera in enumerate(labels):
            rows = fixed[inverse == position]
            count = self._counts.get(camera, 0) + sign * len(rows)
            if count < 0:
                raise ValueError(f"cannot remove {len(rows)} features of camera {camera!r}: it holds {count + len(rows)}")
            if count == 0:
                self._sums.pop(camera, None)
                self._counts.pop(camera, None)
                continue
            self._sums[camera] = self._sums.get(camera, np.zeros(self.dim, np.int64)) + sign * rows.sum(axis=0)
            self._counts[camera] = count
        self.version += 1

    # -- reading --------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """How many features are counted."""
        return sum(self._counts.values())

    @property
    def cameras(self) -> list[Any]:
        """The cameras counted (None: the features without a camera)."""
        return list(self._counts)

    @property
    def has_cameras(self) -> bool:
        """Whether any counted feature has a camera: without one, standardisation only removes the global mean."""
        return any(camera is not None for camera in self._counts)

    def count(self, camera: Any) -> int:
        """Features counted for ``camera`` (0 for an unseen one)."""
        return self._counts.get(_plain_label(camera), 0)

    def global_mean(self) -> np.ndarray:
        """Mean of every counted unit feature (float64, zero when nothing is counted)."""
        total = len(self)
        if not total:
            return np.zeros(self.dim)
        return np.sum(list(self._sums.values()), axis=0) / _FIXED_POINT / total

    def mean(self, camera: Any) -> np.ndarray:
        """``camera``'s mean shrunk towards the global mean; the global mean for None or an unseen camera."""
        camera = _plain_label(camera)
        count = self._counts.get(camera, 0)
        if camera is None or not count:
            return self.global_mean()
        return (self._sums[camera] / _FIXED_POINT + self.shrinkage * self.global_mean()) / (count + self.shrinkage)

    def standardise(self, features: np.ndarray, cameras: Sequence[Any]) -> np.ndarray:
        """(N, D) float32: each feature (normalised) minus its camera's :meth:`mean`, normalised again.

        A feature that equals its camera's mean (shorter than 1e-6 after the subtraction) has no direction left:
        it becomes a zero row, which scores 0 against everything, rather than an arbitrary direction.
        """
        unit = l2_normalised(features) if len(features) else np.empty((0, self.dim), np.float32)
        if unit.shape[1] != self.dim or len(unit) != len(cameras):
            raise ValueError(f"expected ({len(cameras)}, {self.dim}) features for {len(cameras)} cameras, got "
                             f"{unit.shape}")
        labels, inverse = camera_groups(cameras)
        means = np.stack([self.mean(camera) for camera in labels]) if labels else np.empty((0, self.dim))
        centred = unit.astype(np.float64) - means[inverse]
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        return np.where(norms > _NEGLIGIBLE, centred / np.maximum(norms, _NEGLIGIBLE), 0.0).astype(np.float32)

    # -- persistence ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state: the exact fixed-point sums, per camera (labels keep their type); the shrinkage is a
        setting, not a statistic, so it is left to whoever keeps the statistics."""
        return {"dim": self.dim,
                "cameras": [{"camera": camera, "count": self._counts[camera], "sum": self._sums[camera].tolist()}
                            for camera in self._counts]}

    @classmethod
    def from_dict(cls, state: dict[str, Any], shrinkage: float = DEFAULT_SHRINKAGE) -> CameraStatistics:
        """The statistics :meth:`to_dict` wrote; ValueError naming what is malformed."""
        try:
            statistics = cls(state["dim"], shrinkage)
            for each in state["cameras"]:
                total = np.asarray(each["sum"], dtype=np.int64)
                if total.shape != (statistics.dim,) or int(each["count"]) < 1:
                    raise ValueError(f"camera {each['camera']!r}: sum of shape {total.shape}, count {each['count']}")
                statistics._sums[each["camera"]] = total
                statistics._counts[each["camera"]] = int(each["count"])
        except (KeyError, TypeError, OverflowError, ValueError) as error:
            raise ValueError(f"malformed camera statistics: {error!r}") from error
        return statistics

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CameraStatistics) and self.dim == other.dim and self.shrinkage == other.shrinkage
                and self._counts == other._counts
                and all(np.array_equal(self._sums[camera], other._sums[camera]) for camera in self._counts))

    def __repr__(self) -> str:
        return f"CameraStatistics(dim={self.dim}, cameras={len(self._counts)}, features={len(self)})"

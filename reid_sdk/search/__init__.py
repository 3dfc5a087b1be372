"""Search: ReIDIndex (a feature extractor over a gallery, with tracks), k-reciprocal re-ranking, image sources."""

from reid_sdk.search.index import ReIDIndex, TrackMatches
from reid_sdk.search.reranking import RerankConfig

__all__ = ["ReIDIndex", "RerankConfig", "TrackMatches"]

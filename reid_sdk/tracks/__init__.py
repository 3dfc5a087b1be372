"""Video + tracks in, per-track re-ID features out: the tracklet aggregator, MOTChallenge files, box crops, the frame-quality rule and
frame-by-frame ingestion. Torch-free."""

from reid_sdk.tracks.aggregator import TrackletAggregator
from reid_sdk.tracks.boxes import extract_boxes
from reid_sdk.tracks.ingest import (IngestReport, TrackCrops, TrackFeature, VideoInfo, probe_video, read_box,
                                   track_crops, track_features)
from reid_sdk.tracks.mot import (MotFormat, MotTracks, read_mot, read_track_identities, write_mot,
                                write_track_identities)
from reid_sdk.tracks.quality import FrameQuality

__all__ = ["FrameQuality", "IngestReport", "MotFormat", "MotTracks", "TrackCrops", "TrackFeature", "TrackletAggregator", "VideoInfo", "extract_boxes", "probe_video", "read_box",
           "read_mot", "read_track_identities", "track_crops", "track_features", "write_mot", "write_track_identities"]

"""The non-locally enhanced ResNet of the paper, its configuration and checkpoints (needs torch)."""

from reid_sdk.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from reid_sdk.model.config import ModelConfig
from reid_sdk.model.network import ReIDNet, TrainOutput

__all__ = ["ModelConfig", "ReIDNet", "TrainOutput", "load_checkpoint", "read_checkpoint", "save_checkpoint"]

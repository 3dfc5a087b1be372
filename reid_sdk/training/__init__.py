"""Unsupervised training (needs torch): the clustering engine, memory and losses, one stage of SGD, Algorithm 1
(:class:`Trainer`), the label-free model choice and DDP."""

from reid_sdk.training.config import RunConfig, load_config
from reid_sdk.training.trainer import Trainer

__all__ = ["RunConfig", "Trainer", "load_config"]

"""Which trainer runs a config: Algorithm 1's stages or the re-clustering loop (``train.schedule``)."""

from __future__ import annotations

from pathlib import Path

from reid_sdk.training.config import RunConfig
from reid_sdk.training.recluster import ReclusterTrainer
from reid_sdk.training.trainer import Trainer


def build_trainer(config: RunConfig, out: str | Path, resume: bool = False) -> Trainer:
    """A :class:`~reid_sdk.training.trainer.Trainer` (``train.schedule=stages``, the paper's Algorithm 1) or a
    :class:`~reid_sdk.training.recluster.ReclusterTrainer` (``recluster``) for ``config``, writing into ``out``.

    Example:
        ```python
        trainer = build_trainer(load_config(None, ["data.root=data/synth", "train.schedule=recluster"]), "runs/rc")
        results = trainer.run()  # one StageResult per stage (Algorithm 1) or per epoch (re-clustering)
        ```
    """
    trainer = ReclusterTrainer if config.train.schedule == "recluster" else Trainer
    return trainer(config, out, resume=resume)

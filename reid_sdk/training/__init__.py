"""Unsupervised training (needs torch): the clustering engine, memory and losses, one stage of SGD, Algorithm 1
(:class:`~reid_sdk.training.trainer.Trainer`), the label-free model choice and DDP.

Nothing is imported here, so ``reid_sdk.training.config`` or ``.clustering`` load without the trainer.
"""

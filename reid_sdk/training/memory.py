"""The repelled loss (paper eq. 2-3) with its lookup table V of cluster centroids.

V has one L2-normalised row per current cluster, initialised from the members' mean
embedding and updated by exponential moving average as the samples pass:
V[y] <- normalise(m * V[y] + (1 - m) * v), in batch order (BUC's exemplar memory).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ClusterMemory:
    """Lookup table V (C x D) of cluster centroids, the logits V v / tau and their EMA update."""

    def __init__(self, centroids: torch.Tensor, temperature: float = 0.1, momentum: float = 0.5) -> None:
        if centroids.dim() != 2 or centroids.shape[0] < 1:
            raise ValueError(f"centroids must be C x D with C >= 1, got shape {tuple(centroids.shape)}")
        self.table = F.normalize(centroids.float(), dim=1)
        self.temperature = temperature
        self.momentum = momentum

    @classmethod
    def from_members(cls, embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                     momentum: float = 0.5) -> ClusterMemory:
        """Row c = normalised mean of the (normalised) embeddings of the samples labelled c, labels 0..C-1."""
        labels = labels.to(embeddings.device, torch.long)
        num_clusters = int(labels.max()) + 1
        sums = torch.zeros(num_clusters, embeddings.shape[1], device=embeddings.device)
        sums.index_add_(0, labels, F.normalize(embeddings.float(), dim=1))
        counts = torch.bincount(labels, minlength=num_clusters)
        if bool((counts == 0).any()):
            missing = torch.nonzero(counts == 0).flatten()[:5].tolist()
            raise ValueError(f"labels must be contiguous 0..C-1; clusters {missing} have no member")
        return cls(sums, temperature, momentum)

    @property
    def num_clusters(self) -> int:
        return self.table.shape[0]

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """V v / tau for each L2-normalised embedding v: (B, C)."""
        return embeddings.float() @ self.table.t() / self.temperature

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean of -log p(y | v, V) over the batch (the repelled loss)."""
        return F.cross_entropy(self.logits(embeddings), labels)

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """EMA update in batch order; a label seen k times in the batch is updated k times, in sequence.

        Vectorised by rounds: round r updates every label at its r-th occurrence at once. Pass ``labels``
        on the CPU (the trainer does): the round schedule is then planned without a device sync.
        """
        embeddings = embeddings.detach().float()
        labels = labels.cpu()
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        first = torch.ones_like(sorted_labels, dtype=torch.bool)
        first[1:] = sorted_labels[1:] != sorted_labels[:-1]
        group_start = torch.cummax(torch.where(first, torch.arange(len(order), device=labels.device), 0), 0).values
        occurrence = torch.empty_like(order)
        occurrence[order] = torch.arange(len(order), device=labels.device) - group_start
        device = self.table.device
        for round_index in range(int(occurrence.max()) + 1 if len(order) else 0):
            chosen = torch.nonzero(occurrence == round_index).flatten()
            rows = labels[chosen].to(device, non_blocking=True)
            chosen = chosen.to(device, non_blocking=True)
            mixed = self.momentum * self.table[rows] + (1.0 - self.momentum) * embeddings[chosen]
            self.table[rows] = F.normalize(mixed, dim=1)

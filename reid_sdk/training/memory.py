"""The lookup tables the network is trained against, and their losses.

:class:`ClusterMemory` is the paper's (eq. 2-3): V has one L2-normalised row per current cluster,
initialised from the members' mean embedding and updated by exponential moving average as the samples pass:
V[y] <- normalise(m * V[y] + (1 - m) * v), in batch order (BUC's exemplar memory); the repelled loss is the
softmax over V. :class:`CameraProxyMemory` is the camera-aware option (``train.loss=camera_proxy``): one such
row per (cluster, camera) pair, after CAP / O2CAP's camera-aware proxies.
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


class CameraProxyMemory:
    """One proxy per (cluster, camera) pair present (``train.loss=camera_proxy``), after CAP / O2CAP.

    A cluster's crops from one camera share light, background and viewpoint; one centroid per cluster is pulled
    towards the camera with most crops and teaches the network that camera's look. Here each (cluster, camera)
    has its own proxy, and the loss per sample of cluster y seen by camera c is

    - within-camera: softmax cross-entropy over the proxies of camera c only (target: proxy (y, c)), so
      telling people apart is learnt where the camera's look cannot help;
    - cross-camera, weighted by ``weight``: -mean over y's proxies p of log(e^s_p / sum over y's proxies and the
      ``negatives`` most similar proxies of other clusters of e^s), which pulls the sample towards how y looks in
      every other camera.

    Scores are cosine / temperature; proxies follow the same EMA update as :class:`ClusterMemory`. Training
    targets are proxy indices (:attr:`sample_targets` holds each sample's).

    Example:
        ```python
        memory = CameraProxyMemory.from_members(embeddings, labels, cameras, temperature=0.1, momentum=0.5)
        loss = memory.loss(batch_embeddings, memory.sample_targets[batch_index])
        ```
    """

    def __init__(self, proxies: ClusterMemory, proxy_cluster: torch.Tensor, proxy_camera: torch.Tensor,
                 sample_targets: torch.Tensor, weight: float = 0.5, negatives: int = 50) -> None:
        if not (proxy_cluster.shape == proxy_camera.shape == (proxies.num_clusters,)):
            raise ValueError("need one cluster and one camera per proxy")
        self.proxies = proxies
        self.proxy_cluster = proxy_cluster.to(proxies.table.device, torch.long)
        self.proxy_camera = proxy_camera.to(proxies.table.device, torch.long)
        self.sample_targets = sample_targets.cpu().long()
        self.weight = weight
        self.negatives = negatives

    @classmethod
    def from_members(cls, embeddings: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor,
                     temperature: float = 0.1, momentum: float = 0.5, weight: float = 0.5,
                     negatives: int = 50) -> CameraProxyMemory:
        """Proxies = normalised mean embedding of each (label, camera) pair's samples, ordered by (label, camera)."""
        if cameras.shape != labels.shape:
            raise ValueError(f"need one camera per sample, got {tuple(cameras.shape)} for {tuple(labels.shape)}")
        labels = labels.to(embeddings.device, torch.long)
        camera_ids, camera_index = torch.unique(cameras.to(embeddings.device), return_inverse=True)
        pairs, proxy_of_sample = torch.unique(labels * len(camera_ids) + camera_index, return_inverse=True)
        proxies = ClusterMemory.from_members(embeddings, proxy_of_sample, temperature, momentum)
        return cls(proxies, pairs // len(camera_ids), pairs % len(camera_ids), proxy_of_sample, weight, negatives)

    @property
    def num_proxies(self) -> int:
        return self.proxies.num_clusters

    def loss(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Within-camera loss + weight x cross-camera loss, averaged over the batch; ``targets`` are proxy indices."""
        logits = self.proxies.logits(embeddings)
        camera = self.proxy_camera[targets]
        within = F.cross_entropy(logits.masked_fill(self.proxy_camera[None, :] != camera[:, None], -float("inf")),
                                 targets)
        positive = self.proxy_cluster[None, :] == self.proxy_cluster[targets][:, None]
        hardest = logits.masked_fill(positive, -float("inf")).topk(min(self.negatives, self.num_proxies), dim=1).values
        denominator = torch.logsumexp(torch.cat([logits.masked_fill(~positive, -float("inf")), hardest], dim=1), dim=1)
        positive_mean = (logits * positive).sum(dim=1) / positive.sum(dim=1)
        return within + self.weight * (denominator - positive_mean).mean()

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, targets: torch.Tensor) -> None:
        """The EMA update of each sample's own proxy, as :meth:`ClusterMemory.update`."""
        self.proxies.update(embeddings, targets)

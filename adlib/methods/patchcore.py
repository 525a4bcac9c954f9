"""PatchCore (Roth et al., CVPR 2022): a memory bank of normal patch features, subsampled by a greedy
coreset; a test patch's anomaly score is its distance to the nearest bank feature; image score = max.

Uses the shared patch features of ``adlib.patch_features`` (the WSCXR paper's Eq. 1-3), so that PatchCore,
SimpleNet and WSCXR in notebook 06 see exactly the same features. Simplification: the original's
re-weighting of the image score by the neighbourhood density of the nearest bank feature is omitted.
"""
from __future__ import annotations

import numpy as np
import torch

from ..detectors import register
from ..patch_features import PatchFeatureDetector, flatten_patches, greedy_coreset, knn_distances


@register("patchcore")
class PatchCoreDetector(PatchFeatureDetector):
    """coreset_fraction: share of normal patch features kept in the bank (authors of WSCXR: 0.5;
    PatchCore: 0.01-0.25); projection_dim: random projection used only to choose the coreset."""

    def __init__(self, coreset_fraction: float = 0.5, projection_dim: int | None = 128, seed: int = 0,
                 knn_bytes: int = 256 * 2**20, **kwargs):
        super().__init__(**kwargs)
        if not 0 < coreset_fraction <= 1:
            raise ValueError(f"coreset_fraction must be in (0, 1], got {coreset_fraction}")
        self.coreset_fraction, self.projection_dim, self.seed = coreset_fraction, projection_dim, seed
        self.knn_bytes = knn_bytes
        self.bank: torch.Tensor | None = None

    def fit_features(self, normal, val=None, anomalies=None, anomaly_classes=None, bank: torch.Tensor | None = None):
        """normal: (N, h, w, D) features of training normals. ``bank`` (optional): an already subsampled
        bank (e.g. shared with WSCXR), used instead of computing the coreset again."""
        if bank is None:
            patches = flatten_patches(normal)
            keep = greedy_coreset(patches, fraction=self.coreset_fraction, projection_dim=self.projection_dim,
                                  seed=self.seed)
            bank = patches[keep]
        self.bank = bank.float().contiguous()
        self.fitted = True
        return self

    def patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        n, h, w, _ = features.shape
        return knn_distances(flatten_patches(features), self.bank, k=1, max_bytes=self.knn_bytes)[:, 0].view(n, h, w)

    def memory_bank_size(self) -> int:
        return 0 if self.bank is None else int(len(self.bank))


def nearest_normal_distance(features: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """Convenience for analysis: per-patch distance to the nearest bank feature, flattened."""
    return knn_distances(flatten_patches(features), bank, k=1)[:, 0].numpy()

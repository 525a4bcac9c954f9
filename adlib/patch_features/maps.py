"""From patch scores (N, h, w) to what is reported: the image score (the largest patch score) and image-sized,
Gaussian-smoothed anomaly maps."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(4 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, H, W) maps with reflect padding."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma)
    r = len(k) // 2
    x = maps.unsqueeze(1).float()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x[:, 0]


def patch_maps_to_images(patch_scores: torch.Tensor, image_size: int, sigma: float = 4.0) -> torch.Tensor:
    """(N, h, w) patch scores -> (N, S, S) anomaly maps: bilinear upsampling, then Gaussian smoothing."""
    if patch_scores.ndim != 3:
        raise ValueError(f"patch scores must be (N, h, w), got {tuple(patch_scores.shape)}")
    up = F.interpolate(patch_scores.unsqueeze(1).float(), size=(image_size, image_size), mode="bilinear",
                       align_corners=False)[:, 0]
    return gaussian_smooth(up, sigma)


def image_scores(patch_scores: torch.Tensor) -> np.ndarray:
    """Image score = maximum patch score (WSCXR Eq. 8, PatchCore)."""
    return patch_scores.flatten(1).max(1).values.double().numpy()

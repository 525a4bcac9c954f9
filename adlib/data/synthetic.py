"""Synthetic 'anatomical' phantoms for tests and teaching.

Each image is a smooth body outline with two darker lung-like fields and a low-frequency texture;
anomalous images carry one to three bright round lesions inside the lungs, with their pixel masks,
so that both image-level and pixel-level AUROC can be measured.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .imageset import ImageSet
from .protocol import Protocol


def _smooth_noise(n: int, size: int, gen: torch.Generator, scale: int = 4) -> torch.Tensor:
    coarse = torch.rand(n, 1, max(2, size // scale), max(2, size // scale), generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]


def _ellipse(yy, xx, cy, cx, ry, rx) -> torch.Tensor:
    return (((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2)


def make_phantoms(n: int, size: int = 32, anomalous_fraction: float = 0.0, channels: int = 1, seed: int = 0,
                  lesion_radius: float = 0.09, split: str = "train") -> ImageSet:
    """n phantoms; a fraction of them anomalous (with lesions and masks). Deterministic given seed."""
    gen = torch.Generator().manual_seed(seed)
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    jitter = lambda scale: (torch.rand(n, generator=gen) - 0.5) * 2 * scale  # noqa: E731

    body = _ellipse(yy, xx, jitter(0.05), jitter(0.05), 0.9 + jitter(0.04), 0.75 + jitter(0.05))
    img = torch.sigmoid((1 - body) * 12) * 0.55
    lung_masks = []
    for side in (-1, 1):
        lung = _ellipse(yy, xx, -0.05 + jitter(0.05), side * 0.35 + jitter(0.04), 0.55 + jitter(0.05), 0.22 + jitter(0.03))
        inside = torch.sigmoid((1 - lung) * 10)
        img = img - 0.35 * inside
        lung_masks.append(lung < 0.8)
    img = img + 0.12 * _smooth_noise(n, size, gen) + 0.15
    labels = np.zeros(n, dtype=np.int64)
    n_anom = int(round(anomalous_fraction * n))
    anomalous_idx = torch.randperm(n, generator=gen)[:n_anom]
    labels[anomalous_idx.numpy()] = 1
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    lungs = lung_masks[0] | lung_masks[1]
    for i in anomalous_idx.tolist():
        candidates = torch.nonzero(lungs[i])
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            cy, cx = candidates[int(torch.randint(len(candidates), (1,), generator=gen))].tolist()
            r = lesion_radius * (0.7 + 0.6 * float(torch.rand(1, generator=gen)))
            d = ((yy - lin[cy]) ** 2 + (xx - lin[cx]) ** 2).sqrt()
            blob = torch.clamp(1 - d / r, 0, 1) ** 0.5
            img[i] = img[i] + 0.55 * blob
            masks[i] |= d < r
    img = (img + 0.02 * torch.randn(n, size, size, generator=gen)).clamp(0, 1)
    images = (img * 255).round().to(torch.uint8).unsqueeze(1)
    if channels == 3:  # a colour version with a mild tint, to exercise RGB code paths
        images = torch.cat([images, (images.float() * 0.9).to(torch.uint8), (images.float() * 0.8).to(torch.uint8)], 1)
    return ImageSet(images=images, labels=labels, raw_labels=labels.copy(), masks=masks,
                    domains={"organ": np.full(n, "phantom"), "modality": np.full(n, "synthetic"),
                             "dataset": np.full(n, "synthetic")},
                    meta={"dataset": "synthetic", "split": split, "size": size, "source": "generated (adlib.data.synthetic)"})


def make_synthetic_protocol(n_train: int = 256, n_val: int = 64, n_test: int = 128, size: int = 32,
                            channels: int = 1, seed: int = 0) -> Protocol:
    """Train: normal phantoms; val/test: half anomalous; pool: anomalous train phantoms for few-shot use."""
    train = make_phantoms(n_train, size, 0.0, channels, seed, split="train")
    pool = make_phantoms(max(16, n_val // 2), size, 1.0, channels, seed + 3, split="train")
    val = make_phantoms(n_val, size, 0.5, channels, seed + 1, split="val")
    test = make_phantoms(n_test, size, 0.5, channels, seed + 2, split="test")
    return Protocol("synthetic", train, val, test, pool)

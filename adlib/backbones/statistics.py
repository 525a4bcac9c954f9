"""Per-channel feature statistics of a layer over natural images (DPA normalises perceptual features by them)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..io import atomic_torch_save
from .extractor import MIN_INPUT_SIZE, FeatureExtractor

REFERENCE_SET = "CIFAR-10 train split, seeded random subset"


@torch.no_grad()
def feature_statistics(ext: FeatureExtractor, layer: str, n_images: int = 1000, size: int | None = None,
                       batch_size: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (shape (C,)) of ``layer`` over a natural-image reference set.

    Reference set: ``n_images`` CIFAR-10 training images (seeded subset, RGB, 32 px), resized to ``size``
    (default: the extractor's input_size, else 32 px) - natural images, like the ImageNet statistics DPA uses
    to normalise perceptual features (its Eq. 2). Cached next to the weights, keyed by the exact weights.
    """
    if layer not in ext.out_channels:
        raise ValueError(f"layer {layer!r} is not one of this extractor's layers {list(ext.out_channels)}")
    size = size or ext.input_size or MIN_INPUT_SIZE
    key = f"stats_{ext.arch}_{ext.info.cache_key}_{layer}_{size}px_{n_images}img_seed{seed}.pt"
    path = ext.info.cache_dir / key
    if path.exists():
        stats = torch.load(path, map_location="cpu", weights_only=True)
        return stats["mean"], stats["std"]
    from ..data import load_cifar10_arrays

    images = load_cifar10_arrays()["train_images"]
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_images]
    device = ext.mean.device
    total = total_sq = None
    count = 0
    for start in range(0, len(index), batch_size):
        batch = torch.from_numpy(images[index[start:start + batch_size].numpy()]).permute(0, 3, 1, 2).float() / 255
        if size != batch.shape[-1]:
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=size < batch.shape[-1])
        feats = ext(batch.to(device))[layer].double()
        s, sq = feats.sum(dim=(0, 2, 3)), feats.pow(2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += feats.shape[0] * feats.shape[2] * feats.shape[3]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt()
    mean, std = mean.float().cpu(), std.float().cpu().clamp_min(1e-6)
    atomic_torch_save({"mean": mean, "std": std, "reference": REFERENCE_SET, "n_images": n_images, "size": size}, path)
    return mean, std

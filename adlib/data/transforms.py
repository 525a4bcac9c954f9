"""Resizing and channel conversion of uint8 image batches (torchvision functional ops)."""
from __future__ import annotations

import torch
from torchvision.transforms import functional as TF


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Grayscale -> RGB by repetition, RGB -> grayscale by ITU-R 601 luma (torchvision)."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3 and images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    if channels == 1 and images.shape[1] == 3:
        return TF.rgb_to_grayscale(images, num_output_channels=1)
    raise ValueError(f"cannot convert {images.shape[1]} channels to {channels}; use 1 or 3")


def resize_uint8(images: torch.Tensor, size: int | None, batch: int = 1024) -> torch.Tensor:
    """Bilinear, antialiased resize of a (N, C, H, W) uint8 tensor to size x size."""
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [
        TF.resize(images[i:i + batch], [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out)

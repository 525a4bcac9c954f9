"""SALAD's networks (paper Sec. IV-B, Fig. 2): encoder M_E, decoder M_D (and the restoration decoder M'_D of
the same structure), the PatchGAN image discriminator D_I and the MLP feature discriminator D_F.

M_E: kernel-4 stride-2 convolutions, each followed by InstanceNorm and LeakyReLU(0.2), halving the image down
to 1 x 1 - eight layers at 256 px, one fewer per halving (7 at 128, 6 at 64, 5 at 32 px). The last layer maps
to the latent vector z' (``nz`` numbers). Choice: that last layer has neither InstanceNorm nor LeakyReLU - the
instance norm of a 1 x 1 map is identically zero, and z' must be able to match z ~ N(0, I) (Eq. 2).
M_D mirrors it with transposed convolutions (InstanceNorm + LeakyReLU after each, Tanh on the output layer:
images are in [-1, 1], paper Sec. IV-B). Channels double per level from ``width`` up to ``max_width``.
D_I: PatchGAN (Isola et al.; Li & Wand [46]): conv 4/2 blocks (no norm on the first, InstanceNorm after the
others, LeakyReLU 0.2), then a stride-1 conv block and a stride-1 conv to one channel - one least-squares
real/fake value per patch. Three stride-2 blocks (pix2pix's 70 x 70 PatchGAN) at 128 px and above, fewer for
small images so that the patch grid stays at least 2 x 2.
D_F: MLP nz -> hidden -> hidden -> 1 with LeakyReLU (the paper: "a multi-layer perceptron"; depth and width
are our choice).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def salad_depth(size: int) -> int:
    """Stride-2 layers from ``size`` px down to 1 x 1: 8 at 256 px, 7 at 128, 6 at 64, 5 at 32."""
    depth = int(round(math.log2(size))) if size > 0 else 0
    if size < 4 or 2**depth != size:
        raise ValueError(f"SALAD's encoder halves the image down to 1 x 1: the size must be a power of two "
                         f">= 4 (32, 64, 128, 256), got {size}")
    return depth


def level_widths(depth: int, width: int, max_width: int) -> list[int]:
    return [min(width * 2**i, max_width) for i in range(depth)]


def _init(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class SaladEncoder(nn.Module):
    """M_E: image (N, C, S, S) in [-1, 1] -> z' of shape (N, nz)."""

    def __init__(self, channels: int, size: int, nz: int = 128, width: int = 64, max_width: int = 512):
        super().__init__()
        self.depth = salad_depth(size)
        widths = level_widths(self.depth - 1, width, max_width)
        layers, c = [], channels
        for w in widths:
            layers.append(nn.Sequential(nn.Conv2d(c, w, 4, 2, 1), nn.InstanceNorm2d(w, affine=True),
                                        nn.LeakyReLU(0.2)))
            c = w
        layers.append(nn.Conv2d(c, nz, 4, 2, 1))  # 2 x 2 -> 1 x 1: the latent vector
        self.layers = nn.Sequential(*layers)
        self.nz, self.size, self.channels = nz, size, channels
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


class SaladDecoder(nn.Module):
    """M_D (and M'_D): z (N, nz) -> image (N, C, S, S) in [-1, 1]. ``layers`` is a ModuleList from the latent
    side to the output, so that a restoration decoder can share the last few (`SharedTailDecoder`)."""

    def __init__(self, channels: int, size: int, nz: int = 128, width: int = 64, max_width: int = 512):
        super().__init__()
        self.depth = salad_depth(size)
        widths = level_widths(self.depth - 1, width, max_width)
        layers, c = [], nz
        for w in reversed(widths):
            layers.append(nn.Sequential(nn.ConvTranspose2d(c, w, 4, 2, 1), nn.InstanceNorm2d(w, affine=True),
                                        nn.LeakyReLU(0.2)))
            c = w
        layers.append(nn.Sequential(nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()))
        self.layers = nn.ModuleList(layers)
        self.nz = nz
        _init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.view(len(z), -1, 1, 1)
        for layer in self.layers:
            h = layer(h)
        return h


class SharedTailDecoder(nn.Module):
    """A restoration decoder M'_D with its own first layers and the last ``shared`` layers of another decoder
    (Table IV, "encoder and the last few layers of the decoder" shared)."""

    def __init__(self, own: SaladDecoder, other: SaladDecoder, shared: int):
        super().__init__()
        if not 1 <= shared < len(other.layers):
            raise ValueError(f"shared decoder layers must be in 1 .. {len(other.layers) - 1}, got {shared}")
        self.head = nn.ModuleList(list(own.layers)[: len(own.layers) - shared])
        self.tail = nn.ModuleList(list(other.layers)[len(other.layers) - shared:])  # the same modules, shared
        self.shared = shared

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.view(len(z), -1, 1, 1)
        for layer in list(self.head) + list(self.tail):
            h = layer(h)
        return h


def patchgan_downsamplings(size: int, most: int = 3) -> int:
    """Stride-2 blocks of the PatchGAN: 3 (pix2pix) when the grid stays >= 8 px before the stride-1 layers."""
    n = 0
    while n < most and size // 2 ** (n + 1) >= 8:
        n += 1
    return max(n, 1)


class PatchDiscriminator(nn.Module):
    """D_I: image -> (N, 1, P, P) map of least-squares real/fake values, one per patch."""

    def __init__(self, channels: int, size: int, width: int = 64, max_width: int = 512):
        super().__init__()
        n_down = patchgan_downsamplings(size)
        layers, c = [], channels
        for i in range(n_down):
            w = min(width * 2**i, max_width)
            block = [nn.Conv2d(c, w, 4, 2, 1)]
            if i > 0:
                block.append(nn.InstanceNorm2d(w, affine=True))
            layers += [*block, nn.LeakyReLU(0.2)]
            c = w
        w = min(width * 2**n_down, max_width)
        layers += [nn.Conv2d(c, w, 4, 1, 1), nn.InstanceNorm2d(w, affine=True), nn.LeakyReLU(0.2),
                   nn.Conv2d(w, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeatureDiscriminator(nn.Module):
    """D_F: latent vector (N, nz) -> one least-squares real/fake value per vector (N,)."""

    def __init__(self, nz: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(nz, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        _init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1)).flatten()


class Centre(nn.Module):
    """The running centre C of the normal features (Eq. 7), a buffer: it is checkpointed and restored with
    the networks, but never trained by an optimizer."""

    def __init__(self, nz: int):
        super().__init__()
        self.register_buffer("c", torch.zeros(nz))

    def forward(self) -> torch.Tensor:
        return self.c

"""The DPA autoencoder: pre-activation residual blocks, one width per resolution level, a configurable
bottleneck, and the extra 1x1 "from image"/"to image" layers that progressive growing needs.

Resolution levels run from the full image size down to a small base grid (4 px for 32/64/128 px
images, 7 px for 28 px images). Level i has resolution ``size / 2**i`` and width ``widths[i]``.
The network can run at any level's resolution ``res`` (progressive growing): the encoder then enters at
that level through its ``from_image`` layer and the decoder leaves through the matching ``to_image``
layer. With ``alpha < 1`` the newest (highest-resolution) level is faded in: the encoder blends its
features with those of the downsampled image entering one level lower, and the decoder blends its
output with the one-level-lower output upsampled (Karras et al., used by DPA Sec. III-B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resolution_levels(size: int) -> list[int]:
    """Resolutions from ``size`` down to the base grid: 64 -> [64, 32, 16, 8, 4]; 28 -> [28, 14, 7]."""
    if size < 8:
        raise ValueError(f"image size must be at least 8 px, got {size}")
    levels = [size]
    while levels[-1] % 2 == 0 and levels[-1] // 2 >= 4:
        levels.append(levels[-1] // 2)
    if levels[-1] > 7:
        raise ValueError(f"image size {size} does not halve down to a 4..7 px grid; use 28, 32, 64 or 128")
    return levels


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN -> LeakyReLU -> conv3x3, twice) with a 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution by 2x2 average pooling (the 'down' of Eq. 3)."""
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double the resolution by nearest-neighbour repetition (exact inverse of downsample on constants)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class PerceptualAutoencoder(nn.Module):
    """Residual autoencoder that can be grown progressively.

    channels : 1 (grayscale) or 3 (RGB); size : 28, 32, 64 or 128 px.
    widths   : one int (same width at every level) or one width per level, highest resolution first.
    latent   : bottleneck channels; latent_spatial : bottleneck grid (1 = a vector of ``latent``
               numbers as in the authors' 1x1x16 setting, or the base grid size for a spatial code).
    """

    def __init__(self, channels: int = 1, size: int = 64, widths: int | list[int] = 16, latent: int = 16,
                 latent_spatial: int = 1):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.levels = resolution_levels(size)
        n = len(self.levels)
        widths = [widths] * n if isinstance(widths, int) else list(widths)
        if len(widths) != n:
            raise ValueError(f"{size} px has {n} resolution levels {self.levels}; got {len(widths)} widths")
        base = self.levels[-1]
        if latent_spatial not in (1, base):
            raise ValueError(f"latent_spatial must be 1 or the base grid {base}, got {latent_spatial}")
        self.channels, self.size, self.widths = channels, size, widths
        self.latent, self.latent_spatial, self.base = latent, latent_spatial, base
        # encoder level i (i < n-1): res levels[i] -> levels[i+1]; decoder level i: the reverse
        self.from_image = nn.ModuleList([nn.Conv2d(channels, w, 1) for w in widths])
        self.to_image = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(w), nn.LeakyReLU(0.2), nn.Conv2d(w, channels, 1))
                                       for w in widths])
        self.enc = nn.ModuleList([PreActBlock(widths[i], widths[i + 1]) for i in range(n - 1)])
        self.dec = nn.ModuleList([PreActBlock(widths[i + 1], widths[i]) for i in range(n - 1)])
        wb = widths[-1]
        self.enc_base = PreActBlock(wb, wb)
        self.dec_base = PreActBlock(wb, wb)
        if latent_spatial == 1:
            self.to_latent = nn.Sequential(nn.BatchNorm2d(wb), nn.LeakyReLU(0.2), nn.Flatten(),
                                           nn.Linear(wb * base * base, latent))
            self.from_latent = nn.Linear(latent, wb * base * base)
        else:
            self.to_latent = nn.Sequential(nn.BatchNorm2d(wb), nn.LeakyReLU(0.2), nn.Conv2d(wb, latent, 1))
            self.from_latent = nn.Conv2d(latent, wb * 1, 1)

    def level_of(self, res: int) -> int:
        if res not in self.levels[:-1] and res != self.levels[-1]:
            raise ValueError(f"resolution {res} is not one of this network's levels {self.levels}")
        return self.levels.index(res)

    def encode(self, x: torch.Tensor, res: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        res = res or self.size
        if x.shape[-1] != res or x.shape[1] != self.channels:
            raise ValueError(f"expected input (N, {self.channels}, {res}, {res}), got {tuple(x.shape)}")
        top = self.level_of(res)
        h = self.from_image[top](x)
        n = len(self.levels)
        if top < n - 1:
            h = downsample(self.enc[top](h))
            if alpha < 1.0:  # fade-in: blend with the image entering one level lower
                h = alpha * h + (1.0 - alpha) * self.from_image[top + 1](downsample(x))
            for i in range(top + 1, n - 1):
                h = downsample(self.enc[i](h))
        z = self.to_latent(self.enc_base(h))
        return z

    def decode(self, z: torch.Tensor, res: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        res = res or self.size
        top = self.level_of(res)
        n = len(self.levels)
        if self.latent_spatial == 1:
            h = self.from_latent(z).view(len(z), self.widths[-1], self.base, self.base)
        else:
            h = self.from_latent(z)
        h = self.dec_base(h)
        for i in range(n - 2, top, -1):
            h = self.dec[i](upsample(h))
        if top == n - 1:
            return self.to_image[top](h)
        out = self.to_image[top](self.dec[top](upsample(h)))
        if alpha < 1.0:  # fade-in: blend with the previous level's output, upsampled
            out = alpha * out + (1.0 - alpha) * upsample(self.to_image[top + 1](h))
        return out

    def forward(self, x: torch.Tensor, res: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.decode(self.encode(x, res, alpha), res or self.size, alpha)


class Critic(nn.Module):
    """WGAN-GP critic for the adversarial ablation rows (no batch norm, as the gradient penalty requires)."""

    def __init__(self, channels: int = 1, size: int = 64, width: int = 32):
        super().__init__()
        layers, c, r = [], channels, size
        while r > 4:
            w = min(width * (1 + len(layers) // 2), 256)
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2)]
            c, r = w, r // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * r * r, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)

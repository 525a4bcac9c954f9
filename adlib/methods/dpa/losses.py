"""DPA's losses: relative-perceptual-L1 (Eq. 1-2), plain L1, and the WGAN-GP terms of the ablation.

Relative-perceptual-L1 between an image x and its reconstruction y at one backbone layer:

    f^(x) = (f(x) - mu) / sigma                       (Eq. 2, per channel; mu, sigma from natural images)
    L(x, y) = || f^(x) - f^(y) ||_1 / || f^(x) ||_1     (Eq. 1, per image)

Scaling sigma by any c > 0 scales numerator and denominator by 1/c alike, so L does not depend on the
scale of sigma (only on the relative weighting of the channels); it does depend on mu.
The same per-image quantity is the anomaly score.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-8


def normalise(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Eq. 2: per-channel standardisation with reference statistics of shape (C,)."""
    return (features - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def relative_perceptual_l1(target_hat: torch.Tensor, recon_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 1 per image on already-normalised features (N, C, h, w) -> (N,)."""
    num = (target_hat - recon_hat).abs().flatten(1).sum(1)
    den = target_hat.abs().flatten(1).sum(1)
    return num / (den + EPS)


def relative_perceptual_l1_map(target_hat: torch.Tensor, recon_hat: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel share of Eq. 1, upsampled to ``size``: (N, size, size); its spatial mean is the score."""
    h, w = target_hat.shape[-2:]
    den = target_hat.abs().flatten(1).sum(1).view(-1, 1, 1, 1) + EPS
    per_pixel = (target_hat - recon_hat).abs().sum(1, keepdim=True) * (h * w) / den
    return F.interpolate(per_pixel, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def l1_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(1)


@lru_cache(maxsize=None)
def _extractor(arch: str, layers: tuple[str, ...], weights: str, seed: int):
    """One frozen extractor per (arch, layer set, weights), shared by every detector in the process."""
    from ...backbones import FeatureExtractor

    ext = FeatureExtractor(arch, list(layers), weights=weights, seed=seed)
    ext.eval()
    for p in ext.parameters():
        p.requires_grad_(False)
    return ext


@lru_cache(maxsize=None)
def _resolved(arch: str, weights: str) -> str:
    """Resolve 'auto' once per process (it may probe the network)."""
    from ...backbones import resolve_weights

    return resolve_weights(arch, weights) if weights == "auto" else weights


@lru_cache(maxsize=None)
def _statistics(arch: str, layer: str, weights: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ...backbones import feature_statistics

    mean, std = feature_statistics(_extractor(arch, (layer,), weights, seed), layer)
    return mean.detach().float().clone(), std.detach().float().clamp_min(1e-6).clone()


class PerceptualLoss(nn.Module):
    """Relative-perceptual-L1 on one or more layers of a frozen backbone (mean over the layers).

    The backbone runs only up to the deepest requested layer (one extractor per layer set); target
    features are computed under no_grad, reconstruction features with gradients w.r.t. the input only.
    """

    def __init__(self, arch: str = "vgg19", weights: str = "auto", seed: int = 0):
        super().__init__()
        self.arch, self.weights, self.seed = arch, weights, seed
        self.device = torch.device("cpu")

    @property
    def weights_source(self) -> str:
        return _resolved(self.arch, self.weights)

    @property
    def weights_info(self):
        """The loaded weights (source, file, SHA-256) of this loss's backbone."""
        from ...backbones import LAYERS

        return _extractor(self.arch, (next(iter(LAYERS[self.arch])),), self.weights, self.seed).info

    def _stats(self, layer: str):
        mean, std = _statistics(self.arch, layer, self.weights, self.seed)
        return mean.to(self.device), std.to(self.device)

    def extractor(self, layers: tuple[str, ...]):
        ext = _extractor(self.arch, tuple(layers), self.weights, self.seed)
        return ext.to(self.device)

    def to(self, device):  # the shared extractors are not submodules; move them on use
        self.device = torch.device(device)
        return self

    def normalised_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Eq. 2 features of x (float, any size >= 8 px). Unlike FeatureExtractor.forward, small images are
        NOT upsampled to 32 px: progressive growing compares 8 px images at relu1_2, as the paper does."""
        ext = self.extractor(tuple(layers))
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - ext.mean) / ext.std  # the backbone's own input normalisation
        if x.shape[-1] >= 32:  # channels_last pays off for the larger maps on CPU
            x = x.contiguous(memory_format=torch.channels_last)
        feats = ext.body(x)
        return {l: normalise(feats[l], *self._stats(l)) for l in layers}

    def per_image(self, x: torch.Tensor, recon: torch.Tensor, layers: tuple[str, ...],
                  target_features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Mean over ``layers`` of Eq. 1 per image; pass ``target_features`` to reuse them."""
        if target_features is None:
            with torch.no_grad():
                target_features = self.normalised_features(x, layers)
        recon_features = self.normalised_features(recon, layers)
        losses = [relative_perceptual_l1(target_features[l], recon_features[l]) for l in layers]
        return torch.stack(losses).mean(0)

    def maps(self, x: torch.Tensor, recon: torch.Tensor, layers: tuple[str, ...]) -> torch.Tensor:
        with torch.no_grad():
            t, r = self.normalised_features(x, layers), self.normalised_features(recon, layers)
            return torch.stack([relative_perceptual_l1_map(t[l], r[l], x.shape[-1]) for l in layers]).mean(0)


def critic_loss_wgan_gp(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP critic objective: E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_mix)|| - 1)^2]."""
    fake = fake.detach()
    eps = torch.rand(len(real), 1, 1, 1, device=real.device)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    return critic(fake).mean() - critic(real).mean() + gp_weight * penalty


def adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Generator side of WGAN: make the critic score the reconstruction as real."""
    return -critic(fake).mean()

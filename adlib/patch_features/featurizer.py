"""Patch features of a frozen backbone (WSCXR paper, Sec. II-B, Eq. 1-3): `PatchFeatureConfig` (recorded with
results), the channel alignment, neighbourhood aggregation and layer combination, and `PatchFeaturizer`, which
runs the backbone in batches and returns (N, h, w, dim) features."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from ..progress import progress_bar

from ..data.imageset import iter_float_batches


@dataclass(frozen=True)
class PatchFeatureConfig:
    """Which backbone, layers and sizes make the patch features (recorded with results)."""

    arch: str = "densenet121"
    layers: tuple[str, ...] = ("denseblock4",)  # the authors' layer
    weights: str = "auto"
    input_size: int | None = 256  # the authors' ZhangLab input size
    patch_size: int = 5  # p of Eq. 1-2 (authors: 5)
    dim: int = 1024  # feature dimension after channel alignment (authors: 1024)
    seed: int = 0  # only used by weights="random"

    def __post_init__(self):
        if isinstance(self.layers, str):
            object.__setattr__(self, "layers", (self.layers,))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number (p x p neighbourhood), got {self.patch_size}")
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")


def align_channels(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., C) -> (..., dim) by adaptive average pooling over the channel axis (identity when C == dim)."""
    if x.shape[-1] == dim:
        return x
    lead = x.shape[:-1]
    return F.adaptive_avg_pool1d(x.reshape(-1, 1, x.shape[-1]), dim).reshape(*lead, dim)


def aggregate_neighbourhood(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Eq. 1-2: average over the p x p neighbourhood of each position; x (N, C, h, w) -> same shape."""
    if patch_size == 1:
        return x
    return F.avg_pool2d(x, kernel_size=patch_size, stride=1, padding=patch_size // 2, count_include_pad=False)


def combine_layers(features: dict[str, torch.Tensor], layers, patch_size: int, dim: int) -> torch.Tensor:
    """{layer: (N, C_l, h_l, w_l)} -> (N, h, w, dim) on the grid of the largest layer (Eq. 1-3)."""
    maps = [features[name] for name in layers]
    h = max(m.shape[-2] for m in maps)
    w = max(m.shape[-1] for m in maps)
    aligned = []
    for m in maps:
        if m.shape[-2:] != (h, w):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        aligned.append(align_channels(m.permute(0, 2, 3, 1), dim))  # (N, h, w, dim) per layer
    combined = aligned[0] if len(aligned) == 1 else align_channels(torch.cat(aligned, dim=-1), dim)
    combined = aggregate_neighbourhood(combined.permute(0, 3, 1, 2), patch_size)
    return combined.permute(0, 2, 3, 1).contiguous()


class PatchFeaturizer:
    """Frozen backbone -> (N, h, w, dim) patch features; ``extract`` runs it in batches under no_grad."""

    def __init__(self, config: PatchFeatureConfig | None = None, **overrides):
        from ..backbones import FeatureExtractor

        self.config = config or PatchFeatureConfig(**overrides)
        if config is not None and overrides:
            self.config = PatchFeatureConfig(**{**asdict(config), **overrides})
        c = self.config
        self.extractor = FeatureExtractor(c.arch, list(c.layers), weights=c.weights, seed=c.seed,
                                          input_size=c.input_size)
        self.weights_source = self.extractor.weights_source

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return combine_layers(self.extractor(x), self.config.layers, self.config.patch_size, self.config.dim)

    @torch.no_grad()
    def extract_layers(self, images, batch_size: int = 32, progress: bool = True, desc: str = "features"
                       ) -> dict[str, torch.Tensor]:
        """Raw per-layer maps {layer: (N, C, h, w)} (to combine several ways without re-running the CNN)."""
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.config.layers}
        n = len(images)
        for batch in progress_bar(iter_float_batches(images, batch_size), total=-(-n // batch_size), desc=desc,
                          disable=not progress, leave=False, mininterval=2):
            for name, t in self.extractor(batch).items():
                parts[name].append(t.float())
        return {name: torch.cat(p) for name, p in parts.items()}

    @torch.no_grad()
    def extract(self, images, batch_size: int = 32, progress: bool = True, desc: str = "patch features"
                ) -> torch.Tensor:
        """(N, h, w, dim) patch features of ImageSet / uint8 / float [0,1] images."""
        if len(images) == 0:
            raise ValueError("no images to extract features from")
        parts = []
        n = len(images)
        for batch in progress_bar(iter_float_batches(images, batch_size), total=-(-n // batch_size), desc=desc,
                          disable=not progress, leave=False, mininterval=2):
            parts.append(self(batch))
        return torch.cat(parts)


def flatten_patches(features: torch.Tensor) -> torch.Tensor:
    """(N, h, w, D) -> (N*h*w, D)."""
    return features.reshape(-1, features.shape[-1])

"""SimpleNet (Liu et al., CVPR 2023): a feature adaptor, synthetic anomalous features made by adding Gaussian
noise to adapted normal features, and a discriminator that separates the two.

- Feature adaptor: one linear layer D -> D on the frozen patch features (``adlib.patch_features``, the same
  features PatchCore and WSCXR use in notebook 06; the original used WideResNet50 layers 2-3).
- Anomalous features: adapted normal feature + N(0, sigma^2 I). The original's sigma = 0.015 is tied to its
  feature scale; here sigma = ``noise_scale`` x the mean per-dimension standard deviation of the training
  features (a scale-free version of the same rule; 0.25 was chosen on the validation split of the synthetic
  phantoms, not on medical data).
- Discriminator: MLP (Linear, BatchNorm, LeakyReLU, Linear), truncated-L1 loss with margins 0.5:
  max(0, 0.5 - D(normal)) + max(0, 0.5 + D(noisy)); anomaly score of a patch = -D; image score = max.
- Adam (adaptor lr 1e-4, discriminator lr 2e-4, weight decay 1e-5). The epoch kept is the one with the best
  validation AUROC (the original evaluated on the test set).
"""
from __future__ import annotations

import torch
from torch import nn

from ..detectors import register
from ..patch_features import (PatchDiscriminator, PatchFeatureDetector, apply_patchwise, flatten_patches,
                              train_patch_scorer)


class SimpleNetHead(nn.Module):
    def __init__(self, dim: int, depth: int = 2, hidden: int = 1024):
        super().__init__()
        self.adaptor = nn.Linear(dim, dim)
        self.discriminator = PatchDiscriminator(dim, depth, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # anomaly score per patch (higher = more anomalous)
        return -self.discriminator(self.adaptor(x))


@register("simplenet")
class SimpleNetDetector(PatchFeatureDetector):
    def __init__(self, noise_scale: float = 0.25, depth: int = 2, hidden: int = 1024, epochs: int = 40,
                 batch_size: int = 512, lr_adaptor: float = 1e-4, lr_discriminator: float = 2e-4,
                 weight_decay: float = 1e-5, margin: float = 0.5, eval_every: int = 5, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if noise_scale <= 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale}")
        self.hp = dict(noise_scale=noise_scale, depth=depth, hidden=hidden, epochs=epochs, batch_size=batch_size,
                       lr_adaptor=lr_adaptor, lr_discriminator=lr_discriminator, weight_decay=weight_decay,
                       margin=margin, eval_every=eval_every, seed=seed)
        self.seed = seed
        self.head: SimpleNetHead | None = None
        self.noise_std: float | None = None
        self.history = None

    def fit_features(self, normal, val=None, anomalies=None, anomaly_classes=None, diagnostic=None):
        """Unsupervised: ``anomalies`` is ignored. val = (features, labels) chooses the epoch kept."""
        hp = self.hp
        patches = flatten_patches(normal).float().contiguous()
        self.noise_std = float(hp["noise_scale"] * patches.std(0).mean())
        torch.manual_seed(self.seed)
        self.head = SimpleNetHead(patches.shape[1], hp["depth"], hp["hidden"])
        optimizer = torch.optim.Adam([
            {"params": self.head.adaptor.parameters(), "lr": hp["lr_adaptor"]},
            {"params": self.head.discriminator.parameters(), "lr": hp["lr_discriminator"]}],
            weight_decay=hp["weight_decay"], foreach=True)
        head, noise_std, margin = self.head, self.noise_std, hp["margin"]

        def step_loss(normal_batch, gen):
            adapted = head.adaptor(normal_batch)
            noisy = adapted + noise_std * torch.randn(adapted.shape, generator=gen)
            d = head.discriminator(torch.cat([adapted, noisy]))
            b = len(normal_batch)
            return torch.relu(margin - d[:b]).mean() + torch.relu(margin + d[b:]).mean()

        self.fitted = True
        self.history = train_patch_scorer(head, optimizer, step_loss, patches, self.patch_scores,
                                          epochs=hp["epochs"], batch_size=hp["batch_size"], seed=self.seed,
                                          val=val, eval_every=hp["eval_every"], diagnostic=diagnostic,
                                          progress=self.progress, desc="SimpleNet")
        return self

    def patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        self.head.eval()
        return apply_patchwise(self.head, features)

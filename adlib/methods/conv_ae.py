"""A small convolutional autoencoder: the minimal reconstruction-based detector of notebook 00.

Score = mean squared reconstruction error per image; anomaly map = squared residual per pixel;
embedding = the bottleneck code. ``loss="l1"`` trains and scores with the mean absolute error instead (the
L1 auto-encoder of SALAD's Table I / Table III). Kept checkpoint: the lowest loss on held-out training normals
(``checkpoint_on="holdout_loss"``, explicit; see `adlib.reconstruction` for the other criteria).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import register
from ..reconstruction import ReconstructionDetector
from ..training import Phase, seed_everything


class ConvAutoencoder(nn.Module):
    """Strided-conv encoder to a latent vector, transposed-conv decoder back to the image."""

    def __init__(self, channels: int = 1, size: int = 28, latent: int = 32, width: int = 32):
        super().__init__()
        if size % 4:
            raise ValueError(f"ConvAutoencoder needs an image size divisible by 4 (e.g. 28, 32, 64), got {size}")
        self.depth, bottom = 0, size
        while bottom % 2 == 0 and bottom // 2 >= 4:  # halve down to a 4..7 px grid
            self.depth, bottom = self.depth + 1, bottom // 2
        widths = [min(width * 2**i, 256) for i in range(self.depth)]
        enc, c = [], channels
        for w in widths:
            enc += [nn.Conv2d(c, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        self.encoder = nn.Sequential(*enc)
        self.bottom = size // 2**self.depth
        self.to_latent = nn.Linear(c * self.bottom**2, latent)
        self.from_latent = nn.Linear(latent, c * self.bottom**2)
        dec = []
        for w in reversed([channels] + widths[:-1]):
            last = w == channels and len(dec) == 3 * (self.depth - 1)
            dec += [nn.ConvTranspose2d(c, w, 4, 2, 1)]
            if not last:
                dec += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.decoder = nn.Sequential(*dec, nn.Sigmoid())
        self._c = widths[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z).view(-1, self._c, self.bottom, self.bottom))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).pow(2).flatten(1).mean(1)


def mae_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(1)


LOSSES = {"l2": mse_per_image, "l1": mae_per_image}


@register("conv_ae")
class ConvAEDetector(ReconstructionDetector):
    """Train a ConvAutoencoder on normals with MSE (``loss="l2"``) or MAE (``"l1"``); anomalies reconstruct
    worse. The score is the same error per image."""

    score_batch_size = 256

    def __init__(self, latent: int = 32, width: int = 32, steps: int = 1000, batch_size: int = 64, lr: float = 1e-3,
                 seed: int = 0, holdout_fraction: float = 0.1, eval_every: int = 100, patience: int | None = 5,
                 checkpoint_on: str = "holdout_loss", checkpoint_path: str | None = None, device: str | None = None,
                 progress: bool = True, loss: str = "l2"):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.error = LOSSES[loss]
        self._setup(dict(loss=loss, latent=latent, width=width, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         holdout_fraction=holdout_fraction, eval_every=eval_every, patience=patience),
                    checkpoint_on=checkpoint_on, checkpoint_path=checkpoint_path, device=device, progress=progress)

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        self.channels, self.size = train.channels, train.size
        self.model = ConvAutoencoder(train.channels, train.size, hp["latent"], hp["width"]).to(self.device)
        fit_set, holdout = self._split(train)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        monitor, criterion = self._checkpoint_monitor(val, holdout, holdout_batch_size=hp["batch_size"])
        self.history = self._train({"model": self.model},
                                   [Phase("model", optimizer, lambda b, step: self._error(b).mean())], fit_set,
                                   monitor, criterion, desc="conv AE")
        return self

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        return self.error(self.model(batch), batch)

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode(batch)

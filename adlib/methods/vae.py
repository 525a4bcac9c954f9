"""Variational auto-encoder (Kingma & Welling 2014) as an anomaly detector: a baseline of SALAD's Table I.

Networks: the DCGAN encoder/decoder blocks of `adlib.gan` (conv 4x4 stride 2 + BatchNorm + LeakyReLU down to a
4 x 4 grid, mirrored by transposed convs, Tanh output; images in [-1, 1]); the encoder's last linear conv gives
the mean and log-variance of q(z|x) (``nz`` each). Loss per image: sum of squared pixel errors (a unit-variance
Gaussian decoder) + KL(q(z|x) || N(0, I)), ``beta`` = 1. Score: mean squared error between x and the
reconstruction from the posterior mean (the reconstruction error, as SALAD's paper describes its VAE
baseline). Checkpoint choice, eval-mode scoring and maps: `adlib.reconstruction.ReconstructionDetector`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import register
from ..gan import Decoder, Encoder, dcgan_depth, to_signed, to_unit
from ..reconstruction import ReconstructionDetector
from ..training import Phase, seed_everything, step_generator


class VAE(nn.Module):
    def __init__(self, channels: int, size: int, nz: int = 64, width: int = 32, max_width: int = 256):
        super().__init__()
        depth = dcgan_depth(size)
        self.encoder = Encoder(channels, size, 2 * nz, width, max_width, depth)
        self.decoder = Decoder(channels, size, nz, width, max_width, depth, "none")
        self.nz = nz

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).flatten(1).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z[..., None, None])

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        mu, logvar = self.posterior(x)
        z = mu if eps is None else mu + (0.5 * logvar).exp() * eps
        return self.decode(z), mu, logvar


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0):
    """Negative ELBO per batch: sum of squared errors per image + beta * KL, both averaged over the batch."""
    recon = (x - x_hat).pow(2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return recon + beta * kl, recon, kl


@register("vae")
class VAEDetector(ReconstructionDetector):
    """VAE trained on normals; score = reconstruction MSE from the posterior mean."""

    def __init__(self, nz: int = 64, width: int = 32, max_width: int = 256, beta: float = 1.0, steps: int = 2000,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0, holdout_fraction: float = 0.1,
                 max_holdout: int = 256, eval_every: int = 100, patience: int | None = None,
                 checkpoint_on: str = "auto", checkpoint_path: str | None = None, device: str | None = None,
                 progress: bool = True):
        self._setup(dict(nz=nz, width=width, max_width=max_width, beta=beta, steps=steps, batch_size=batch_size,
                         lr=lr, seed=seed, holdout_fraction=holdout_fraction, max_holdout=max_holdout,
                         eval_every=eval_every, patience=patience), checkpoint_on=checkpoint_on,
                    checkpoint_path=checkpoint_path, device=device, progress=progress)

    def _loss(self, batch: torch.Tensor, step: int):
        x = to_signed(batch)
        eps = torch.randn(len(x), self.hp["nz"], generator=step_generator(self.hp["seed"], step, 1)).to(self.device)
        x_hat, mu, logvar = self.model(x, eps)
        loss, recon, kl = vae_loss(x, x_hat, mu, logvar, self.hp["beta"])
        return loss, {"reconstruction": float(recon.detach()), "KL": float(kl.detach())}

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        self.channels, self.size = train.channels, train.size
        self.model = VAE(train.channels, train.size, hp["nz"], hp["width"], hp["max_width"]).to(self.device)
        fit_set, holdout = self._split(train)
        opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        monitor, criterion = self._checkpoint_monitor(val, holdout)
        self.history = self._train({"vae": self.model}, [Phase("vae", opt, self._loss)], fit_set, monitor, criterion,
                                   desc="VAE")
        return self

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch.to(self.device))
        return (self.model(x)[0] - x).pow(2).flatten(1).mean(1)

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return to_unit(self.model(to_signed(batch))[0])

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.posterior(to_signed(batch))[0]

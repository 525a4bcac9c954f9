"""Variational auto-encoder (Kingma & Welling 2014) as an anomaly detector: a baseline of SALAD's Table I.

Networks: the DCGAN encoder/decoder blocks of `adlib.gan` (conv 4x4 stride 2 + BatchNorm + LeakyReLU down to a
4 x 4 grid, mirrored by transposed convs, Tanh output; images in [-1, 1]); the encoder's last linear conv gives
the mean and log-variance of q(z|x) (``nz`` each). Loss per image: sum of squared pixel errors (a unit-variance
Gaussian decoder) + KL(q(z|x) || N(0, I)), ``beta`` = 1. Score: mean squared error between x and the
reconstruction from the posterior mean (the reconstruction error, as SALAD's paper describes its VAE
baseline). Kept checkpoint: best validation AUROC when ``fit`` gets a validation split, else the lowest loss on
held-out normals. BatchNorm in eval mode whenever anything is scored.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import Detector, register
from ..gan import Decoder, Encoder, dcgan_depth, to_signed, to_unit
from ..training import (Phase, TrainHistory, choose_device, holdout_loss_monitor, seed_everything, split_holdout,
                        step_generator, train_loop, validation_auroc_monitor)


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
class VAEDetector(Detector):
    """VAE trained on normals; score = reconstruction MSE from the posterior mean."""

    def __init__(self, nz: int = 64, width: int = 32, max_width: int = 256, beta: float = 1.0, steps: int = 2000,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0, holdout_fraction: float = 0.1,
                 max_holdout: int = 256, eval_every: int = 100, patience: int | None = None,
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True):
        self.hp = dict(nz=nz, width=width, max_width=max_width, beta=beta, steps=steps, batch_size=batch_size, lr=lr,
                       seed=seed, holdout_fraction=holdout_fraction, max_holdout=max_holdout, eval_every=eval_every,
                       patience=patience)
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.model: VAE | None = None
        self.history: TrainHistory | None = None

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
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], hp["seed"])
        holdout = holdout.sample(hp["max_holdout"], hp["seed"]) if len(holdout) else holdout
        opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        if val is not None and len(np.unique(val.labels)) == 2:
            monitor = validation_auroc_monitor(self.score, val, hp["eval_every"], hp["patience"])
        elif len(holdout):
            monitor = holdout_loss_monitor(lambda b, s: self._error(b).mean(), holdout, 128, self.device,
                                           hp["eval_every"], hp["patience"])
        else:
            monitor = None
        self.history = train_loop({"vae": self.model}, [Phase("vae", opt, self._loss)], fit_set, steps=hp["steps"],
                                  batch_size=hp["batch_size"], seed=hp["seed"], monitor=monitor,
                                  checkpoint_path=self.checkpoint_path, device=self.device, desc="VAE",
                                  progress=self.progress)
        return self

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch.to(self.device))
        return (self.model(x)[0] - x).pow(2).flatten(1).mean(1)

    @torch.no_grad()
    def _map(self, images, fn, batch_size: int = 128) -> list:
        return self._eval_batches(images, fn, (self.model,), batch_size)

    def score(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self._error(b).cpu())).double().numpy()

    def reconstruct(self, images) -> torch.Tensor:
        return torch.cat(self._map(images, lambda b: to_unit(self.model(to_signed(b))[0]).clamp(0, 1).cpu()))

    def anomaly_maps(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: (to_unit(self.model(to_signed(b))[0]) - b).pow(2).mean(1)
                                   .cpu())).numpy()

    def embed(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self.model.posterior(to_signed(b))[0].cpu())).numpy()

"""SSIM auto-encoder (Bergmann et al. 2018, "Improving unsupervised defect segmentation by applying structural
similarity to autoencoders"): the runner-up of SALAD's Table I.

A convolutional auto-encoder (the DCGAN encoder/decoder blocks of `adlib.gan`, down to a 4 x 4 grid, latent
``nz``; images in [-1, 1]) trained with 1 - SSIM (`pytorch_msssim.ssim`, Gaussian window 11, sigma 1.5, on images
mapped to [0, 1]; K1 = 0.01, K2 = 0.03). Score: 1 - SSIM(x, x_hat) per image (Bergmann et al. score per pixel
with the SSIM map; its mean over the image is this). Anomaly map: |x - x_hat| per pixel (pytorch_msssim gives
no per-pixel SSIM map, and we do not hand-write SSIM). Kept checkpoint: best validation AUROC when ``fit``
gets a validation split, else the lowest loss on held-out normals.
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ssim
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import Detector, register
from ..gan import Decoder, Encoder, dcgan_depth, to_signed, to_unit
from ..training import (Phase, TrainHistory, choose_device, holdout_loss_monitor, seed_everything, split_holdout,
                        train_loop, validation_auroc_monitor)


def dissimilarity(x: torch.Tensor, x_hat: torch.Tensor, win_size: int = 11) -> torch.Tensor:
    """1 - SSIM per image of [-1, 1] images (0 for identical images)."""
    win = min(win_size, x.shape[-1] - (1 - x.shape[-1] % 2))
    return 1.0 - ssim(to_unit(x), to_unit(x_hat), data_range=1.0, size_average=False, win_size=win, K=(0.01, 0.03))


class ConvAE(nn.Module):
    def __init__(self, channels: int, size: int, nz: int = 100, width: int = 32, max_width: int = 256):
        super().__init__()
        depth = dcgan_depth(size)
        self.encoder = Encoder(channels, size, nz, width, max_width, depth)
        self.decoder = Decoder(channels, size, nz, width, max_width, depth, "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register("ssim_ae")
class SSIMAEDetector(Detector):
    """Auto-encoder trained with the SSIM loss; score = 1 - SSIM(x, x_hat)."""

    def __init__(self, nz: int = 100, width: int = 32, max_width: int = 256, win_size: int = 11, steps: int = 2000,
                 batch_size: int = 64, lr: float = 2e-4, seed: int = 0, holdout_fraction: float = 0.1,
                 max_holdout: int = 256, eval_every: int = 100, patience: int | None = None,
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True):
        self.hp = dict(nz=nz, width=width, max_width=max_width, win_size=win_size, steps=steps, batch_size=batch_size,
                       lr=lr, seed=seed, holdout_fraction=holdout_fraction, max_holdout=max_holdout,
                       eval_every=eval_every, patience=patience)
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.model: ConvAE | None = None
        self.history: TrainHistory | None = None

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch.to(self.device))
        return dissimilarity(x, self.model(x), self.hp["win_size"])

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        self.channels, self.size = train.channels, train.size
        self.model = ConvAE(train.channels, train.size, hp["nz"], hp["width"], hp["max_width"]).to(self.device)
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], hp["seed"])
        holdout = holdout.sample(hp["max_holdout"], hp["seed"]) if len(holdout) else holdout
        opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"], betas=(0.5, 0.999))
        if val is not None and len(np.unique(val.labels)) == 2:
            monitor = validation_auroc_monitor(self.score, val, hp["eval_every"], hp["patience"])
        elif len(holdout):
            monitor = holdout_loss_monitor(lambda b, s: self._error(b).mean(), holdout, 128, self.device,
                                           hp["eval_every"], hp["patience"])
        else:
            monitor = None
        self.history = train_loop({"autoencoder": self.model}, [Phase("autoencoder", opt,
                                                                       lambda b, s: self._error(b).mean())],
                                  fit_set, steps=hp["steps"], batch_size=hp["batch_size"], seed=hp["seed"],
                                  monitor=monitor, checkpoint_path=self.checkpoint_path, device=self.device,
                                  desc="SSIM-AE", progress=self.progress)
        return self

    @torch.no_grad()
    def _map(self, images, fn, batch_size: int = 128) -> list:
        return self._eval_batches(images, fn, (self.model,), batch_size)

    def score(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self._error(b).cpu())).double().numpy()

    def reconstruct(self, images) -> torch.Tensor:
        return torch.cat(self._map(images, lambda b: to_unit(self.model(to_signed(b))).clamp(0, 1).cpu()))

    def anomaly_maps(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: (to_unit(self.model(to_signed(b))) - b).abs().mean(1).cpu())).numpy()

    def embed(self, images) -> np.ndarray:
        return torch.cat(self._map(images, lambda b: self.model.encoder(to_signed(b)).flatten(1).cpu())).numpy()

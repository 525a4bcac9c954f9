"""SSIM auto-encoder (Bergmann et al. 2018, "Improving unsupervised defect segmentation by applying structural
similarity to autoencoders"): the runner-up of SALAD's Table I.

A convolutional auto-encoder (the DCGAN encoder/decoder blocks of `adlib.gan`, down to a 4 x 4 grid, latent
``nz``; images in [-1, 1]) trained with 1 - SSIM (`pytorch_msssim.ssim`, Gaussian window 11, sigma 1.5, on images
mapped to [0, 1]; K1 = 0.01, K2 = 0.03). Score: 1 - SSIM(x, x_hat) per image (Bergmann et al. score per pixel
with the SSIM map; its mean over the image is this). Anomaly map: |x - x_hat| per pixel (pytorch_msssim gives
no per-pixel SSIM map, and we do not hand-write SSIM). Checkpoint choice, eval-mode scoring and maps:
`adlib.reconstruction.ReconstructionDetector`.
"""
from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import register
from ..gan import Decoder, Encoder, dcgan_depth, to_signed, to_unit
from ..reconstruction import ReconstructionDetector
from ..training import Phase, seed_everything


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
class SSIMAEDetector(ReconstructionDetector):
    """Auto-encoder trained with the SSIM loss; score = 1 - SSIM(x, x_hat)."""

    map_error = "abs"

    def __init__(self, nz: int = 100, width: int = 32, max_width: int = 256, win_size: int = 11, steps: int = 2000,
                 batch_size: int = 64, lr: float = 2e-4, seed: int = 0, holdout_fraction: float = 0.1,
                 max_holdout: int = 256, eval_every: int = 100, patience: int | None = None,
                 checkpoint_on: str = "auto", checkpoint_path: str | None = None, device: str | None = None,
                 progress: bool = True):
        self._setup(dict(nz=nz, width=width, max_width=max_width, win_size=win_size, steps=steps,
                         batch_size=batch_size, lr=lr, seed=seed, holdout_fraction=holdout_fraction,
                         max_holdout=max_holdout, eval_every=eval_every, patience=patience),
                    checkpoint_on=checkpoint_on, checkpoint_path=checkpoint_path, device=device, progress=progress)

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch.to(self.device))
        return dissimilarity(x, self.model(x), self.hp["win_size"])

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        self.channels, self.size = train.channels, train.size
        self.model = ConvAE(train.channels, train.size, hp["nz"], hp["width"], hp["max_width"]).to(self.device)
        fit_set, holdout = self._split(train)
        opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"], betas=(0.5, 0.999))
        monitor, criterion = self._checkpoint_monitor(val, holdout)
        self.history = self._train({"autoencoder": self.model},
                                   [Phase("autoencoder", opt, lambda b, s: self._error(b).mean())], fit_set, monitor,
                                   criterion, desc="SSIM-AE")
        return self

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return to_unit(self.model(to_signed(batch)))

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(to_signed(batch))

"""MemAE: memory-augmented auto-encoder (Gong et al., ICCV 2019), a baseline beside SALAD (published ZhangLab
number 77.8 +- 1.4 AUROC, collected in the PPAD repository's README) and a building block MADDR compares with.

Encoder and decoder: the DCGAN blocks of `adlib.gan` (down to a 4 x 4 grid, linear conv to an ``nz``-vector;
images in [-1, 1]). Between them, a memory of ``slots`` learned items m_i (Gong et al.: 100 for MNIST).
Addressing (Gong et al. Eqs. 4-7): w_i = softmax_i(cos(z, m_i)); hard shrinkage
w_i <- max(w_i - lambda, 0) * w_i / (|w_i - lambda| + eps) with lambda = ``shrink`` / slots (the paper: lambda in
[1/N, 3/N]; default 1/N), then L1 renormalisation, so the weights sum to 1; z_hat = sum_i w_i m_i is decoded.
Here each image is one query (the latent vector; Gong et al. query every position of a feature map).
Loss: mean squared reconstruction error + ``entropy_weight`` (0.0002, Gong et al.) * mean entropy of w.
Score: reconstruction MSE per image. Checkpoint choice, eval-mode
scoring and maps: `adlib.reconstruction.ReconstructionDetector`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imageset import ImageSet
from ..detectors import register
from ..gan import Decoder, Encoder, dcgan_depth, to_signed, to_unit
from ..reconstruction import ReconstructionDetector
from ..training import Phase, seed_everything


class Memory(nn.Module):
    """``slots`` learned items of size ``dim``; `address` gives the shrunk, renormalised weights."""

    def __init__(self, slots: int, dim: int, shrink: float = 1.0, eps: float = 1e-12):
        super().__init__()
        self.items = nn.Parameter(torch.empty(slots, dim))
        nn.init.uniform_(self.items, -1.0 / dim**0.5, 1.0 / dim**0.5)
        self.threshold = shrink / slots
        self.eps = eps

    def address(self, z: torch.Tensor) -> torch.Tensor:
        """(N, dim) queries -> (N, slots) weights, each row >= 0 and summing to 1."""
        w = F.softmax(F.linear(F.normalize(z, dim=1), F.normalize(self.items, dim=1)), dim=1)
        if self.threshold > 0:
            w = F.relu(w - self.threshold) * w / ((w - self.threshold).abs() + self.eps)
            w = w / w.sum(1, keepdim=True).clamp_min(self.eps)
        return w

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.address(z)
        return w @ self.items, w


def entropy(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over queries of -sum_i w_i log w_i."""
    return (-w * (w + eps).log()).sum(1).mean()


class MemAE(nn.Module):
    def __init__(self, channels: int, size: int, nz: int = 100, slots: int = 100, width: int = 32,
                 max_width: int = 256, shrink: float = 1.0):
        super().__init__()
        depth = dcgan_depth(size)
        self.encoder = Encoder(channels, size, nz, width, max_width, depth)
        self.memory = Memory(slots, nz, shrink)
        self.decoder = Decoder(channels, size, nz, width, max_width, depth, "none")

    def forward(self, x: torch.Tensor):
        z = self.encoder(x).flatten(1)
        z_hat, w = self.memory(z)
        return self.decoder(z_hat[..., None, None]), w


@register("memae")
class MemAEDetector(ReconstructionDetector):
    """Memory-augmented auto-encoder; score = reconstruction MSE."""

    latent_phase = "memae"  # latent declaration (MADDR): z = the encoder's code, before memory addressing

    def __init__(self, nz: int = 100, slots: int = 100, width: int = 32, max_width: int = 256, shrink: float = 1.0,
                 entropy_weight: float = 2e-4, steps: int = 2000, batch_size: int = 64, lr: float = 1e-4,
                 seed: int = 0, holdout_fraction: float = 0.1, max_holdout: int = 256, eval_every: int = 100,
                 patience: int | None = None, checkpoint_on: str = "auto", checkpoint_path: str | None = None,
                 device: str | None = None, progress: bool = True):
        self._setup(dict(nz=nz, slots=slots, width=width, max_width=max_width, shrink=shrink,
                         entropy_weight=entropy_weight, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         holdout_fraction=holdout_fraction, max_holdout=max_holdout, eval_every=eval_every,
                         patience=patience), checkpoint_on=checkpoint_on, checkpoint_path=checkpoint_path,
                    device=device, progress=progress)

    def _loss(self, batch: torch.Tensor, step: int):
        x = to_signed(batch)
        z = self.model.encoder(x).flatten(1)  # = self.model(x), with z kept for a latent hook
        self.emit_latent(z)
        z_hat, w = self.model.memory(z)
        x_hat = self.model.decoder(z_hat[..., None, None])
        recon, ent = (x_hat - x).pow(2).mean(), entropy(w)
        return recon + self.hp["entropy_weight"] * ent, {"reconstruction": float(recon.detach()),
                                                          "entropy": float(ent.detach())}

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch.to(self.device))
        return (self.model(x)[0] - x).pow(2).flatten(1).mean(1)

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        self.channels, self.size = train.channels, train.size
        self.model = MemAE(train.channels, train.size, hp["nz"], hp["slots"], hp["width"], hp["max_width"],
                           hp["shrink"]).to(self.device)
        fit_set, holdout = self._split(train)
        opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        monitor, criterion = self._checkpoint_monitor(val, holdout)
        phases = self.with_latent_hook([Phase("memae", opt, self._loss)], fit_set)
        self.history = self._train({"memae": self.model}, phases, fit_set, monitor, criterion, desc="MemAE")
        return self

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        return to_unit(self.model(to_signed(batch))[0])

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(to_signed(batch))

    def latent_dim(self) -> int:
        return self.hp["nz"]

    def encode_latent(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(to_signed(batch))

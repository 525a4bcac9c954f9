"""AnoGAN (Schlegl et al. 2017), a baseline of the CCB-AAE paper (Tables 1-5).

Training: a DCGAN on normal images only (generator = the G_D blocks of `adlib.gan` without skips
or dropout, discriminator = the DCGAN discriminator, both with the standard DCGAN depth down to a 4 x 4 grid,
`adlib.gan.dcgan_depth`; binary cross-entropy for D, the non-saturating loss for G;
Adam lr 2e-4, betas 0.5/0.999). There is no model selection: GAN losses do not tell which step is best, and a
validation-AUROC monitor would need a latent search per evaluation; the last step is kept.

Scoring: for each test image x a latent z is searched so that G(z) resembles x: ``search_steps`` Adam steps
(lr ``search_lr``) on z minimising (1 - lam) R + lam D_f, with the residual R = sum |x - G(z)| and the
discrimination loss D_f = sum |f(x) - f(G(z))| (f: D's features), lam = 0.1 (Schlegl et al.). The anomaly
score is that loss after the last step. Schlegl et al. used 500 steps; the default here is 50 (bounded, and
reported). Images are searched in batches; each image's z gets only its own gradient (the batch loss is a sum)
and starts from a draw seeded by (seed, image content), so a score does not depend on the batch or order it
is scored in. The cost of the search is recorded (`search_seconds_per_image`).
"""
from __future__ import annotations

import time
import zlib

import numpy as np
import torch

from ..data.imageset import ImageSet, checked_float_batches
from ..detectors import Detector, register
from ..training import (DivergenceGuard, Phase, TrainHistory, choose_device, seed_everything, step_generator,
                        train_loop)
from ..gan import Decoder, Discriminator, dcgan_depth, discriminator_bce, frozen, generator_bce, to_signed, to_unit


@register("anogan")
class AnoGANDetector(Detector):
    """DCGAN + per-image latent search; score = (1 - lam) residual + lam discrimination loss."""

    def __init__(self, nz: int = 100, width: int = 64, max_width: int = 512, depth: int | None = None,
                 steps: int = 2000, batch_size: int = 64, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 search_steps: int = 50, search_lr: float = 0.05, lam: float = 0.1, search_batch: int = 256,
                 seed: int = 0, collapse_window: int = 200, checkpoint_path: str | None = None,
                 device: str | None = None, progress: bool = True):
        if search_steps < 1:
            raise ValueError(f"search_steps must be >= 1, got {search_steps}")
        self.hp = dict(nz=nz, width=width, max_width=max_width, depth=depth, steps=steps, batch_size=batch_size,
                       lr=lr, betas=tuple(betas), search_steps=search_steps, search_lr=search_lr, lam=lam,
                       search_batch=search_batch, seed=seed, collapse_window=collapse_window)
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.generator: Decoder | None = None
        self.discriminator: Discriminator | None = None
        self.history: TrainHistory | None = None
        self.search_seconds, self.search_images = 0.0, 0

    def _z(self, n: int, step: int) -> torch.Tensor:
        return torch.randn(n, self.hp["nz"], 1, 1, generator=step_generator(self.hp["seed"], step, 13)).to(self.device)

    def _discriminator_loss(self, batch: torch.Tensor, step: int):
        x = to_signed(batch)
        with torch.no_grad():
            fake = self.generator(self._z(len(x), step))
        return discriminator_bce(self.discriminator(x)[0], self.discriminator(fake)[0])

    def _generator_loss(self, batch: torch.Tensor, step: int):
        with frozen(self.discriminator):
            return generator_bce(self.discriminator(self.generator(self._z(len(batch), step)))[0])

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        seed_everything(hp["seed"])
        c, s = train.channels, train.size
        self.channels, self.size = c, s
        self.depth = hp["depth"] or dcgan_depth(s)
        self.generator = Decoder(c, s, hp["nz"], hp["width"], hp["max_width"], self.depth, "none").to(self.device)
        self.discriminator = Discriminator(c, s, hp["width"], hp["max_width"], self.depth).to(self.device)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr"], betas=hp["betas"])
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp["lr"], betas=hp["betas"])
        phases = [Phase("discriminator", opt_d, self._discriminator_loss),
                  Phase("generator", opt_g, self._generator_loss)]
        self.history = train_loop({"generator": self.generator, "discriminator": self.discriminator}, phases, train,
                                  steps=hp["steps"], batch_size=hp["batch_size"], seed=hp["seed"],
                                  divergence=DivergenceGuard("discriminator", collapse_window=hp["collapse_window"]),
                                  checkpoint_path=self.checkpoint_path, device=self.device, desc="AnoGAN (DCGAN)",
                                  progress=self.progress)
        return self

    # ----- latent search ------------------------------------------------------------------------------
    def _initial_z(self, batch: torch.Tensor) -> torch.Tensor:
        """One N(0, I) draw per image, seeded by (seed, CRC32 of the image's 8-bit pixels)."""
        pixels = (batch * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        zs = [torch.randn(self.hp["nz"], 1, 1, generator=torch.Generator().manual_seed(
            self.hp["seed"] * 1_000_003 + zlib.crc32(p.tobytes()))) for p in pixels]
        return torch.stack(zs).to(self.device)

    def search(self, images) -> dict[str, torch.Tensor]:
        """Latent search for every image; returns z, G(z) in [0, 1], residual, discrimination loss and score."""
        if self.generator is None:
            raise RuntimeError("call fit() before scoring")
        G, D = self.generator.eval(), self.discriminator.eval()
        with frozen(G, D):  # gradients reach z only; the networks' flags come back afterwards
            return self._search(images, G, D)

    def _search(self, images, G, D) -> dict[str, torch.Tensor]:
        hp = self.hp
        out = {k: [] for k in ("z", "x_hat", "residual", "discrimination", "score")}
        t0, n = time.perf_counter(), 0
        for b in checked_float_batches(images, hp["search_batch"], channels=self.channels, size=self.size,
                                       who=self.name):
            x = to_signed(b.to(self.device))
            with torch.no_grad():
                f_x = D(x)[1]
            z = self._initial_z(b).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=hp["search_lr"])
            for it in range(hp["search_steps"] + 1):
                with torch.enable_grad():
                    g = G(z)
                    residual = (x - g).abs().flatten(1).sum(1)
                    disc = (f_x - D(g)[1]).abs().sum(1)
                    loss = (1 - hp["lam"]) * residual + hp["lam"] * disc
                    if it == hp["search_steps"]:  # the loss at the final z is the score
                        break
                    opt.zero_grad(set_to_none=True)
                    loss.sum().backward()  # a sum: each z gets its own image's gradient only
                    opt.step()
            out["z"].append(z.detach().flatten(1).cpu())
            out["x_hat"].append(to_unit(g.detach()).clamp(0, 1).cpu())
            out["residual"].append(residual.detach().cpu())
            out["discrimination"].append(disc.detach().cpu())
            out["score"].append(loss.detach().cpu())
            n += len(b)
        self.search_seconds += time.perf_counter() - t0
        self.search_images += n
        return {k: torch.cat(v) for k, v in out.items()}

    @property
    def search_seconds_per_image(self) -> float:
        return self.search_seconds / self.search_images if self.search_images else float("nan")

    def score(self, images) -> np.ndarray:
        return self.search(images)["score"].double().numpy()

    def reconstruct(self, images) -> torch.Tensor:
        return self.search(images)["x_hat"]

    def anomaly_maps(self, images) -> np.ndarray:
        """|x - G(z*)| per pixel after the search, mean over channels, in [0, 1] units."""
        found = self.search(images)
        x = torch.cat(list(checked_float_batches(images, 1024, channels=self.channels, size=self.size)))
        return (found["x_hat"] - x).abs().mean(1).numpy()

    def embed(self, images) -> np.ndarray:
        return self.search(images)["z"].numpy()

"""One detector for the adversarial-autoencoder family, with the skip connections as a parameter:

  skip="none"   GANomaly (Akcay et al. 2018)        registered "ganomaly"
  skip="plain"  Skip-GANomaly (Akcay et al. 2019)   registered "skip_ganomaly"
  skip="ccb"    CCB-AAE (Zhang et al. 2022)          registered "ccb_aae"

Everything else is shared, so the variants differ only in the generator's connections (and, as in the
original methods, in where z and z_hat come from, see ``latent_source``). See the package docstring for the
choices made where the paper is silent.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ...data.imageset import ImageSet
from ...detectors import register
from ...metrics import auroc
from ...reconstruction import ReconstructionDetector
from ...training import DivergenceGuard, Phase, seed_everything
from .losses import LAMBDA_ADV, LAMBDA_LAT, LAMBDA_S, combine, discriminator_bce, generator_objective, image_error, \
    latent_error
from ...gan import PAPER_CCB_LENGTHS, SKIPS, AdversarialAutoencoder, Discriminator, count_parameters, frozen, to_signed, \
    to_unit

ALPHA_GRID = tuple(float(a) for a in np.round(np.linspace(0.0, 1.0, 11), 2))
DEFAULT_ALPHA = 0.9  # Skip-GANomaly's weight of the image term, used when no validation split is given
LATENT_SOURCES = ("encoder", "discriminator")



def choose_alpha(image: np.ndarray, latent: np.ndarray, labels: np.ndarray, grid: Sequence[float] = ALPHA_GRID,
                 prefer: float = DEFAULT_ALPHA) -> tuple[float, pd.DataFrame]:
    """The alpha of Eq. 2 with the highest AUROC on labelled (validation) components; ties go to the alpha
    closest to ``prefer``. Returns (alpha, table of alpha vs AUROC)."""
    rows = [{"alpha": a, "val_AUROC": auroc(labels, combine(image, latent, a))} for a in grid]
    table = pd.DataFrame(rows)
    best = table["val_AUROC"].max()
    ties = table[table["val_AUROC"] >= best - 1e-12]
    alpha = float(ties.iloc[int(np.argmin(np.abs(ties["alpha"].to_numpy() - prefer)))]["alpha"])
    return alpha, table


class AdversarialAEDetector(ReconstructionDetector):
    """Adversarially trained autoencoder G = (G_E, connections, G_D) with discriminator D.

    skip          "none" | "plain" | "ccb" (default: the registered variant's).
    ccb_lengths   chain lengths per skip level, bottom to top (paper: [1, 2, 3, 4]; Tables 6/7 use x2 ... x8,
                  see `adlib.gan.scaled_ccb_lengths`).
    latent_source where z, z_hat of Eqs. 2/6 come from: "encoder" (z = G_E(x), z_hat = E(x_hat) with GANomaly's
                  second encoder E) or "discriminator" (z = f(x), z_hat = f(x_hat), D's features, as in
                  Skip-GANomaly and the CCB-AAE text: "D ... computes latent representations of input image and
                  reconstructed image"). Default: encoder for skip="none", discriminator otherwise.
    alpha         weight of the image term in Eq. 2; None = chosen on the validation AUROC in `fit` when a
                  validation split with both classes is given (grid ``alpha_grid``), else 0.9.
    Training: Adam (lr 2e-4, betas 0.5/0.999), batch 64, Eq. 7 weights 50/1/1, dropout 0.5 (paper values);
    ``steps`` optimisation steps of G then D. Checkpoint criterion (`adlib.reconstruction`): validation AUROC
    at the best alpha every ``eval_every`` steps, or the hold-out loss (lambda_s L_s + lambda_lat L_lat on
    held-out normals).
    """

    default_skip = "ccb"
    eval_modules = ("generator", "discriminator")
    # Latent declaration (MADDR, adlib.detectors.LatentHook): z = G_E(x), the generator's bottleneck (nz numbers),
    # computed in the "generator" phase. (For latent_source="discriminator" Eq. 2 compares D's features instead;
    # the declared code is still the generator's bottleneck, the one the decoder reads.)
    latent_phase = "generator"

    def __init__(self, skip: str | None = None, ccb_lengths: Sequence[int] = PAPER_CCB_LENGTHS,
                 latent_source: str | None = None, nz: int = 100, width: int = 64, max_width: int = 512,
                 depth: int | None = None, dropout: float = 0.5, dropout_blocks: int = 2, steps: int = 2000,
                 batch_size: int = 64, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 lambda_s: float = LAMBDA_S, lambda_adv: float = LAMBDA_ADV, lambda_lat: float = LAMBDA_LAT,
                 alpha: float | None = None, alpha_grid: Sequence[float] = ALPHA_GRID, seed: int = 0,
                 holdout_fraction: float = 0.1, max_holdout: int = 256, eval_every: int = 100,
                 patience: int | None = None, collapse_window: int = 200, checkpoint_on: str = "auto",
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True):
        skip = skip or self.default_skip
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        latent_source = latent_source or ("encoder" if skip == "none" else "discriminator")
        if latent_source not in LATENT_SOURCES:
            raise ValueError(f"latent_source must be one of {LATENT_SOURCES}, got {latent_source!r}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.skip, self.latent_source = skip, latent_source
        self._setup(dict(skip=skip, ccb_lengths=tuple(ccb_lengths), latent_source=latent_source, nz=nz, width=width,
                         max_width=max_width, depth=depth, dropout=dropout, dropout_blocks=dropout_blocks, steps=steps,
                         batch_size=batch_size, lr=lr, betas=tuple(betas), lambda_s=lambda_s, lambda_adv=lambda_adv,
                         lambda_lat=lambda_lat, alpha=alpha, seed=seed, holdout_fraction=holdout_fraction,
                         max_holdout=max_holdout, eval_every=eval_every, patience=patience,
                         collapse_window=collapse_window), checkpoint_on=checkpoint_on,
                    checkpoint_path=checkpoint_path, device=device, progress=progress)
        self.alpha_grid = tuple(alpha_grid)
        self.alpha = alpha
        self.alpha_table: pd.DataFrame | None = None
        self.norm = (1.0, 1.0)  # means of the image / latent components on held-out normals
        self._cache: tuple[int, torch.Tensor] | None = None

    # ----- construction -------------------------------------------------------------------------------
    def build(self, channels: int, size: int) -> None:
        hp = self.hp
        self.generator = AdversarialAutoencoder(
            channels, size, hp["nz"], hp["width"], hp["max_width"], hp["skip"], hp["ccb_lengths"], hp["dropout"],
            hp["dropout_blocks"], second_encoder=hp["latent_source"] == "encoder", depth=hp["depth"]).to(self.device)
        self.discriminator = Discriminator(channels, size, hp["width"], hp["max_width"], hp["depth"]).to(self.device)
        self.channels, self.size = channels, size

    # ----- losses -------------------------------------------------------------------------------------
    def _latents(self, x, x_hat, z, z_hat, f_real, f_fake):
        return (z, z_hat) if self.latent_source == "encoder" else (f_real, f_fake)

    def _generator_loss(self, batch: torch.Tensor, step: int):
        """Eq. 7 on one batch; D is only read (its parameters get no gradient here)."""
        G, D, hp = self.generator, self.discriminator, self.hp
        x = to_signed(batch)
        x_hat, z, z_hat = G(x)
        self.emit_latent(z)
        with frozen(D):
            with torch.no_grad():
                _, f_real = D(x)
            _, f_fake = D(x_hat)
        z, z_hat = self._latents(x, x_hat, z, z_hat, f_real, f_fake)
        self._cache = (step, x_hat.detach())
        return generator_objective(x, x_hat, z, z_hat, f_real, f_fake, hp["lambda_s"], hp["lambda_adv"],
                                   hp["lambda_lat"])

    def _discriminator_loss(self, batch: torch.Tensor, step: int):
        """-(Eq. 4): real inputs vs their reconstructions (made by G in this step's generator phase)."""
        x = to_signed(batch)
        if self._cache is not None and self._cache[0] == step and len(self._cache[1]) == len(x):
            fake = self._cache[1]
        else:
            with torch.no_grad():
                fake = self.generator(x)[0]
        logit_real, _ = self.discriminator(x)
        logit_fake, _ = self.discriminator(fake)
        loss = discriminator_bce(logit_real, logit_fake)
        return loss, {"D(x)": float(torch.sigmoid(logit_real.detach()).mean()),
                      "D(x_hat)": float(torch.sigmoid(logit_fake.detach()).mean())}

    def _holdout_objective(self, batch: torch.Tensor, step: int) -> torch.Tensor:
        image, latent = self._components_batch(batch)
        return self.hp["lambda_s"] * image.mean() + self.hp["lambda_lat"] * latent.mean()

    # ----- per-image components (eval mode) -----------------------------------------------------------
    def _components_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_signed(batch.to(self.device))
        x_hat, z, z_hat = self.generator(x)
        _, f_real = self.discriminator(x)
        _, f_fake = self.discriminator(x_hat)
        z, z_hat = self._latents(x, x_hat, z, z_hat, f_real, f_fake)
        return image_error(x, x_hat), latent_error(z, z_hat)

    def raw_components(self, images, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised per-image D1 (image MSE) and D2 (latent MSE) with every network in eval mode."""
        both = torch.cat(self._map(images, lambda b: torch.stack(self._components_batch(b), 1).cpu(), batch_size))
        both = both.double().numpy()
        return both[:, 0], both[:, 1]

    def score_components(self, images) -> dict[str, np.ndarray]:
        """D1 and D2 of Eq. 2 per image, each divided by its mean on held-out normal training images."""
        img, lat = self.raw_components(images)
        return {"image": img / self.norm[0], "latent": lat / self.norm[1]}

    # ----- training -----------------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        if len(train) < 4:
            raise ValueError(f"{self.name} needs at least a few normal training images, got {len(train)}")
        seed_everything(hp["seed"])
        self.build(train.channels, train.size)
        fit_set, holdout = self._split(train)
        self._norm_set = holdout if len(holdout) else train.sample(hp["max_holdout"], hp["seed"])
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp["lr"], betas=hp["betas"])
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr"], betas=hp["betas"])
        phases = self.with_latent_hook([Phase("generator", opt_g, self._generator_loss),
                                        Phase("discriminator", opt_d, self._discriminator_loss)], fit_set)
        use_val = val is not None and len(np.unique(val.labels)) == 2
        monitor, criterion = self._checkpoint_monitor(val, holdout, self._holdout_objective,
                                                      val_scores=self._best_alpha_scores)
        guard = DivergenceGuard(collapsed_phase="discriminator", collapse_window=hp["collapse_window"])
        self.history = self._train({"generator": self.generator, "discriminator": self.discriminator}, phases,
                                   fit_set, monitor, criterion, desc=f"{self.name} ({self.skip})", divergence=guard)
        self._cache = None
        self._update_norm()
        if hp["alpha"] is not None:
            self.alpha = hp["alpha"]
        elif use_val:
            comps = self.score_components(val)
            self.alpha, self.alpha_table = choose_alpha(comps["image"], comps["latent"], val.labels, self.alpha_grid)
        else:
            self.alpha = DEFAULT_ALPHA
        self.history.extras.update(alpha=self.alpha, alpha_chosen_on="validation" if (use_val and hp["alpha"] is None)
                                   else "fixed", latent_source=self.latent_source, skip=self.skip,
                                   generator_parameters=count_parameters(self.generator),
                                   discriminator_parameters=count_parameters(self.discriminator))
        return self

    def _update_norm(self) -> None:
        img, lat = self.raw_components(self._norm_set)
        self.norm = (max(float(img.mean()), 1e-12), max(float(lat.mean()), 1e-12))

    def _best_alpha_scores(self, val: ImageSet) -> np.ndarray:
        """Validation scores at the best alpha for the current weights (the checkpoint monitor's score)."""
        self._update_norm()
        comps = self.score_components(val)
        alpha, _ = choose_alpha(comps["image"], comps["latent"], val.labels, self.alpha_grid)
        return combine(comps["image"], comps["latent"], alpha)

    # ----- inference ----------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.generator is None:
            raise RuntimeError("call fit() before scoring")

    def score(self, images) -> np.ndarray:
        """Eq. 2: alpha * D1 + (1 - alpha) * D2 on normalised components."""
        comps = self.score_components(images)
        return combine(comps["image"], comps["latent"], self.alpha if self.alpha is not None else DEFAULT_ALPHA)

    def _scoring_modules(self) -> tuple:
        self._require_fitted()
        return self.generator, self.discriminator

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        image, latent = self._components_batch(batch)
        alpha = self.alpha if self.alpha is not None else DEFAULT_ALPHA
        return combine(image / self.norm[0], latent / self.norm[1], alpha)

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        """x_hat in [0, 1] units (anomaly maps: (x - x_hat)^2 per pixel, mean over channels)."""
        return to_unit(self.generator(to_signed(batch))[0])

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        """z of Eq. 2: G_E's bottleneck (latent_source="encoder") or D's features of x ("discriminator")."""
        x = to_signed(batch)
        if self.latent_source == "encoder":
            return self.generator.encoder(x)
        return self.discriminator(x)[1]

    def latent_dim(self) -> int:
        return self.hp["nz"]

    def encode_latent(self, batch: torch.Tensor) -> torch.Tensor:
        return self.generator.encoder(to_signed(batch))

    def config(self) -> dict:
        return {**self.hp, "alpha_used": self.alpha, "name": self.name}


@register("ganomaly")
class GANomaly(AdversarialAEDetector):
    """GANomaly: encoder-decoder-encoder, no skip connections; z = G_E(x), z_hat = E(x_hat)."""

    default_skip = "none"


@register("skip_ganomaly")
class SkipGANomaly(AdversarialAEDetector):
    """Skip-GANomaly: U-Net generator (plain skip connections); z, z_hat = D's features of x, x_hat."""

    default_skip = "plain"


@register("ccb_aae")
class CCBAAE(AdversarialAEDetector):
    """CCB-AAE (Zhang et al. 2022): skip connections replaced by chains of conv blocks, lengths [1, 2, 3, 4]."""

    default_skip = "ccb"

"""The SALAD detector (registered "salad"), with the ablation switches of the paper's Tables III-V.

image_loss         "ssim" (L_str, Eq. 4; default) | "l1" (Table III, image space)
feature_constraint "centre" (L_ct, Eq. 7; default) | "none" | "kl" (Table III, feature space)
self_supervision   "encoder" (M'_D separate, only M_E shared; the paper's choice) | "none" |
                   "shared_enc_dec" (M'_D = M_D) | "encoder_last_layers" (M'_D shares M_D's last
                   ``shared_last`` layers) - Table IV
perturbations      which of the three perturbations of Fig. 3 the restoration task draws from (default all
                   three, the paper's; e.g. ("inpaint",) for an exercise)
score              "feature" (A_F, default) | "image" (A_I) | "centre" (A_C) - Table V; `score_components`
                   gives all three from one model.

Training (`adlib.training.train_loop`, two phases per step): the encoder-decoder phase minimises Eq. 9 (M_E,
M_D and M'_D, one Adam), then the discriminator phase minimises Eq. 1 + Eq. 2 (D_I and D_F, one Adam). Adam
lr 2e-4 (paper), betas (0.5, 0.999) (CycleGAN's, whose loss weights the paper follows; the paper gives none);
the learning rate is constant for the first half of the steps and decays linearly to zero over the second
half (paper: 100 + 100 epochs). z ~ N(0, I) and the perturbations are drawn from generators seeded by
(seed, step), so runs are reproducible and resume exactly. The centre C (a buffer) moves once per step.
Checkpoint: the best validation AUROC of the chosen score (every ``eval_every`` steps) when ``fit`` gets a
validation split with both classes, else the lowest image loss on held-out normals; the paper trains 200
epochs and reports the last model (it does not say how it chose). Every network is in eval mode when scoring
(InstanceNorm keeps no running statistics, so a score never depends on the other images of its batch).
"""
from __future__ import annotations

import numpy as np
import torch

from ...data.imageset import ImageSet
from ...detectors import register
from ...gan import count_parameters, frozen, to_signed, to_unit
from ...reconstruction import ReconstructionDetector
from ...training import DivergenceGuard, Phase, seed_everything, step_generator
from . import losses as L
from .network import (Centre, FeatureDiscriminator, PatchDiscriminator, SaladDecoder, SaladEncoder,
                      SharedTailDecoder)
from .perturbations import KINDS as PERTURBATION_KINDS
from .perturbations import perturb

IMAGE_LOSSES = ("ssim", "l1")
FEATURE_CONSTRAINTS = ("centre", "none", "kl")
SELF_SUPERVISION = ("encoder", "none", "shared_enc_dec", "encoder_last_layers")
SCORES = ("feature", "image", "centre")


@register("salad")
class SALADDetector(ReconstructionDetector):
    """SALAD (Zhao et al., IEEE TMI 2021); see the module docstring for the options."""

    eval_modules = ("encoder", "decoder", "restorer", "image_d", "feature_d", "centre")
    map_error = "abs"  # |x - x_hat|: the residual images of Figs. 5/6

    def __init__(self, nz: int = 128, width: int = 64, max_width: int = 512, d_width: int = 64, d_hidden: int = 256,
                 steps: int = 2000, batch_size: int = 64, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 decay_start: float = 0.5, image_loss: str = "ssim", feature_constraint: str = "centre",
                 self_supervision: str = "encoder", shared_last: int = 2,
                 perturbations: tuple[str, ...] = PERTURBATION_KINDS, loss_weights: dict | None = None,
                 centre_rate: float = L.CENTRE_RATE, score: str = "feature", seed: int = 0,
                 holdout_fraction: float = 0.1, max_holdout: int = 256, eval_every: int = 100,
                 patience: int | None = None, collapse_window: int = 200, checkpoint_on: str = "auto",
                 checkpoint_path: str | None = None, device: str | None = None, progress: bool = True):
        for value, allowed, what in ((image_loss, IMAGE_LOSSES, "image_loss"),
                                     (feature_constraint, FEATURE_CONSTRAINTS, "feature_constraint"),
                                     (self_supervision, SELF_SUPERVISION, "self_supervision"),
                                     (score, SCORES, "score")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        perturbations = tuple(perturbations)
        if not perturbations or any(k not in PERTURBATION_KINDS for k in perturbations):
            raise ValueError(f"perturbations must be a non-empty subset of {PERTURBATION_KINDS}, got {perturbations!r}")
        weights = dict(L.WEIGHTS)
        weights.update(loss_weights or {})
        self._setup(dict(nz=nz, width=width, max_width=max_width, d_width=d_width, d_hidden=d_hidden, steps=steps,
                         batch_size=batch_size, lr=lr, betas=tuple(betas), decay_start=decay_start,
                         image_loss=image_loss, feature_constraint=feature_constraint,
                         self_supervision=self_supervision, shared_last=shared_last,
                         perturbations=perturbations, loss_weights=weights,
                         centre_rate=centre_rate, score=score, seed=seed, holdout_fraction=holdout_fraction,
                         max_holdout=max_holdout, eval_every=eval_every, patience=patience,
                         collapse_window=collapse_window), checkpoint_on=checkpoint_on,
                    checkpoint_path=checkpoint_path, device=device, progress=progress)
        self.score_kind = score
        self._cache = None

    # ----- construction -------------------------------------------------------------------------------
    def build(self, channels: int, size: int) -> None:
        hp = self.hp
        net = dict(nz=hp["nz"], width=hp["width"], max_width=hp["max_width"])
        self.encoder = SaladEncoder(channels, size, **net).to(self.device)
        self.decoder = SaladDecoder(channels, size, **net).to(self.device)
        ssl = hp["self_supervision"]
        if ssl == "none":
            self.restorer = None
        elif ssl == "shared_enc_dec":
            self.restorer = self.decoder
        elif ssl == "encoder":
            self.restorer = SaladDecoder(channels, size, **net).to(self.device)
        else:
            self.restorer = SharedTailDecoder(SaladDecoder(channels, size, **net), self.decoder,
                                              hp["shared_last"]).to(self.device)
        self.image_d = PatchDiscriminator(channels, size, hp["d_width"], hp["max_width"]).to(self.device)
        self.feature_d = FeatureDiscriminator(hp["nz"], hp["d_hidden"]).to(self.device)
        self.centre = Centre(hp["nz"]).to(self.device)
        self.channels, self.size = channels, size

    def models(self) -> dict[str, torch.nn.Module]:
        out = {"encoder": self.encoder, "decoder": self.decoder, "image_discriminator": self.image_d,
               "feature_discriminator": self.feature_d, "centre": self.centre}
        if self.restorer is not None and self.restorer is not self.decoder:
            out["restoration_decoder"] = self.restorer
        return out

    def _generator_params(self) -> list[torch.nn.Parameter]:
        unique = {}
        for m in (self.encoder, self.decoder, self.restorer):
            if m is not None:
                for p in m.parameters():
                    unique[id(p)] = p
        return list(unique.values())

    # ----- losses -------------------------------------------------------------------------------------
    def _z(self, n: int, step: int) -> torch.Tensor:
        return torch.randn(n, self.hp["nz"], generator=step_generator(self.hp["seed"], step, 1)).to(self.device)

    def _image_term(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return L.structure_loss(x, x_hat) if self.hp["image_loss"] == "ssim" else L.image_l1(x, x_hat)

    def _generator_loss(self, batch: torch.Tensor, step: int):
        """Eq. 9 on one batch; the discriminators are only read. Also moves the centre C (Eq. 7)."""
        hp = self.hp
        x = to_signed(batch)
        z = self._z(len(x), step)
        z_enc = self.encoder(x)  # z' = M_E(x)
        x_hat = self.decoder(z_enc)  # M_D(M_E(x))
        x_fake = self.decoder(z)  # x' = M_D(z)
        z_rec = self.encoder(x_fake)  # z_hat = M_E(M_D(z))
        with frozen(self.image_d, self.feature_d):
            terms = {"adv": L.adversarial_ls(self.feature_d(z_enc), self.image_d(x_fake))}
        terms["str"] = self._image_term(x, x_hat)
        terms["fea"] = L.feature_l1(z_rec, z)
        if hp["feature_constraint"] == "centre":
            terms["ct"] = L.centre_loss(z_enc, self.centre.c.clone())
        elif hp["feature_constraint"] == "kl":
            terms["ct"] = L.kl_batch(z_enc)
        if self.restorer is not None:
            x_s, _ = perturb(batch.detach().cpu(), step_generator(hp["seed"], step, 2), hp["perturbations"])
            restored = self.restorer(self.encoder(to_signed(x_s.to(self.device))))
            terms["self"] = L.image_l1(restored, x)
        loss = L.total_loss(terms, hp["loss_weights"])
        if hp["feature_constraint"] == "centre":
            L.update_centre(self.centre.c, z_enc, hp["centre_rate"])
        self._cache = (step, x_fake.detach(), z_enc.detach(), z)
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def _discriminator_loss(self, batch: torch.Tensor, step: int):
        """Eq. 1 + Eq. 2: D_I tells x from x' = M_D(z); D_F tells z ~ N(0, I) from z' = M_E(x)."""
        x = to_signed(batch)
        if self._cache is not None and self._cache[0] == step and len(self._cache[1]) == len(x):
            _, x_fake, z_enc, z = self._cache
        else:
            z = self._z(len(x), step)
            with torch.no_grad():
                x_fake, z_enc = self.decoder(z), self.encoder(x)
        l_di = L.discriminator_ls(self.image_d(x_fake), self.image_d(x))
        l_df = L.discriminator_ls(self.feature_d(z_enc), self.feature_d(z))
        return l_di + l_df, {"D_I": float(l_di.detach()), "D_F": float(l_df.detach())}

    # ----- training -----------------------------------------------------------------------------------
    def _schedule(self, optimizer):
        steps, start = self.hp["steps"], int(self.hp["decay_start"] * self.hp["steps"])

        def factor(s: int) -> float:
            return 1.0 if s < start else max(0.0, (steps - s) / max(1, steps - start))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        hp = self.hp
        if len(train) < 4:
            raise ValueError(f"salad needs at least a few normal training images, got {len(train)}")
        seed_everything(hp["seed"])
        self.build(train.channels, train.size)
        fit_set, holdout = self._split(train)
        opt_g = torch.optim.Adam(self._generator_params(), lr=hp["lr"], betas=hp["betas"])
        opt_d = torch.optim.Adam(list(self.image_d.parameters()) + list(self.feature_d.parameters()), lr=hp["lr"],
                                 betas=hp["betas"])
        phases = [Phase("encoder+decoder", opt_g, self._generator_loss, scheduler=self._schedule(opt_g)),
                  Phase("discriminators", opt_d, self._discriminator_loss, scheduler=self._schedule(opt_d))]
        monitor, criterion = self._checkpoint_monitor(
            val, holdout, lambda b, step: self._image_term(to_signed(b), self.decoder(self.encoder(to_signed(b)))))
        guard = DivergenceGuard(collapsed_phase="discriminators", collapse_window=hp["collapse_window"])
        self.history = self._train(self.models(), phases, fit_set, monitor, criterion, desc="SALAD", divergence=guard)
        self._cache = None
        self.history.extras.update(
            image_loss=hp["image_loss"], feature_constraint=hp["feature_constraint"],
            self_supervision=hp["self_supervision"], score=self.score_kind,
            generator_parameters=count_parameters(torch.nn.ModuleList([m for m in (self.encoder, self.decoder)])),
            centre_norm=float(self.centre.c.norm()))
        return self

    # ----- inference ----------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.encoder is None:
            raise RuntimeError("call fit() before scoring")

    def _scoring_modules(self) -> tuple:
        self._require_fitted()
        return tuple(self.models().values())

    def _components_batch(self, batch: torch.Tensor) -> torch.Tensor:
        x = to_signed(batch)
        z = self.encoder(x)  # z_t
        x_hat = self.decoder(z)  # x_hat_t
        z_hat = self.encoder(x_hat)  # z_hat_t
        return torch.stack([L.score_feature(z, z_hat), L.score_image(x, x_hat),
                            L.score_centre(z, self.centre.c)], 1).cpu()

    def score_components(self, images) -> dict[str, np.ndarray]:
        """A_F ("feature"), A_I ("image") and A_C ("centre") per image (Table V), from one pass."""
        both = torch.cat(self._map(images, self._components_batch)).double().numpy()
        return {name: both[:, i] for i, name in enumerate(SCORES)}

    def score(self, images) -> np.ndarray:
        return self.score_components(images)[self.score_kind]

    def _error(self, batch: torch.Tensor) -> torch.Tensor:
        return self._components_batch(batch)[:, SCORES.index(self.score_kind)]

    def _reconstruction(self, batch: torch.Tensor) -> torch.Tensor:
        """x_hat = M_D(M_E(x)) in [0, 1] units."""
        return to_unit(self.decoder(self.encoder(to_signed(batch))))

    def _embedding(self, batch: torch.Tensor) -> torch.Tensor:
        """z' = M_E(x) (Fig. 7)."""
        return self.encoder(to_signed(batch))

    def restore(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Perturb [0, 1] images and restore them with M'_D(M_E(.)) (Fig. 3 with the proxy task's output)."""
        if self.restorer is None:
            raise RuntimeError("this model was trained without the self-supervised module")
        x_s, _ = perturb(torch.as_tensor(images).float(), generator, self.hp["perturbations"])
        out = torch.cat(self._map(x_s, lambda b: to_unit(self.restorer(self.encoder(to_signed(b)))).clamp(0, 1).cpu()))
        return x_s, out

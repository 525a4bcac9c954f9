"""The MADDR wrapper: any registered detector that declares a latent code (`Detector.latent_phase`), trained with
Eq. 1, L = L_b + lambda_1 L_o + lambda_2 L_m + lambda_3 L_c, and mixup of its training images.

The wrapper reaches the detector only through the registry (`adlib.detectors.create`) and the base's latent
declaration (`Detector.with_latent_hook`, `LatentHook`): wrapping a new detector needs no change here.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...data.imageset import ImageSet, iter_float_batches
from ...detectors import Detector, LatentHook, create
from ...training import step_generator
from .losses import FOCAL_ALPHA, FOCAL_GAMMA, LAMBDAS, centre_loss, focal_loss, mixup, one_hot

HEADS = ("organ", "modality")  # head name = the ImageSet.domains key whose labels it is trained on
CENTRES = ("z_c", "z", None)


class MADDRHook(LatentHook):
    """The terms MADDR adds to the wrapped detector's main training phase.

    heads        which classification heads to train ("organ", "modality"); each is ONE linear layer.
    disentangle  True: z = (z_o, z_m, z_c), the organ head reads z_o, the modality head z_m (``category_dims``
                 numbers each, in that order at the front of z), z_c is the rest. False (Table 2 rows 4-5, 7-8,
                 10-11): every head reads the whole z, and z_c = z.
    centre       "z_c" (MADDR), "z" (the whole code) or None: where the leave-one-out centre loss (Eq. 4) acts.
    mixup        mix training images (and their organ / modality labels) from loop step ``mixup_from`` on, in a
                 fraction ``mixup_prob`` of the steps, lam ~ Beta(mixup_alpha, mixup_alpha), one lam per batch.
    """

    def __init__(self, vocab: dict[str, list[str]], heads=HEADS, disentangle: bool = True, centre: str | None = "z_c",
                 category_dims: int = 10, mixup: bool = True, mixup_alpha: float = 0.2, mixup_from: int = 0,
                 mixup_prob: float = 1.0, lambdas=LAMBDAS, focal_alpha: float = FOCAL_ALPHA,
                 focal_gamma: float = FOCAL_GAMMA, seed: int = 0):
        heads = tuple(heads)
        if any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be distinct names from {HEADS}, got {heads}")
        if centre not in CENTRES:
            raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
        self.vocab = {h: list(vocab[h]) for h in heads}
        self.heads, self.disentangle, self.centre = heads, disentangle, centre
        self.category_dims, self.mixup, self.mixup_alpha = category_dims, mixup, mixup_alpha
        self.mixup_from, self.mixup_prob, self.seed = mixup_from, mixup_prob, seed
        self.lambdas = dict(zip(HEADS, lambdas[:2])) | {"centre": lambdas[2]}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.classifiers = nn.ModuleDict()
        self.codes: dict[str, torch.Tensor] = {}
        self.last_targets: dict[str, torch.Tensor] = {}
        self._targets: tuple[int, dict] | None = None

    # ----- the split of z ---------------------------------------------------------------------------------
    def slices(self, dim: int) -> dict[str, slice]:
        """Where each head's part and z_c lie in a flattened z of length ``dim``."""
        if not self.disentangle:
            return {**{h: slice(0, dim) for h in self.heads}, "z_c": slice(0, dim)}
        used = self.category_dims * len(self.heads)
        if used >= dim:
            raise ValueError(f"a latent of {dim} numbers cannot hold {len(self.heads)} x {self.category_dims} "
                             "categorical numbers and a continuous part; lower category_dims or raise the latent")
        out = {h: slice(i * self.category_dims, (i + 1) * self.category_dims) for i, h in enumerate(self.heads)}
        out["z_c"] = slice(used, dim)
        return out

    def split(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        z = z.flatten(1)
        return {"z": z, **{k: z[:, s] for k, s in self.slices(z.shape[1]).items()}}

    # ----- LatentHook -------------------------------------------------------------------------------------
    def setup(self, dim: int, device, data: ImageSet) -> None:
        self.dim, self.device = dim, device
        parts = self.slices(dim)
        if not self.classifiers:  # built once per fit (a detector may call with_latent_hook per training stage)
            for h in self.heads:
                self.classifiers[h] = nn.Linear(parts[h].stop - parts[h].start, len(self.vocab[h]))
            self.classifiers.to(device)
        for h in self.heads:
            if h not in data.domains:
                raise ValueError(f"MADDR's {h} head needs per-image {h!r} labels in ImageSet.domains")
        self.codes = {h: torch.as_tensor(encode_labels(data.domains[h], self.vocab[h]), device=device)
                      for h in self.heads}

    def parameters(self) -> list:
        return list(self.classifiers.parameters())

    def modules(self) -> dict:
        return {"latent_hook_heads": self.classifiers}

    def mixes_at(self, step: int) -> bool:
        if not self.mixup or step < self.mixup_from:
            return False
        if self.mixup_prob >= 1.0:
            return True
        return float(torch.rand(1, generator=step_generator(self.seed, step, 41))) < self.mixup_prob

    def prepare(self, batch: torch.Tensor, step: int, indices: torch.Tensor) -> torch.Tensor:
        rows = indices.to(self.device)
        targets = {h: one_hot(self.codes[h][rows], len(self.vocab[h])) for h in self.heads}
        if self.mixes_at(step) and len(batch) > 1:
            gen = step_generator(self.seed, step, 42)
            draw = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
            lam = float(draw.beta(self.mixup_alpha, self.mixup_alpha))
            partner = torch.randperm(len(batch), generator=gen).to(batch.device)
            batch, targets = mixup(batch, targets, lam, partner)
            self._mix = (lam, partner)
        else:
            self._mix = None
        self._targets = (step, targets)
        return batch

    def loss(self, z: torch.Tensor, step: int, indices: torch.Tensor):
        if self._targets is None or self._targets[0] != step:
            raise RuntimeError("MADDRHook.loss called without prepare() for this step")
        targets = self._targets[1]
        self.last_targets = {h: t.detach() for h, t in targets.items()}
        parts = self.split(z)
        total = z.new_zeros(())
        logs = {"mixup_lambda": self._mix[0] if self._mix else 1.0}
        for h in self.heads:
            logits = self.classifiers[h](parts[h])
            term = focal_loss(logits, targets[h], self.focal_alpha, self.focal_gamma)
            total = total + self.lambdas[h] * term
            logs[f"{h}_focal"] = float(term.detach())
            logs[f"{h}_acc"] = float((logits.argmax(1) == targets[h].argmax(1)).float().mean())
        if self.centre is not None:
            term = centre_loss(parts[self.centre])
            total = total + self.lambdas["centre"] * term
            logs["centre"] = float(term.detach())
        return total, logs


def encode_labels(values, vocab: list[str]) -> np.ndarray:
    """Class index of each label in ``vocab`` (-1 for a label the heads never saw)."""
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index.get(str(v), -1) for v in np.asarray(values).tolist()], dtype=np.int64)


class MADDR(Detector):
    """MADDR around the registered detector ``base`` (created with ``base_kwargs``, ``seed``, ``device``).

    The anomaly score is the base detector's own. Constraints and mixup: see `MADDRHook`; the organ and modality
    vocabularies come from ``train.domains`` in `fit` (each head gets the labels of its own key). ``embed``
    returns z_c (the whole z when ``disentangle=False``).
    """

    name = "maddr"

    def __init__(self, base: str = "dpa", base_kwargs: dict | None = None, heads=HEADS, disentangle: bool = True,
                 centre: str | None = "z_c", category_dims: int = 10, mixup: bool = True, mixup_alpha: float = 0.2,
                 mixup_from: int = 0, mixup_prob: float = 1.0, lambdas=LAMBDAS, focal_alpha: float = FOCAL_ALPHA,
                 focal_gamma: float = FOCAL_GAMMA, seed: int = 0, device: str | None = None, progress: bool = True):
        self.base_name = base
        self.base_kwargs = dict(base_kwargs or {})
        self.base = create(base, seed=seed, progress=progress, **({"device": device} if device else {}),
                           **self.base_kwargs)
        if not self.base.declares_latent():
            raise ValueError(f"detector {base!r} declares no latent code (Detector.latent_phase); MADDR can wrap only "
                             "detectors that do (adlib.detectors.latent_detectors())")
        self.options = dict(heads=tuple(heads), disentangle=disentangle, centre=centre, category_dims=category_dims,
                            mixup=mixup, mixup_alpha=mixup_alpha, mixup_from=mixup_from, mixup_prob=mixup_prob,
                            lambdas=tuple(lambdas), focal_alpha=focal_alpha, focal_gamma=focal_gamma, seed=seed)
        for attr in ("weights", "weights_file", "weights_sha256"):
            setattr(self, attr, getattr(self.base, attr, ""))
        self.hook: MADDRHook | None = None
        self.history = None

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        heads = self.options["heads"]
        vocab = {h: sorted({str(v) for v in train.domains[h]}) for h in heads if h in train.domains}
        missing = [h for h in heads if h not in vocab]
        if missing:
            raise ValueError(f"MADDR's heads {missing} need per-image labels in train.domains (has {sorted(train.domains)})")
        self.hook = MADDRHook(vocab, **self.options)
        self.base.latent_hook = self.hook
        self.base.fit(train, val, anomalies)
        self.history = self.base.history
        return self

    # ----- inference ----------------------------------------------------------------------------------
    def score(self, images) -> np.ndarray:
        return self.base.score(images)

    @torch.no_grad()
    def latent_parts(self, images, batch_size: int = 128, batch_statistics: bool = False,
                     seed: int = 0) -> dict[str, np.ndarray]:
        """z and its parts (organ / modality / z_c) of ``images``, every network in eval mode.

        batch_statistics: normalisation layers use each batch's own statistics, as in training, instead of their
        running averages (a diagnostic: batches of ``batch_size`` images in a seeded random order, computed on a
        copy of the model, whose state is left unchanged)."""
        if self.hook is None:
            raise RuntimeError("call fit() before using the latent code")
        if batch_statistics:
            return self._parts_with_batch_statistics(images, batch_size, seed)
        for m in self._modules():
            m.eval()
        out: dict[str, list] = {}
        for b in iter_float_batches(images, batch_size):
            for k, v in self.hook.split(self.base.encode_latent(b.to(self.base.device))).items():
                out.setdefault(k, []).append(v.cpu())
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    def _parts_with_batch_statistics(self, images, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        clone = copy.deepcopy(self)
        for m in clone._modules():
            m.train()
        order = np.random.default_rng(seed).permutation(len(images))
        out: dict[str, list] = {}
        # near-equal batches of at least 2 images (a batch of one has no batch statistics)
        for rows in np.array_split(order, max(1, int(np.ceil(len(order) / batch_size)))):
            b = images.subset(np.asarray(rows)).float_images().to(clone.base.device)
            for k, v in clone.hook.split(clone.base.encode_latent(b)).items():
                out.setdefault(k, []).append(v.cpu())
        inverse = np.argsort(order)
        return {k: torch.cat(v).numpy()[inverse] for k, v in out.items()}

    @torch.no_grad()
    def predict_domains(self, images, batch_statistics: bool = False, batch_size: int = 128) -> dict[str, np.ndarray]:
        """Each head's predicted class name per image (``batch_statistics``: see `latent_parts`)."""
        parts = self.latent_parts(images, batch_size, batch_statistics=batch_statistics)
        out = {}
        for h, clf in self.hook.classifiers.items():
            logits = clf(torch.as_tensor(parts[h]).to(self.base.device))
            out[h] = np.asarray(self.hook.vocab[h])[logits.argmax(1).cpu().numpy()]
        return out

    def embed(self, images) -> np.ndarray:
        return self.latent_parts(images)["z_c"]

    def _modules(self):
        mods = [m for m in vars(self.base).values() if isinstance(m, nn.Module)]
        return mods + [self.hook.classifiers]

    def config(self) -> dict:
        return {"base": self.base_name, **self.base_kwargs, **self.options}

"""Deep GEO (Golan & El-Yaniv, NeurIPS 2018): anomaly detection with geometric transformations.

A classifier learns to tell which of T geometric transformations was applied to a normal image. On a
normal test image it recognises the transformations well; on an anomalous one its softmax outputs are
less confident and less correct, so the quality of classification is a normality score.

The 72 transformations of the original are compositions (applied in this order) of
  horizontal flip  in {no, yes}
  translation      dx, dy in {0, -s, +s} pixels (s = 8 px at 32x32, scaled with the image size)
  rotation         by k * 90 degrees, k in {0, 1, 2, 3}
`apply_transform(x, index)` and `inverse_transform(x, index)` are pure batched tensor functions.
Translations fill the uncovered border by reflection (as the original); their inverse therefore recovers
everything except the `s`-pixel band that was shifted out. With `mode="circular"` translation is a
cyclic shift and all 72 transformations are exactly invertible. Smaller subsets for CPU budgets:
`n_transforms=8` (flips x rotations) or 4 (rotations only).

Normality scores (higher = more normal; the detector's anomaly score is the negation):
- "simple" (default here, cheap): the mean over transformations t of the softmax probability that
  the classifier gives to the correct class t for T_t(x) (the paper's simplified score).
- "dirichlet" (the original paper's main score): for each t, a Dirichlet distribution is fitted by
  maximum likelihood to the softmax vectors y(T_t(x)) of training normals; the score is the sum over t of
  the Dirichlet log-density of y(T_t(x)). It needs T extra forward passes per training image
  (capped by `dirichlet_max_train`).

Classifier: a pre-activation Wide ResNet WRN-depth-k (the original used WRN-16-8); the CPU default
here is WRN-10-2. DPA (Sec. IV-C) tuned Deep GEO by searching the number of training epochs; the
`epochs` argument counts passes over the transformed training set (N x T images), as the original did
(it trained ceil(200 / T) epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import digamma, gammaln, polygamma
from torch import nn
from ..progress import progress_bar

from ..data.imageset import ImageSet, checked_float_batches
from ..detectors import Detector, register
from ..training import TrainHistory, choose_device, seed_everything, split_holdout, train_steps

SHIFT_PX_AT_32 = 8


@dataclass(frozen=True)
class GeoTransform:
    flip: bool
    tx: int  # horizontal shift in units of the shift size: -1, 0 or +1 (positive = content moves right)
    ty: int  # vertical shift in units of the shift size: -1, 0 or +1 (positive = content moves down)
    rot: int  # number of 90-degree counter-clockwise rotations, 0..3


# The order of the original enumeration: flip, then tx, then ty, then rotation (fastest).
TRANSFORMS: tuple[GeoTransform, ...] = tuple(
    GeoTransform(flip, tx, ty, rot)
    for flip in (False, True) for tx in (0, -1, 1) for ty in (0, -1, 1) for rot in range(4))
N_TRANSFORMS = len(TRANSFORMS)  # 72


def default_shift(size: int) -> int:
    """The original's 8-pixel translation at 32x32, scaled to the image size (at least 1 px)."""
    return max(1, int(round(SHIFT_PX_AT_32 * size / 32)))


def transform_subset(n_transforms: int) -> list[int]:
    """Indices into TRANSFORMS of the transformations used: 72 = all, 8 = flips x rotations, 4 = rotations."""
    if n_transforms == N_TRANSFORMS:
        return list(range(N_TRANSFORMS))
    if n_transforms == 8:
        return [i for i, t in enumerate(TRANSFORMS) if t.tx == 0 and t.ty == 0]
    if n_transforms == 4:
        return [i for i, t in enumerate(TRANSFORMS) if t.tx == 0 and t.ty == 0 and not t.flip]
    raise ValueError(f"n_transforms must be 72 (all), 8 (flips x rotations) or 4 (rotations), got {n_transforms}")


def translate(x: torch.Tensor, dx: int, dy: int, mode: str = "reflect") -> torch.Tensor:
    """Shift the content of (N, C, H, W) images by dx (right) and dy (down) pixels.
    mode "reflect" fills the uncovered border by reflection; "circular" wraps around."""
    if dx == 0 and dy == 0:
        return x
    if mode == "circular":
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if mode != "reflect":
        raise ValueError(f"translation mode must be 'reflect' or 'circular', got {mode!r}")
    h, w = x.shape[-2:]
    pad = max(abs(dx), abs(dy))
    if pad >= min(h, w):
        raise ValueError(f"shift of {pad} px is too large for {h}x{w} images")
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return padded[..., pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def _check_index(index: int) -> GeoTransform:
    if not 0 <= index < N_TRANSFORMS:
        raise IndexError(f"transformation index must be in [0, {N_TRANSFORMS}), got {index}")
    return TRANSFORMS[index]


def _per_sample(fn, x: torch.Tensor, index) -> torch.Tensor:
    """Apply fn(x_subset, int_index) to an int index or a per-sample index tensor of shape (N,)."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"geometric transformations need square (N, C, H, W) images, got {tuple(x.shape)}")
    if isinstance(index, (int, np.integer)):
        return fn(x, int(index))
    index = torch.as_tensor(index).reshape(-1).to(x.device)
    if len(index) != len(x):
        raise ValueError(f"got {len(index)} transformation indices for {len(x)} images")
    out = torch.empty_like(x)
    for value in torch.unique(index).tolist():
        rows = index == value
        out[rows] = fn(x[rows], int(value))
    return out


def apply_transform(x: torch.Tensor, index, shift: int | None = None, mode: str = "reflect") -> torch.Tensor:
    """T_index(x) for images x (N, C, H, W): flip, then translate, then rotate.
    index: an int in [0, 72) or a per-image tensor of such ints. shift defaults to `default_shift(H)`."""
    s = default_shift(x.shape[-1]) if shift is None else shift

    def one(images: torch.Tensor, i: int) -> torch.Tensor:
        t = _check_index(i)
        if t.flip:
            images = torch.flip(images, dims=(-1,))
        images = translate(images, t.tx * s, t.ty * s, mode)
        return torch.rot90(images, t.rot, dims=(-2, -1)) if t.rot else images

    return _per_sample(one, x, index)


def inverse_transform(x: torch.Tensor, index, shift: int | None = None, mode: str = "reflect") -> torch.Tensor:
    """The inverse of `apply_transform` (rotate back, shift back, flip back). Exact for mode="circular";
    for "reflect" exact except for the `shift`-pixel border band that the translation pushed out."""
    s = default_shift(x.shape[-1]) if shift is None else shift

    def one(images: torch.Tensor, i: int) -> torch.Tensor:
        t = _check_index(i)
        if t.rot:
            images = torch.rot90(images, -t.rot, dims=(-2, -1))
        images = translate(images, -t.tx * s, -t.ty * s, mode)
        return torch.flip(images, dims=(-1,)) if t.flip else images

    return _per_sample(one, x, index)


# -- classifier --------------------------------------------------------------------------------------
class PreActWideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + residual


class WideResNet(nn.Module):
    """WRN-depth-widen (Zagoruyko & Komodakis): depth = 6n + 4, three groups of n blocks of widths
    16k, 32k, 64k; inputs in [0, 1] are mapped to [-1, 1] inside."""

    def __init__(self, n_classes: int, in_channels: int = 1, depth: int = 10, widen_factor: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, c = [], 16
        for group, width in enumerate(widths):
            for b in range(blocks_per_group):
                layers.append(PreActWideBlock(c, width, 2 if (group > 0 and b == 0) else 1, dropout))
                c = width
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, n_classes)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x * 2.0 - 1.0))
        return F.relu(self.bn(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# -- Dirichlet normality score -----------------------------------------------------------------------
def _inverse_digamma(y: np.ndarray, iterations: int = 8) -> np.ndarray:
    """Solve digamma(x) = y by Newton's method (initialisation of Minka, 2000)."""
    x = np.where(y >= -2.22, np.exp(y) + 0.5, -1.0 / (y - digamma(1.0)))
    for _ in range(iterations):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


def fit_dirichlet(probabilities: np.ndarray, iterations: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood Dirichlet concentration (K,) for probability vectors (N, K).

    Newton's method on the concave log-likelihood, using that its Hessian is diagonal plus a constant
    (Minka, 2000, "Estimating a Dirichlet distribution"), started by moment matching; a step that would
    leave the positive orthant falls back to Minka's fixed-point update
    alpha <- psi^-1(psi(sum alpha) + mean log p), which always stays positive.
    """
    p = _clean_probabilities(probabilities)
    mean_log_p = np.log(p).mean(axis=0)
    m, m2 = p.mean(axis=0), (p ** 2).mean(axis=0)
    variance = np.maximum(m2 - m ** 2, 1e-12)
    precision = np.median(np.clip(m * (1 - m) / variance - 1, 1e-2, 1e6))
    alpha = np.maximum(m * precision, 1e-3)
    for _ in range(iterations):
        gradient = digamma(alpha.sum()) - digamma(alpha) + mean_log_p
        q = -polygamma(1, alpha)
        z = polygamma(1, alpha.sum())
        b = (gradient / q).sum() / (1.0 / z + (1.0 / q).sum())
        updated = alpha - (gradient - b) / q
        if np.any(updated <= 0) or not np.all(np.isfinite(updated)):
            updated = np.maximum(_inverse_digamma(digamma(alpha.sum()) + mean_log_p), 1e-8)
        converged = np.max(np.abs(updated - alpha)) < tol * max(1.0, alpha.max())
        alpha = updated
        if converged:
            break
    return alpha


def dirichlet_log_likelihood(probabilities: np.ndarray, alpha: np.ndarray) -> float:
    """Mean Dirichlet log-density of probability vectors (N, K) under concentration alpha (K,)."""
    return float(dirichlet_log_density(probabilities, alpha).mean())


def dirichlet_log_density(probabilities: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    p = _clean_probabilities(probabilities)
    return gammaln(alpha.sum()) - gammaln(alpha).sum() + ((alpha - 1) * np.log(p)).sum(axis=1)


def _clean_probabilities(p: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, None)
    return p / p.sum(axis=1, keepdims=True)


@register("deep_geo")
class DeepGEODetector(Detector):
    """Geometric-transformation classifier; anomaly score = minus its normality score.

    n_transforms: 72 (the original), 8 (flips x rotations) or 4 (rotations).
    depth / widen_factor / dropout: the Wide ResNet classifier (original WRN-16-8; default WRN-10-2).
    steps or epochs: training length; epochs (passes over the N x T transformed images) wins if given.
    score_mode: "simple" (default) or "dirichlet" (see the module docstring).
    translation_mode / shift: how translations fill the border ("reflect" as the original) and by how
    many pixels (default 8 px at 32x32, scaled with the image size).
    input_size: resize images to this size first (e.g. 32, the original's resolution; a CPU saving
    for 64 px inputs); None keeps the data's size.
    """

    def __init__(self, n_transforms: int = 72, depth: int = 10, widen_factor: int = 2, dropout: float = 0.0,
                 steps: int = 1000, epochs: float | None = None, batch_size: int = 64, lr: float = 1e-3,
                 score_mode: str = "simple", translation_mode: str = "reflect", shift: int | None = None,
                 input_size: int | None = None,
                 dirichlet_max_train: int | None = 1000, holdout_fraction: float = 0.0, eval_every: int = 100,
                 patience: int | None = None, seed: int = 0, checkpoint_path: str | None = None,
                 device: str | None = None, progress: bool = True):
        if score_mode not in ("simple", "dirichlet"):
            raise ValueError(f"score_mode must be 'simple' or 'dirichlet', got {score_mode!r}")
        if translation_mode not in ("reflect", "circular"):
            raise ValueError(f"translation_mode must be 'reflect' or 'circular', got {translation_mode!r}")
        self.transform_ids = transform_subset(n_transforms)
        self.hp = dict(n_transforms=n_transforms, depth=depth, widen_factor=widen_factor, dropout=dropout,
                       steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, score_mode=score_mode,
                       translation_mode=translation_mode, shift=shift, input_size=input_size,
                       dirichlet_max_train=dirichlet_max_train,
                       holdout_fraction=holdout_fraction, eval_every=eval_every, patience=patience, seed=seed)
        self.score_mode = score_mode
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.model: WideResNet | None = None
        self.history: TrainHistory | None = None
        self.dirichlet_alphas: np.ndarray | None = None  # (T, T) after fit in "dirichlet" mode
        self._channels: int | None = None
        self._size: int | None = None
        self._shift: int | None = None

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to `input_size` (if set) before the transformations and the classifier."""
        size = self.hp["input_size"]
        if size is None or size == x.shape[-1]:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])

    def _transform(self, x: torch.Tensor, index) -> torch.Tensor:
        return apply_transform(self._resize(x), index, self._shift, self.hp["translation_mode"])

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        if not isinstance(train, ImageSet):
            raise TypeError(f"fit expects an ImageSet of training normals, got {type(train).__name__}")
        if len(train) < 2:
            raise ValueError(f"Deep GEO needs at least 2 training images, got {len(train)}")
        hp = self.hp
        self._channels, self._size = train.channels, train.size
        if train.images.shape[-2] != train.size:
            raise ValueError(f"Deep GEO needs square images, got {tuple(train.images.shape[-2:])}")
        net_size = hp["input_size"] or train.size  # the size the classifier sees
        self._shift = default_shift(net_size) if hp["shift"] is None else hp["shift"]
        if not 0 < self._shift < net_size:
            raise ValueError(f"shift must be in [1, {net_size - 1}] px for {net_size} px images, got {self._shift}")
        seed_everything(hp["seed"])
        n_classes = len(self.transform_ids)
        self.model = WideResNet(n_classes, train.channels, hp["depth"], hp["widen_factor"], hp["dropout"])
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], hp["seed"])
        steps = hp["steps"]
        if hp["epochs"] is not None:
            steps = max(1, math.ceil(hp["epochs"] * len(fit_set) * n_classes / hp["batch_size"]))
        self.steps_run = steps
        ids = torch.tensor(self.transform_ids)
        seed = hp["seed"]

        def batch_loss(model, batch, step):
            # a random transformation per image; the draw depends only on (seed, step) so resume is exact
            gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * step + 1)
            target = torch.randint(n_classes, (len(batch),), generator=gen)
            inputs = self._transform(batch, ids[target])
            return F.cross_entropy(model(inputs), target.to(batch.device))

        optimizer = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        self.history = train_steps(self.model, optimizer, batch_loss, fit_set, steps=steps,
                                   batch_size=hp["batch_size"], seed=seed,
                                   holdout=holdout if len(holdout) else None, eval_every=hp["eval_every"],
                                   patience=hp["patience"], checkpoint_path=self.checkpoint_path,
                                   device=self.device, desc=f"Deep GEO ({n_classes} transforms)",
                                   progress=self.progress)
        self.model.eval()
        self.dirichlet_alphas = None
        if self.score_mode == "dirichlet":
            reference = train.sample(hp["dirichlet_max_train"], seed)
            probabilities = self.transformation_probabilities(reference)
            self.dirichlet_alphas = np.stack([fit_dirichlet(probabilities[:, t]) for t in range(n_classes)])
        return self

    def _require_fit(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() before score()/embed()")

    @torch.no_grad()
    def transformation_probabilities(self, images) -> np.ndarray:
        """Softmax outputs (N, T, T): [n, t] is the classifier's prediction for T_t(x_n)."""
        self._require_fit()
        self.model.eval()
        bs = self.hp["batch_size"]
        out = []
        batches = checked_float_batches(images, bs, channels=self._channels, size=self._size, who=self.name)
        for batch in progress_bar(batches, total=-(-len(images) // bs), desc="Deep GEO scoring",
                          disable=not self.progress, leave=False):
            batch = batch.to(self.device)
            per_transform = [F.softmax(self.model(self._transform(batch, i)), dim=1) for i in self.transform_ids]
            out.append(torch.stack(per_transform, dim=1).double().cpu())
        return torch.cat(out).numpy()

    def normality(self, images) -> np.ndarray:
        """The normality score of the chosen `score_mode` (higher = more normal)."""
        probabilities = self.transformation_probabilities(images)
        if self.score_mode == "simple":
            return np.diagonal(probabilities, axis1=1, axis2=2).mean(axis=1)
        return sum(dirichlet_log_density(probabilities[:, t], self.dirichlet_alphas[t])
                   for t in range(len(self.transform_ids)))

    def score(self, images) -> np.ndarray:
        return -self.normality(images)

    @torch.no_grad()
    def embed(self, images) -> np.ndarray:
        """Penultimate (pooled) classifier features of the untransformed images, (N, D)."""
        self._require_fit()
        self.model.eval()
        parts = [self.model.features(self._resize(b.to(self.device))).cpu()
                 for b in checked_float_batches(images, self.hp["batch_size"], channels=self._channels,
                                                size=self._size, who=self.name)]
        return torch.cat(parts).numpy()

"""CutPaste (Li, Sohn, Yoon & Pfister, CVPR 2021): self-supervised anomaly detection.

Stage 1 - representation: a ResNet18 (ImageNet weights in the original; here whatever
`adlib.backbones.load_model` resolves) with an MLP projection head and a linear classifier is trained
to tell normal training images from copies altered by
  CutPaste: a rectangle (area 2-15 % of the image, aspect ratio log-uniform in [0.3, 1/0.3]) is cut
            from a random place, colour-jittered, and pasted at another random place;
  CutPaste-Scar: a thin rectangle (2-16 x 10-25 px at 256 px, scaled to the image size), colour-jittered,
            rotated by a random angle in [-45, 45] degrees, and pasted at a random place.
`variant`: "binary" (normal vs CutPaste, the default), "scar" (normal vs scar) or "3way" (normal vs
CutPaste vs scar).

Stage 2 - density: a Gaussian (mean + Ledoit-Wolf shrinkage covariance, scikit-learn) is fitted to the
global-average-pooled ResNet features of the normal training images; anomaly score = Mahalanobis
distance to it (higher = more anomalous).

Differences from the original, stated for the notebooks: colour jitter here changes brightness,
contrast and (RGB only) saturation of the patch but not hue; small images are upsampled to at least
32 px (like adlib.backbones.FeatureExtractor) instead of the original 256 px; the training length is a
number of steps (the original trained 256 epochs with SGD, lr 0.03, momentum 0.9, cosine decay);
`freeze_until` optionally freezes the stem and early stages for small CPU budgets.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ..progress import progress_bar

from ..data.imageset import ImageSet, checked_float_batches
from ..detectors import Detector, register
from ..training import TrainHistory, choose_device, seed_everything, split_holdout, train_steps

VARIANTS = {"binary": ("cutpaste",), "scar": ("scar",), "3way": ("cutpaste", "scar")}
RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
CUTPASTE_ARCHS = ("resnet18", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
MIN_INPUT_SIZE = 32  # as adlib.backbones: the smallest size at which layer4 still has a spatial map


# -- augmentation --------------------------------------------------------------------------------------
def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _patch_sizes(kind: str, n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch heights and widths (integers, pixels) for n images of size x size."""
    if kind == "cutpaste":
        area = _uniform(n, 0.02, 0.15, gen) * size * size
        aspect = torch.exp(_uniform(n, math.log(0.3), math.log(1 / 0.3), gen))  # width / height
        h, w = torch.sqrt(area / aspect), torch.sqrt(area * aspect)
        lo = 1
    elif kind == "scar":
        scale = size / 256.0
        w, h = _uniform(n, 2, 16, gen) * scale, _uniform(n, 10, 25, gen) * scale
        w, h = w.clamp_min(1.0), h.clamp_min(2.0)
        lo = 1
    else:
        raise ValueError(f"unknown augmentation {kind!r}; choose 'cutpaste' or 'scar'")
    h = h.round().clamp(lo, size - 1).long()
    w = w.round().clamp(lo, size - 1).long()
    return h, w


def _random_offsets(n: int, extent: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Integer start positions in [0, size - extent] (one per image), uniform."""
    room = (size - extent).clamp_min(0) + 1
    return (torch.rand(n, generator=gen, dtype=torch.float64) * room).floor().long().clamp_max(room - 1)


def _color_jitter(values: torch.Tensor, mask: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and (RGB) saturation jitter of the masked patch of each image, factors in
    [1 - strength, 1 + strength]; values (N, C, H, W) float in [0, 1], mask (N, 1, H, W) bool."""
    if strength <= 0:
        return values
    n, c = values.shape[:2]
    factor = lambda: (1 + _uniform(n, -strength, strength, gen)).float().view(n, 1, 1, 1).to(values.device)  # noqa: E731
    out = values * factor()  # brightness
    m = mask.to(values.dtype)
    patch_mean = (out * m).sum(dim=(1, 2, 3), keepdim=True) / (m.sum(dim=(1, 2, 3), keepdim=True) * c).clamp_min(1)
    out = (out - patch_mean) * factor() + patch_mean  # contrast
    if c == 3:
        gray = out.mean(dim=1, keepdim=True)
        out = (out - gray) * factor() + gray  # saturation
    return out.clamp(0, 1)


def paste_patches(x: torch.Tensor, kind: str, gen: torch.Generator, jitter: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply CutPaste (`kind="cutpaste"`) or CutPaste-Scar (`kind="scar"`) to every image of a batch.

    x: (N, C, H, W) float in [0, 1] or uint8, square. Returns (augmented images with the same shape and
    dtype, bool masks (N, H, W) of the pasted pixels). Pixels outside the mask are left untouched.
    The patch is cut axis-aligned at a source position, jittered, rotated (scar only) and pasted with its
    centre at a target position; nearest-neighbour sampling keeps unrotated patches pixel-exact.
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"paste_patches needs square (N, C, H, W) images, got {tuple(x.shape)}")
    n, c, size, _ = x.shape
    if size < 4:
        raise ValueError(f"images of {size} px are too small for CutPaste")
    dtype = x.dtype
    values = x.float().div(255.0) if dtype == torch.uint8 else x
    h, w = _patch_sizes(kind, n, size, gen)
    angle = _uniform(n, -45, 45, gen) * math.pi / 180 if kind == "scar" else torch.zeros(n, dtype=torch.float64)
    src_y, src_x = _random_offsets(n, h, size, gen), _random_offsets(n, w, size, gen)
    # the target box is the bounding box of the (rotated) patch, so that the patch lies inside the image
    cos, sin = torch.cos(angle).abs(), torch.sin(angle).abs()
    box_h = torch.ceil(h * cos + w * sin - 1e-9).long().clamp_max(size)
    box_w = torch.ceil(h * sin + w * cos - 1e-9).long().clamp_max(size)
    dst_y, dst_x = _random_offsets(n, box_h, size, gen), _random_offsets(n, box_w, size, gen)
    src_cy, src_cx = src_y + (h - 1) / 2.0, src_x + (w - 1) / 2.0
    dst_cy, dst_cx = dst_y + (box_h - 1) / 2.0, dst_x + (box_w - 1) / 2.0

    grid = torch.arange(size, dtype=torch.float64)
    dy = grid.view(1, size, 1) - dst_cy.view(n, 1, 1)
    dx = grid.view(1, 1, size) - dst_cx.view(n, 1, 1)
    ca, sa = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    u_y = ca * dy + sa * dx  # target offset expressed in the patch's own (unrotated) frame
    u_x = -sa * dy + ca * dx
    inside = (u_y.abs() < h.view(n, 1, 1) / 2.0) & (u_x.abs() < w.view(n, 1, 1) / 2.0)
    sy = torch.round(src_cy.view(n, 1, 1) + u_y).long().clamp(0, size - 1)
    sx = torch.round(src_cx.view(n, 1, 1) + u_x).long().clamp(0, size - 1)
    index = (sy * size + sx).view(n, 1, size * size).expand(n, c, -1).to(x.device)
    patch = values.reshape(n, c, size * size).gather(2, index).view(n, c, size, size)
    mask = inside.to(x.device)
    patch = _color_jitter(patch, mask.unsqueeze(1), jitter, gen)
    out = torch.where(mask.unsqueeze(1), patch.to(values.dtype), values)
    if dtype == torch.uint8:
        out = out.mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return out, mask


def cutpaste(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    return paste_patches(x, "cutpaste", gen, jitter)


def cutpaste_scar(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    return paste_patches(x, "scar", gen, jitter)


# -- network -------------------------------------------------------------------------------------------
def trunk_stages(net: nn.Module) -> nn.ModuleDict:
    """The convolutional trunk of a torchvision ResNet or an EfficientNetLite as named stages (input -> last map)."""
    if hasattr(net, "layer4"):  # torchvision ResNet
        return nn.ModuleDict({
            "stem": nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
            "layer1": net.layer1, "layer2": net.layer2, "layer3": net.layer3, "layer4": net.layer4})
    if hasattr(net, "stages") and hasattr(net, "head"):  # adlib.backbones.EfficientNetLite
        return nn.ModuleDict({"stem": net.stem, **{f"stage{i + 1}": st for i, st in enumerate(net.stages)},
                              "head": net.head})
    raise ValueError(f"CutPaste needs a ResNet or EfficientNet-Lite trunk, got {type(net).__name__}")


class CutPasteNet(nn.Module):
    """torchvision ResNet18 trunk -> pooled 512-d features -> MLP projection head -> linear classifier.

    Inputs are float [0, 1], 1 or 3 channels; grayscale is repeated to RGB, images smaller than 32 px
    are upsampled (or all resized to `input_size`) and normalised with the weights' mean/std.
    freeze_until: None (train everything, as the original) or a stage name; that stage and all before it
    keep their pretrained weights and BatchNorm statistics.
    """

    def __init__(self, resnet: nn.Module, mean, std, n_classes: int, head_dims=(512, 128),
                 input_size: int | None = None, freeze_until: str | None = None):
        super().__init__()
        self.stages = trunk_stages(resnet)
        names = list(self.stages)
        if freeze_until is not None and freeze_until not in names:
            raise ValueError(f"freeze_until must be None or one of {names}, got {freeze_until!r}")
        self.feature_dim = resnet.fc.in_features if hasattr(resnet, "fc") else resnet.classifier.in_features
        head, c = [], self.feature_dim
        for d in head_dims:
            head += [nn.Linear(c, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True)]
            c = d
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(c, n_classes)
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.frozen = [] if freeze_until is None else names[:names.index(freeze_until) + 1]
        for name in self.frozen:
            self.stages[name].requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "CutPasteNet":
        super().train(mode)
        for name in self.frozen:  # frozen stages also keep their BatchNorm running statistics
            self.stages[name].train(False)
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = self.input_size or max(x.shape[-1], MIN_INPUT_SIZE)
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < x.shape[-1])
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare(x)
        for stage in self.stages.values():
            x = stage(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


class GaussianDensity:
    """Mean + Ledoit-Wolf shrinkage covariance (scikit-learn) of embeddings; Mahalanobis distance to it.

    The distance is computed through a Cholesky factor of the shrunk covariance (torch, float64), which
    is positive definite whenever the shrinkage is positive.
    """

    def fit(self, embeddings: np.ndarray) -> "GaussianDensity":
        from sklearn.covariance import LedoitWolf  # imported on use: keeps `import adlib.methods` light

        if len(embeddings) < 2:
            raise ValueError(f"need at least 2 embeddings to fit a Gaussian, got {len(embeddings)}")
        estimator = LedoitWolf(store_precision=False).fit(embeddings)
        self.mean = torch.as_tensor(estimator.location_, dtype=torch.float64)
        self.covariance = torch.as_tensor(estimator.covariance_, dtype=torch.float64)
        self.shrinkage = float(estimator.shrinkage_)
        jitter = 0.0
        while True:  # a tiny diagonal jitter only if the factorisation fails (shrinkage 0, degenerate data)
            eye = torch.eye(len(self.covariance), dtype=torch.float64)
            factor, info = torch.linalg.cholesky_ex(self.covariance + jitter * eye)
            if int(info) == 0:
                break
            jitter = max(jitter * 10, 1e-10 * float(self.covariance.diagonal().mean().clamp_min(1e-12)))
        self.cholesky = factor
        return self

    def mahalanobis(self, embeddings: np.ndarray) -> np.ndarray:
        centred = torch.as_tensor(embeddings, dtype=torch.float64) - self.mean
        whitened = torch.linalg.solve_triangular(self.cholesky, centred.T, upper=False)
        return whitened.norm(dim=0).numpy()


def cosine_lr(base_lr: float, step: int, steps: int) -> float:
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))


@register("cutpaste")
class CutPasteDetector(Detector):
    """CutPaste self-supervised ResNet18 + Gaussian density (Ledoit-Wolf) on its pooled features.

    arch: "resnet18" (the original) or "efficientnet_lite0/1/2" (ImageNet weights that install offline).
    weights: "auto" | "imagenet" | "cifar10" | "random" (adlib.backbones.load_backbone).
    variant: "binary" | "scar" | "3way". steps / batch_size (normal images per step; each step also sees
    as many augmented copies per augmentation) / lr (SGD, momentum 0.9, cosine decay) / weight_decay.
    freeze_until: freeze the ResNet up to this stage (None = fine-tune all, as the original).
    embedding: "backbone" (pooled 512-d ResNet features, default) or "head" (projection-head output) for
    the density estimator; normalize_embedding: L2-normalise embeddings before it.
    curve_every: when > 0 and ``fit`` gets a validation split, record a diagnostic curve every that many steps (and
    before the first step): the validation AUROC of the Gaussian fitted at that step, and the pretext-task accuracy
    on ``curve_probe`` validation *normals* and their augmented copies (``history.extras["curve"]``). The training
    itself is unchanged (the run is cut into chunks that resume exactly from a checkpoint); nothing is chosen on it.
    """

    def __init__(self, variant: str = "binary", weights: str = "auto", arch: str = "resnet18",
                 head_dims: tuple[int, ...] = (512, 128), steps: int = 300, batch_size: int = 32,
                 lr: float = 0.03, momentum: float = 0.9, weight_decay: float = 3e-5, jitter: float = 0.1,
                 freeze_until: str | None = None, input_size: int | None = None, embedding: str = "backbone",
                 normalize_embedding: bool = False, holdout_fraction: float = 0.0, eval_every: int = 100,
                 patience: int | None = None, seed: int = 0, checkpoint_path: str | None = None,
                 device: str | None = None, progress: bool = True, curve_every: int = 0, curve_probe: int = 128):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if embedding not in ("backbone", "head"):
            raise ValueError(f"embedding must be 'backbone' or 'head', got {embedding!r}")
        if arch not in CUTPASTE_ARCHS:
            raise ValueError(f"CutPaste uses a resnet18 trunk (as the original) or an EfficientNet-Lite trunk "
                             f"(ImageNet weights offline); choose one of {CUTPASTE_ARCHS}, got arch={arch!r}")
        if freeze_until is not None and arch == "resnet18" and freeze_until not in RESNET_STAGES:
            raise ValueError(f"freeze_until must be None or one of {RESNET_STAGES}, got {freeze_until!r}")
        self.variant, self.augmentations = variant, VARIANTS[variant]
        self.hp = dict(variant=variant, weights_requested=weights, arch=arch, head_dims=tuple(head_dims),
                       steps=steps, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                       jitter=jitter, freeze_until=freeze_until, input_size=input_size, embedding=embedding,
                       normalize_embedding=normalize_embedding, holdout_fraction=holdout_fraction,
                       eval_every=eval_every, patience=patience, seed=seed, curve_every=curve_every,
                       curve_probe=curve_probe)
        self.checkpoint_path, self.progress = checkpoint_path, progress
        self.device = choose_device(device)
        self.model: CutPasteNet | None = None
        self.history: TrainHistory | None = None
        self.density: GaussianDensity | None = None
        self._channels: int | None = None
        self._size: int | None = None

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The self-supervised batch: normals plus one augmented copy per augmentation, and class labels."""
        parts, labels = [x], [torch.zeros(len(x), dtype=torch.long)]
        for label, kind in enumerate(self.augmentations, start=1):
            parts.append(paste_patches(x, kind, gen, self.hp["jitter"])[0])
            labels.append(torch.full((len(x),), label, dtype=torch.long))
        return torch.cat(parts), torch.cat(labels).to(x.device)

    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        from ..backbones import load_backbone  # the weights and their normalisation statistics

        if not isinstance(train, ImageSet):
            raise TypeError(f"fit expects an ImageSet of training normals, got {type(train).__name__}")
        if len(train) < 2:
            raise ValueError(f"CutPaste needs at least 2 training images, got {len(train)}")
        if train.images.shape[-1] != train.images.shape[-2]:
            raise ValueError(f"CutPaste needs square images, got {tuple(train.images.shape[-2:])}")
        hp = self.hp
        seed = hp["seed"]
        seed_everything(seed)
        resnet, info = load_backbone(hp["arch"], hp["weights_requested"], seed)
        self.weights, self.weights_file, self.weights_sha256 = info.source, info.file, info.sha256
        n_classes = 1 + len(self.augmentations)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the head's initialisation depends only on the seed
            self.model = CutPasteNet(resnet, info.mean, info.std, n_classes, hp["head_dims"], hp["input_size"],
                                     hp["freeze_until"])
        self._channels, self._size = train.channels, train.size
        fit_set, holdout = split_holdout(train, hp["holdout_fraction"], seed)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        steps = hp["steps"]

        def batch_loss(model, batch, step):
            for group in optimizer.param_groups:  # cosine decay, a pure function of the step (resume-safe)
                group["lr"] = cosine_lr(hp["lr"], step, steps)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * step + 2)
            inputs, labels = self.augment(batch, gen)
            return F.cross_entropy(model(inputs), labels)

        def run_steps(stop_after=None, checkpoint_path=self.checkpoint_path):
            return train_steps(self.model, optimizer, batch_loss, fit_set, steps=steps, batch_size=hp["batch_size"],
                               seed=seed, holdout=holdout if len(holdout) else None, eval_every=hp["eval_every"],
                               patience=hp["patience"], checkpoint_path=checkpoint_path,
                               checkpoint_every=hp["curve_every"] or 200, device=self.device,
                               desc=f"CutPaste ({self.variant})", progress=self.progress, stop_after=stop_after)

        if hp["curve_every"] > 0 and val is not None:
            self.history = self._fit_with_curve(train, val, train_fn=run_steps)
        else:
            self.history = run_steps()
        self.model.eval()
        # the Gaussian density is fitted on all training normals (as the original)
        self.density = GaussianDensity().fit(self.embed(train))
        return self

    def _fit_with_curve(self, train: ImageSet, val: ImageSet, train_fn) -> TrainHistory:
        """Train in chunks of ``curve_every`` steps (each resumes exactly from a temporary checkpoint, unless the
        detector has its own checkpoint_path) and record the diagnostic curve before the first and after each."""
        import tempfile
        import time
        from pathlib import Path

        from ..data.imageset import refuse_test_data
        from ..metrics import auroc

        refuse_test_data(val, "CutPaste's diagnostic curve (validation split only)")
        hp, curve = self.hp, {"step": [], "val_AUROC": [], "task_accuracy": []}
        normals = val.subset(np.flatnonzero(val.labels == 0)[: hp["curve_probe"]])
        probe_gen = torch.Generator().manual_seed(hp["seed"] * 1_000_003 + 17)
        probe, probe_labels = self.augment(normals.images.float().div(255.0), probe_gen)

        def record(step: int) -> None:
            t0 = time.perf_counter()
            self.model.eval()
            with torch.no_grad():
                density = GaussianDensity().fit(self.embed(train))
                curve["val_AUROC"].append(auroc(val.labels, density.mahalanobis(self.embed(val))))
                logits = torch.cat([self.model(b.to(self.device)) for b in probe.split(256)])
                curve["task_accuracy"].append(float((logits.argmax(1).cpu() == probe_labels.cpu()).float().mean()))
            curve["step"].append(step)
            curve["seconds"] = curve.get("seconds", 0.0) + time.perf_counter() - t0

        record(0)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.checkpoint_path or str(Path(tmp) / "cutpaste_curve.pt")
            for end in [*range(hp["curve_every"], hp["steps"], hp["curve_every"]), hp["steps"]]:
                history = train_fn(stop_after=end, checkpoint_path=path)
                record(end)
        history.extras["curve"] = curve
        return history

    def _require_fit(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() before score()/embed()")

    @torch.no_grad()
    def embed(self, images) -> np.ndarray:
        """The representation the density is fitted on: pooled ResNet features (or head output), (N, D)."""
        self._require_fit()
        self.model.eval()
        bs = max(self.hp["batch_size"], 64)
        parts = []
        batches = checked_float_batches(images, bs, channels=self._channels, size=self._size, who=self.name)
        for batch in progress_bar(batches, total=-(-len(images) // bs), desc="CutPaste embedding",
                          disable=not self.progress, leave=False):
            z = self.model.features(batch.to(self.device))
            if self.hp["embedding"] == "head":
                z = self.model.head(z)
            if self.hp["normalize_embedding"]:
                z = F.normalize(z, dim=1)
            parts.append(z.double().cpu())
        return torch.cat(parts).numpy()

    def score(self, images) -> np.ndarray:
        """Mahalanobis distance of the embedding to the Gaussian of the training normals."""
        self._require_fit()
        if self.density is None:
            raise RuntimeError(f"{self.name}: the density was not fitted; call fit()")
        return self.density.mahalanobis(self.embed(images))

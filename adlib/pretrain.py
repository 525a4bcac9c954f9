"""Supervised CIFAR-10 pretraining of torchvision backbones, for offline 'pretrained' features.

The feature layers of torchvision's VGG19 / DenseNet121 / ResNet18 / WideResNet50-2 are trained as CIFAR-10
classifiers at 32 px with the standard augmentation (4-px padded random crop + horizontal flip). Only natural
images are used, never a medical image, so no anomaly label can leak into the features.

Training-time changes that keep the saved weights loadable into the unchanged torchvision architecture:
* the ImageNet head is replaced by a CIFAR head (global average pool + Linear(C, 10)); it is not saved;
* VGG19 has no BatchNorm and is hard to train from scratch in a few hundred steps, so it is trained as
  torchvision's ``vgg19_bn`` and each BatchNorm is folded into the convolution before it when saving
  (w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta). In eval mode the folded plain VGG19
  computes exactly the same function as the trained BN network (tested).

Runs are step-counted through ``adlib.training.train_steps``: atomic checkpoints, exact resume, tqdm progress.
The finished feature weights go to ``checkpoints_dir()/backbones`` with a JSON manifest (SHA-256, config,
test accuracy, training time, curves); see ``adlib.backbones``.

Command line: ``python -m adlib.pretrain vgg19 densenet121 [--steps N] [--batch-size B]``.
"""
from __future__ import annotations

import argparse
import math
import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from . import backbones
from .data import ImageSet, load_cifar10_arrays
from .training import ResourceMeter, batch_indices, seed_everything, train_steps

# Default budgets for 2 idle CPU cores (measured at 32 px: VGG19 ~68 train img/s, DenseNet121 ~160,
# ResNet18 ~300): 2.5-7 minutes per backbone. A first budget of ~3,500 images per backbone reached only
# 25-36 % test accuracy, and DenseNet121 features that separated pneumonia *worse* than random ones; with
# these budgets (25,600 / 48,000 / 48,000 images) the features of all three beat random ones
# (notebook 01). Still far below a full CIFAR-10 training (tens of epochs); the manifests record the accuracy.
DEFAULT_STEPS = {"vgg19": 800, "densenet121": 1500, "resnet18": 1500, "wide_resnet50_2": 80}
SMOKE_STEPS = 3


def default_config(arch: str, steps: int | None = None, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0, val_images: int = 250, test_images: int = 1000) -> dict:
    """The training configuration; its hash names the checkpoint, so a changed config retrains."""
    backbones._check_arch(arch)
    return {"arch": arch, "steps": int(steps or DEFAULT_STEPS[arch]), "batch_size": batch_size, "lr": lr,
            "optimizer": "AdamW(wd=5e-4), linear warm-up 5% then cosine",
            "augmentation": "pad 4 + random crop 32, horizontal flip", "image_size": 32, "seed": seed,
            "val_images": val_images, "test_images": test_images, "version": 2}


class CifarNet(nn.Module):
    """A torchvision backbone with a CIFAR-10 head (global average pooling + linear)."""

    def __init__(self, arch: str, seed: int = 0):
        super().__init__()
        self.arch = arch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if arch == "vgg19":
                net = torchvision.models.vgg19_bn(weights=None)
                self.features, width = net.features, 512
            elif arch == "densenet121":
                net = torchvision.models.densenet121(weights=None)
                self.features, width = nn.Sequential(net.features, nn.ReLU(inplace=True)), 1024
            elif arch in ("resnet18", "wide_resnet50_2"):
                net = torchvision.models.get_model(arch, weights=None)
                net.fc = nn.Identity()
                net.avgpool = nn.Identity()
                self.features, width = net, (512 if arch == "resnet18" else 2048)
            else:
                backbones._check_arch(arch)
            self.head = nn.Linear(width, 10)
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("std", torch.ones(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        f = self.features(x)
        f = f.view(len(x), self.head.in_features, -1).mean(-1)
        return self.head(f)

    def torchvision_feature_state(self) -> dict[str, torch.Tensor]:
        """Feature weights under torchvision's key names for the plain architecture (no head)."""
        if self.arch == "vgg19":
            return fold_vgg_bn(self.features)
        if self.arch == "densenet121":
            return {f"features.{k}": v for k, v in self.features[0].state_dict().items()}
        return {k: v for k, v in self.features.state_dict().items() if not k.startswith("fc.")}


@torch.no_grad()
def fold_vgg_bn(features_bn: nn.Sequential) -> dict[str, torch.Tensor]:
    """Fold each BatchNorm of a vgg19_bn feature stack into its convolution -> torchvision vgg19 keys."""
    state, plain_index = {}, 0
    layers = list(features_bn)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            bn = layers[i + 1]
            assert isinstance(bn, nn.BatchNorm2d)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            state[f"features.{plain_index}.weight"] = layer.weight * scale.view(-1, 1, 1, 1)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            state[f"features.{plain_index}.bias"] = (bias - bn.running_mean) * scale + bn.bias
            plain_index += 2  # conv, relu
        elif isinstance(layer, nn.MaxPool2d):
            plain_index += 1
    return {k: v.clone().contiguous() for k, v in state.items()}


def augment(batch: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation, batched: zero-pad by ``pad``, random 32x32 crop, random horizontal flip."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    idx_n = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def cifar10_splits(config: dict) -> tuple[ImageSet, np.ndarray, ImageSet, ImageSet]:
    """(train ImageSet, train class labels, val ImageSet, test ImageSet); val is a seeded hold-out of train."""
    arr = load_cifar10_arrays()
    images = torch.from_numpy(arr["train_images"]).permute(0, 3, 1, 2).contiguous()
    labels = arr["train_labels"]
    perm = np.random.default_rng(config["seed"]).permutation(len(labels))
    val_idx, train_idx = np.sort(perm[:config["val_images"]]), np.sort(perm[config["val_images"]:])
    mk = lambda idx, split: ImageSet(images[idx], labels[idx], raw_labels=labels[idx],  # noqa: E731
                                     meta={"dataset": "cifar10", "split": split})
    # The archive is sorted by class: a seeded random subset of the test split, never its first rows.
    test_idx = np.sort(np.random.default_rng(config["seed"] + 1).permutation(len(arr["test_labels"]))[
        :config["test_images"]])
    test = ImageSet(torch.from_numpy(arr["test_images"][test_idx]).permute(0, 3, 1, 2).contiguous(),
                    arr["test_labels"][test_idx], meta={"dataset": "cifar10", "split": "test"})
    return mk(train_idx, "train"), labels[train_idx], mk(val_idx, "val"), test


@torch.no_grad()
def accuracy(model: nn.Module, images: ImageSet, batch_size: int = 250, progress: bool = False) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = images.images[start:start + batch_size].float() / 255
        correct += int((model(x).argmax(1).numpy() == images.labels[start:start + batch_size]).sum())
    return correct / len(images)


def lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, int(0.05 * steps))
    if step < warm:
        return peak * (step + 1) / warm
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train_cifar10_backbone(arch: str, config: dict | None = None, directory=None, evaluations: int = 4,
                           progress: bool = True) -> backbones.Cifar10Checkpoint:
    """Train ``arch`` on CIFAR-10 with ``config``, resuming from its last checkpoint; write weights + manifest."""
    config = config or default_config(arch)
    tag = backbones.config_tag(config)
    folder = backbones.backbone_dir(directory)
    run_ckpt = folder / f"run_cifar10_{arch}_{tag}.ckpt"
    seed_everything(config["seed"], deterministic=False)
    train, train_labels, val, test = cifar10_splits(config)
    # Normalisation statistics from a seeded random subset (the archive is sorted by class).
    sample = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:10000]]
    mean = (sample.float() / 255).mean(dim=(0, 2, 3))
    std = (sample.float() / 255).std(dim=(0, 2, 3))
    model = CifarNet(arch, seed=config["seed"])
    model.mean.copy_(mean.view(1, 3, 1, 1))
    model.std.copy_(std.view(1, 3, 1, 1))
    model = model.to(memory_format=torch.channels_last)
    # AdamW: with a budget of a few hundred steps, SGD at a CIFAR-typical lr (0.05) diverged for VGG19
    # (loss spikes, chance accuracy); Adam at 1e-3 trains all four architectures stably.
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=5e-4)
    steps, bs, seed = config["steps"], config["batch_size"], config["seed"]
    labels_t = torch.from_numpy(train_labels)

    def batch_loss(net, batch, step):
        # train_steps draws batch_indices(n, bs, step, seed); recompute them for the class labels.
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, config["lr"])
        y = labels_t[batch_indices(len(train), bs, step, seed)]
        x = augment(batch, torch.Generator().manual_seed(seed * 7919 + step))
        x = x.contiguous(memory_format=torch.channels_last)  # ~10% faster convolutions on CPU
        return F.cross_entropy(net(x), y)

    curve = {"val_steps": [], "val_accuracy": []}
    history = None
    # Evaluate (and checkpoint) every `chunk` steps: resume then never repeats a step.
    chunk = max(1, math.ceil(steps / evaluations))
    points = sorted(set(range(chunk, steps, chunk)) | {steps})
    curve_path = folder / f"run_cifar10_{arch}_{tag}.curve.json"
    if curve_path.exists():
        import json
        curve = json.loads(curve_path.read_text())
    for point in points:
        if point in curve["val_steps"]:
            continue
        history = train_steps(model, optimizer, batch_loss, train, steps=steps, batch_size=bs, seed=seed,
                              checkpoint_path=run_ckpt, checkpoint_every=chunk, device=torch.device("cpu"),
                              desc=f"CIFAR-10 {arch}", progress=progress, stop_after=point)
        curve["val_steps"].append(point)
        curve["val_accuracy"].append(accuracy(model, val))
        from .io import atomic_write_text
        import json
        atomic_write_text(curve_path, json.dumps(curve))
        recent = float(np.mean(history.train_loss[-10:]))
        print(f"[adlib.pretrain] {arch} step {point}/{steps}: train loss {recent:.3f}, "
              f"val accuracy {curve['val_accuracy'][-1]:.3f}, "
              f"{history.images_per_second:.1f} train img/s", flush=True)
    if history is None:  # every evaluation already done: reload the final state from the run checkpoint
        history = train_steps(model, optimizer, batch_loss, train, steps=steps, batch_size=bs, seed=seed,
                              checkpoint_path=run_ckpt, device=torch.device("cpu"), progress=False)
    with ResourceMeter(images=len(test)) as meter:
        test_acc = accuracy(model, test)
    every = max(1, len(history.train_loss) // 100)
    losses = np.convolve(history.train_loss, np.ones(every) / every, mode="valid")[::every]
    record = {
        "test_accuracy": test_acc, "test_images": len(test), "val_accuracy": curve["val_accuracy"][-1],
        "train_seconds": round(history.seconds, 1), "train_images_per_second": round(history.images_per_second, 1),
        "eval_images_per_second": round(meter.images_per_second, 1), "threads": torch.get_num_threads(),
        "curve": {"steps": history.steps[::every][:len(losses)], "train_loss": [round(float(v), 4) for v in losses],
                  **curve},
        "normalization": {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std]},
        "reference": "CIFAR-10 (JPEG q75 re-encoding, shared/data), supervised 10-class, 32 px",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }
    ckpt = backbones.write_cifar10_checkpoint(arch, model.torchvision_feature_state(), config, record, directory)
    print(f"[adlib.pretrain] {arch}: test accuracy {100 * test_acc:.1f} % on {len(test)} CIFAR-10 test images, "
          f"{history.seconds:.0f} s training -> {ckpt.path.name} (in the adlib cache)", flush=True)
    return ckpt


def ensure_cifar10_backbone(arch: str, config: dict | None = None, directory=None,
                            progress: bool = True) -> backbones.Cifar10Checkpoint:
    """The checkpoint for exactly ``config`` if it exists with a valid hash; otherwise train it (resuming)."""
    config = config or default_config(arch)
    found = backbones.find_cifar10_checkpoint(arch, config, directory)
    if found is not None:
        found.verify()
        print(f"[adlib.pretrain] found {found.path.name} (config {found.tag}, test accuracy "
              f"{100 * found.manifest['test_accuracy']:.1f} %); not retraining", flush=True)
        return found
    print(f"[adlib.pretrain] no CIFAR-10 checkpoint of {arch} with config {backbones.config_tag(config)}; "
          f"training {config['steps']} steps of {config['batch_size']} images", flush=True)
    return train_cifar10_backbone(arch, config, directory, progress=progress)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archs", nargs="+", choices=backbones.TORCHVISION_ARCHS)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="checkpoint directory (default checkpoints_dir()/backbones)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for arch in args.archs:
        t0 = time.time()
        config = default_config(arch, args.steps, args.batch_size, test_images=args.test_images)
        ensure_cifar10_backbone(arch, config, args.dir)
        print(f"[adlib.pretrain] {arch} done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

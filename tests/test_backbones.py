"""adlib.backbones / adlib.pretrain: shapes, input adaptation, weight resolution, checkpoint integrity.

Everything runs on random weights or tiny synthetic state dicts; nothing here needs a trained checkpoint
or the network.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from adlib import backbones
from adlib.backbones import (LAYERS, CheckpointHashError, FeatureExtractor, WeightsNotAvailableError,
                             feature_statistics, load_model, resolve_weights)


def expected_stride(arch: str, layer: str) -> int:
    if arch == "vgg19":
        block = int(layer[-3] if layer.startswith("relu") else layer[-1])
        return 2 ** (block - 1) if layer.startswith("relu") else 2 ** block
    if arch == "densenet121":
        i = int(layer[-1])
        return 4 * 2 ** (i - 1) if layer.startswith("denseblock") else 4 * 2 ** i
    return 4 * 2 ** (int(layer[-1]) - 1)  # resnets: layer1 at 1/4


@pytest.fixture(scope="module", params=backbones.ARCHS)
def extractor(request):
    torch.manual_seed(0)
    return FeatureExtractor(request.param, list(LAYERS[request.param]), weights="random", seed=0)


@pytest.mark.parametrize("size", [28, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_feature_shapes_every_layer(extractor, size, channels):
    x = torch.rand(1, channels, size, size)
    with torch.no_grad():
        out = extractor(x)
    assert list(out) == extractor.layers
    net_size = max(size, backbones.MIN_INPUT_SIZE)  # 28 px is upsampled to 32 px (resize policy)
    for layer, feats in out.items():
        side = net_size // expected_stride(extractor.arch, layer)
        assert tuple(feats.shape) == (1, extractor.out_channels[layer], side, side), (layer, size)
        assert torch.isfinite(feats).all()


def test_extractor_is_frozen_eval_and_passes_input_gradients(extractor):
    extractor.train()  # must stay in eval mode
    assert not extractor.training and not any(m.training for m in extractor.modules())
    assert not any(p.requires_grad for p in extractor.parameters())
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    extractor(x)[extractor.layers[0]].mean().backward()  # perceptual losses need d(features)/d(input)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_input_adaptation_gray_uint8_resize():
    ext = FeatureExtractor("resnet18", ["layer1", "layer2"], weights="random")
    gray = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        a, b = ext(gray), ext(gray.repeat(1, 3, 1, 1))
        c = ext((gray * 255).round().to(torch.uint8))
        d = ext((gray * 255).round() / 255)
    for layer in ext.layers:
        torch.testing.assert_close(a[layer], b[layer])  # grayscale == the same image as RGB
        torch.testing.assert_close(c[layer], d[layer])  # uint8 is scaled to [0, 1]
    assert ext.target_size(28, 28) == (32, 32) and ext.target_size(64, 64) == (64, 64)
    prepared = ext.prepare(torch.full((1, 1, 28, 28), 0.5))
    assert prepared.shape == (1, 3, 32, 32)
    mean, std = torch.tensor(backbones.IMAGENET_MEAN), torch.tensor(backbones.IMAGENET_STD)
    torch.testing.assert_close(prepared[0, :, 0, 0], (0.5 - mean) / std)  # the weights' normalisation
    sized = FeatureExtractor("resnet18", ["layer1"], weights="random", input_size=64)
    with torch.no_grad():
        assert sized(torch.rand(1, 3, 28, 28))["layer1"].shape[-1] == 16  # 64 px / 4
        assert sized(torch.rand(1, 3, 128, 128))["layer1"].shape[-1] == 16
    with pytest.raises(ValueError, match="channels"):
        ext(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="unknown layer"):
        FeatureExtractor("resnet18", ["relu3_2"], weights="random")
    with pytest.raises(ValueError, match="unknown backbone"):
        FeatureExtractor("alexnet", ["layer1"], weights="random")


def test_random_weights_are_seeded():
    a, _ = load_model("resnet18", "random", seed=3)
    b, _ = load_model("resnet18", "random", seed=3)
    c, _ = load_model("resnet18", "random", seed=4)
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


@pytest.fixture
def empty_weight_dirs(tmp_path, monkeypatch):
    """No ImageNet file, no CIFAR-10 checkpoint, no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ADLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("ADLIB_OFFLINE", "1")
    return tmp_path


def _tiny_cifar10_checkpoint(arch="resnet18", seed=11):
    state = {k: v for k, v in backbones._build(arch, seed).state_dict().items()
             if not k.startswith(backbones.HEAD_PREFIX[arch])}
    config = {"arch": arch, "steps": 1, "batch_size": 2, "test": True}
    record = {"test_accuracy": 0.1, "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return backbones.write_cifar10_checkpoint(arch, state, config, record), state


def _imagenet_file(arch="resnet18", seed=5):
    path = backbones.imagenet_checkpoint_path(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = backbones._build(arch, seed).state_dict()
    torch.save(state, path)
    return path, state


def test_auto_resolution_order_and_error(empty_weight_dirs):
    with pytest.raises(WeightsNotAvailableError, match="adlib.pretrain"):
        resolve_weights("resnet18", "auto")  # nothing available: an error, never random
    with pytest.raises(WeightsNotAvailableError, match="resnet18-f37072fd.pth"):
        resolve_weights("resnet18", "imagenet")
    with pytest.raises(WeightsNotAvailableError):
        FeatureExtractor("resnet18", ["layer1"])
    assert resolve_weights("resnet18", "random") == "random"
    _tiny_cifar10_checkpoint()
    assert resolve_weights("resnet18", "auto") == "cifar10"
    assert resolve_weights("vgg19", "random") == "random"
    with pytest.raises(WeightsNotAvailableError):
        resolve_weights("vgg19", "auto")  # the resnet18 checkpoint does not count for vgg19
    _imagenet_file()
    assert resolve_weights("resnet18", "auto") == "imagenet"  # imagenet first when obtainable
    assert resolve_weights("resnet18", "cifar10") == "cifar10"
    with pytest.raises(ValueError, match="unknown weights"):
        resolve_weights("resnet18", "imagenet21k")


def test_imagenet_path_loads_named_file_from_torch_home(empty_weight_dirs, capsys):
    path, state = _imagenet_file("resnet18", seed=5)
    model, source = load_model("resnet18", "imagenet")
    assert source == "imagenet" and "using imagenet weights" in capsys.readouterr().out
    for key in ("conv1.weight", "layer3.0.bn1.running_mean", "fc.weight"):
        torch.testing.assert_close(model.state_dict()[key], state[key])
    ext = FeatureExtractor("resnet18", ["layer2"], weights="auto")
    assert ext.weights_source == "imagenet"
    torch.testing.assert_close(ext.mean.flatten(), torch.tensor(backbones.IMAGENET_MEAN))


def test_cifar10_checkpoint_loads_and_wrong_hash_is_refused(empty_weight_dirs, capsys):
    ckpt, state = _tiny_cifar10_checkpoint("resnet18", seed=11)
    manifest = json.loads(ckpt.manifest_path.read_text())
    assert manifest["sha256"] == backbones.file_digest(ckpt.path)
    model, source = load_model("resnet18", "cifar10")
    assert source == "cifar10" and "using cifar10 weights" in capsys.readouterr().out
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    ext = FeatureExtractor("resnet18", ["layer1"], weights="cifar10")
    torch.testing.assert_close(ext.std.flatten(), torch.full((3,), 0.25))  # the manifest's normalisation
    tampered = dict(state)
    tampered["conv1.weight"] = tampered["conv1.weight"] + 1e-3
    torch.save(tampered, ckpt.path)  # same name, different bytes
    with pytest.raises(CheckpointHashError, match="refused"):
        load_model("resnet18", "cifar10")
    with pytest.raises(CheckpointHashError):
        FeatureExtractor("resnet18", ["layer1"], weights="auto")


def test_feature_statistics_shape_and_cache(empty_weight_dirs):
    ext = FeatureExtractor("resnet18", ["layer1", "layer2"], weights="random")
    mean, std = feature_statistics(ext, "layer2", n_images=16, batch_size=8)
    assert mean.shape == std.shape == (ext.out_channels["layer2"],)
    assert (std > 0).all() and torch.isfinite(mean).all()
    cached = list(ext.info.cache_dir.glob("stats_resnet18_random-seed0_layer2_32px_16img_seed0.pt"))
    assert len(cached) == 1
    again = feature_statistics(ext, "layer2", n_images=16, batch_size=8)
    torch.testing.assert_close(again[0], mean)
    with pytest.raises(ValueError):
        feature_statistics(ext, "layer4")


def test_vgg_batchnorm_folding_is_exact():
    from adlib.pretrain import CifarNet

    net = CifarNet("vgg19", seed=0).eval()
    with torch.no_grad():  # non-trivial BN statistics, as after training
        for m in net.features:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    # torchvision's plain VGG19 feature stack (built without the 100M-parameter classifier, for speed)
    plain = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"], batch_norm=False).eval()
    folded = net.torchvision_feature_state()
    assert all(k.startswith("features.") for k in folded)
    plain.load_state_dict({k.removeprefix("features."): v for k, v in folded.items()}, strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net.features(x), rtol=1e-4, atol=1e-4)


def test_augment_crop_and_flip():
    from adlib.pretrain import augment

    batch = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment(batch, torch.Generator().manual_seed(0), pad=0)
    for i in range(2):  # no padding: each image is itself or its mirror image
        assert torch.equal(out[i], batch[i]) or torch.equal(out[i], batch[i].flip(-1))
    padded = augment(batch, torch.Generator().manual_seed(1), pad=2)
    assert padded.shape == batch.shape
    assert torch.equal(padded, augment(batch, torch.Generator().manual_seed(1), pad=2))  # seeded


def test_tiny_pretraining_writes_manifest_and_is_found_not_retrained(tmp_path, monkeypatch, capsys):
    from adlib import pretrain

    monkeypatch.setenv("ADLIB_CHECKPOINTS", str(tmp_path))
    rng = np.random.default_rng(0)  # a small synthetic stand-in for the CIFAR-10 arrays keeps this test fast
    fake = {f"{split}_images": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for split, n in
            [("train", 120), ("test", 60)]}
    fake.update(train_labels=np.arange(120) % 10, test_labels=np.sort(np.arange(60) % 10))
    monkeypatch.setattr(pretrain, "load_cifar10_arrays", lambda: fake)
    config = pretrain.default_config("resnet18", steps=2, batch_size=8, val_images=16, test_images=32)
    ckpt = pretrain.ensure_cifar10_backbone("resnet18", config, progress=False)
    manifest = ckpt.manifest
    assert manifest["sha256"] == backbones.file_digest(ckpt.path) and manifest["config"] == config
    assert 0.0 <= manifest["test_accuracy"] <= 1.0 and manifest["test_images"] == 32
    assert manifest["curve"]["val_steps"][-1] == 2 and manifest["train_seconds"] > 0
    capsys.readouterr()
    again = pretrain.ensure_cifar10_backbone("resnet18", config, progress=False)
    assert "not retraining" in capsys.readouterr().out and again.path == ckpt.path
    ext = FeatureExtractor("resnet18", ["layer3"], weights="cifar10")
    assert ext.weights_source == "cifar10"

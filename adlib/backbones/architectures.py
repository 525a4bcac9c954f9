"""The seven backbone architectures and the readable names of the layers a FeatureExtractor exposes.

Four come from torchvision (``vgg19``, ``densenet121``, ``resnet18``, ``wide_resnet50_2``); EfficientNet-Lite0/1/2
(``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``) are this project's own network code
(:mod:`adlib.backbones.efficientnet_lite`). EfficientNet-Lite layers are its seven block groups (plus the 1x1
head conv), named by index and output stride: ``stage1_s2`` ``stage2_s4`` ``stage3_s8`` ``stage4_s16``
``stage5_s16`` ``stage6_s32`` ``stage7_s32`` ``head_s32``.
"""
from __future__ import annotations

TORCHVISION_ARCHS = ("vgg19", "densenet121", "resnet18", "wide_resnet50_2")
LITE_ARCHS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ARCHS = TORCHVISION_ARCHS + LITE_ARCHS


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

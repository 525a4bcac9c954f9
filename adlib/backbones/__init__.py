"""Pretrained CNN feature extractors that also work offline.

Seven architectures: four from torchvision (``vgg19``, ``densenet121``, ``resnet18``, ``wide_resnet50_2``) and
EfficientNet-Lite0/1/2 (network code in this package). Weight sources, chosen by name and recorded with every
result: ``imagenet`` (torchvision's files), ``imagenet-lite`` (the ImageNet files of the Lite pip packages),
``cifar10`` (this project's own pretraining, ``adlib.pretrain``), ``random``; ``auto`` picks the best one that is
available and never falls back to random weights silently.

One module per job:

``architectures``      the architectures and the readable names of their layers
``efficientnet_lite``  the EfficientNet-Lite network (TensorFlow 'SAME' padding) and its weight-file key names
``weight_files``       where each source's file is, whether it can be had offline, SHA-256 checks, the
                       CIFAR-10 checkpoint store
``weights``            resolving a source (``auto``) and loading a model with it (:class:`WeightsInfo`)
``extractor``          :class:`FeatureExtractor`: frozen features, input adaptation in one place;
                       :func:`describe_weights` (the result-row columns naming the weights)
``statistics``         per-channel feature statistics over natural images (DPA's normalisation)
``readouts``           pooled features, nearest neighbours, k-NN score, linear probe (notebook 01)

Every name is re-exported here, so ``from adlib.backbones import X`` and ``backbones.X`` keep working. To
monkeypatch a function, patch the module that owns it (e.g. ``adlib.backbones.weight_files.lite_weights_path``).
"""
from .architectures import (ARCHS, HEAD_PREFIX, LAYERS, LITE_ARCHS, LITE_STRIDES, TORCHVISION_ARCHS,
                            _check_arch)  # noqa: F401  (_check_arch: adlib.pretrain validates its arguments with it)
from .efficientnet_lite import EfficientNetLite, MBConvLite, SameConv2d, lite_stage_specs, lite_state_from_package
from .extractor import MIN_INPUT_SIZE, FeatureExtractor, describe_weights
from .readouts import cosine_neighbours, knn_anomaly_scores, linear_probe_scores, pooled_features
from .statistics import REFERENCE_SET, feature_statistics
from .weight_files import (EXPECTED_SHA256, CheckpointHashError, Cifar10Checkpoint, WeightsNotAvailableError,
                           backbone_dir, cached_file_digest, cifar10_checkpoints, config_tag, find_cifar10_checkpoint,
                           imagenet_available, imagenet_checkpoint_path, imagenet_weights_enum,
                           lite_weights_available, lite_weights_path, verify_lite_weights, write_cifar10_checkpoint)
from .weights import (IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, SOURCES, WeightsInfo, load_backbone,
                      load_model, resolve_weights)

__all__ = [
    "ARCHS", "HEAD_PREFIX", "LAYERS", "LITE_ARCHS", "LITE_STRIDES", "TORCHVISION_ARCHS",
    "EfficientNetLite", "MBConvLite", "SameConv2d", "lite_stage_specs", "lite_state_from_package",
    "MIN_INPUT_SIZE", "FeatureExtractor",
    "cosine_neighbours", "knn_anomaly_scores", "linear_probe_scores", "pooled_features",
    "REFERENCE_SET", "feature_statistics",
    "EXPECTED_SHA256", "CheckpointHashError", "Cifar10Checkpoint", "WeightsNotAvailableError", "backbone_dir",
    "cached_file_digest", "cifar10_checkpoints", "config_tag", "find_cifar10_checkpoint", "imagenet_available",
    "imagenet_checkpoint_path", "imagenet_weights_enum", "lite_weights_available", "lite_weights_path",
    "verify_lite_weights", "write_cifar10_checkpoint",
    "IMAGENET_MEAN", "IMAGENET_STD", "LITE_MEAN", "LITE_STD", "SOURCES", "WeightsInfo", "describe_weights",
    "load_backbone", "load_model", "resolve_weights",
]

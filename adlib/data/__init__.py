"""Datasets and the anomaly-detection protocol (see protocol.py for the rules)."""
from .cifar import CLASSES as CIFAR10_CLASSES, cifar10_one_vs_rest, load_cifar10_arrays
from .imageset import (ANOMALOUS, NORMAL, ImageSet, TestDataError, as_float_tensor, concat, iter_float_batches,
                       refuse_test_data, require_marked)
from .medmnist_files import ChecksumError, DataNotFoundError, DataSource, locate
from .protocol import DATASETS, Protocol, few_shot_anomalies, load_split, make_multidomain, make_protocol
from .synthetic import make_phantoms, make_synthetic_protocol

__all__ = [
    "ANOMALOUS", "NORMAL", "ImageSet", "TestDataError", "refuse_test_data", "require_marked", "as_float_tensor", "concat", "iter_float_batches",
    "ChecksumError", "DataNotFoundError", "DataSource", "locate",
    "DATASETS", "Protocol", "few_shot_anomalies", "load_split", "make_multidomain", "make_protocol",
    "make_phantoms", "make_synthetic_protocol", "CIFAR10_CLASSES", "cifar10_one_vs_rest", "load_cifar10_arrays",
]

"""Run profiles as data: how big a run is, not what it computes.

smoke : under a minute per notebook, for tests (tiny subsets, a few steps, one seed);
cpu   : at most ~20 minutes per notebook on 2 CPU cores (reduced sizes, stated in each notebook);
paper : the paper's protocol (needs a GPU).
Notebooks read the generic fields here and keep their method-specific sizes in a dict keyed by profile.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: tuple[int, ...]
    image_size: int
    max_train: int | None  # cap on training normals (None = all)
    max_eval: int | None  # cap on val/test images used in figures that scale badly (t-SNE); metrics use all
    epochs_scale: float  # fraction of the paper's training length
    batch_size: int
    description: str
    extra: dict = field(default_factory=dict)


PROFILES = {
    "smoke": Profile("smoke", (0,), 28, 128, 200, 0.01, 32, "seconds-long check that everything runs"),
    "cpu": Profile("cpu", (0, 1, 2), 64, None, 1000, 0.1, 64, "reduced run that fits 20 min on 2 CPU cores"),
    "paper": Profile("paper", (0, 1, 2), 64, None, None, 1.0, 128, "the paper's protocol; needs a CUDA GPU"),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile; None picks 'paper' with a CUDA GPU and 'cpu' otherwise."""
    if name is None:
        name = "paper" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]

"""Run profiles as data: how big a run is, not what it computes.

smoke : under a minute per notebook, for tests (tiny subsets, a few steps, one seed);
cpu   : at most ~20 minutes per notebook on 2 CPU cores (reduced sizes, stated in each notebook);
paper : the paper's protocol (needs a GPU).

Every profile computes with one torch intra-op thread per process (`adlib.runtime`): torch's CPU results depend on
the thread count, so one fixed count makes the numbers the same on a 2-core and a 16-core machine.

The profile is resolved in one place, `resolve_profile_name`: the name a notebook's ``parameters`` cell passes,
else ``$ADLIB_PROFILE`` (what ``./run_all.sh`` and the test suite set), else ``paper`` on a CUDA GPU and ``cpu``
without. `activate` makes it the process's active profile, which decides where figures and results go
(`adlib.paths`) and sets torch's CPU threads (one; `$ADLIB_THREADS` overrides, with a warning). Run sizes per
notebook live in `adlib/configs/` (`adlib.config.load_run_config`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .runtime import DEFAULT_THREADS, set_cpu_threads


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: tuple[int, ...]
    description: str
    default_threads: int  # torch intra-op threads per process ($ADLIB_THREADS overrides)


PROFILES = {
    # One thread everywhere: torch's CPU numbers depend on the thread count (adlib.runtime), and speed comes from
    # parallel processes instead (./run_all.sh --jobs, joblib); the README's "Reproducibility" section has the
    # measurements behind this choice.
    "smoke": Profile("smoke", (0,), "seconds-long check that everything runs", DEFAULT_THREADS),
    "cpu": Profile("cpu", (0, 1, 2), "reduced run that fits 20 min on 2 CPU cores", DEFAULT_THREADS),
    "paper": Profile("paper", (0, 1, 2), "the paper's protocol; needs a CUDA GPU", DEFAULT_THREADS),
}

_ACTIVE: str | None = None


def resolve_profile_name(name: str | None = None) -> str:
    """The profile to use: ``name``, else $ADLIB_PROFILE, else paper with a CUDA GPU and cpu without."""
    name = name or os.environ.get("ADLIB_PROFILE") or ("paper" if torch.cuda.is_available() else "cpu")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return name


def get_profile(name: str | None = None) -> Profile:
    return PROFILES[resolve_profile_name(name)]


def activate(name: str | None = None) -> Profile:
    """Make a profile the active one (figures/results folders, CPU threads); returns it."""
    global _ACTIVE
    profile = get_profile(name)
    _ACTIVE = profile.name
    set_cpu_threads(profile.default_threads)
    return profile


def active_profile_name() -> str:
    """The profile activated in this process, else the one `resolve_profile_name` gives."""
    return _ACTIVE or resolve_profile_name(None)

"""Where things live: data, caches, figures and results.

Every location can be overridden by an environment variable so that tests, CI and users with
their own layout all work without editing code.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Directory searched for dataset files: $ADLIB_DATA, else a per-user cache."""
    env = os.environ.get("ADLIB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """Per-user cache (decoded arrays, downloaded files, trained backbones): $ADLIB_CACHE."""
    env = os.environ.get("ADLIB_CACHE")
    base = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adlib"
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def figures_dir() -> Path:
    path = Path(os.environ.get("ADLIB_FIGURES", PROJECT_ROOT / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    path = Path(os.environ.get("ADLIB_RESULTS", PROJECT_ROOT / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    path = Path(os.environ.get("ADLIB_CHECKPOINTS", cache_dir() / "checkpoints"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    """True when downloads must not be attempted ($ADLIB_OFFLINE=1)."""
    return os.environ.get("ADLIB_OFFLINE", "0").lower() in {"1", "true", "yes"}

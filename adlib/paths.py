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


def profile_dir(kind: str, env: str, profile: str, create: bool = True) -> Path:
    """figures/ or results/ for the cpu profile (the committed outputs), figures/<profile>/ for any other, so
    that no profile ever overwrites another's files. $ADLIB_FIGURES / $ADLIB_RESULTS override the base."""
    base = Path(os.environ[env]) if os.environ.get(env) else PROJECT_ROOT / kind
    path = base if profile == "cpu" else base / profile
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    from .profiles import active_profile_name

    return profile_dir("figures", "ADLIB_FIGURES", active_profile_name())


def results_dir() -> Path:
    from .profiles import active_profile_name

    return profile_dir("results", "ADLIB_RESULTS", active_profile_name())


def results_dir_of(profile: str) -> Path:
    """A given profile's results folder (not the active one's), without creating it."""
    return profile_dir("results", "ADLIB_RESULTS", profile, create=False)


def relative_to_project(path: str | os.PathLike) -> str:
    """A path as printed in notebooks: relative to the repository when inside it (no machine-specific parts)."""
    given = Path(path)
    if not given.is_absolute() and not given.exists() and (PROJECT_ROOT / given).exists():
        return str(given)  # already relative to the repository (e.g. what ResultsTable.save returns)
    p = given.resolve()
    try:
        return str(p.relative_to(PROJECT_ROOT))
    except ValueError:  # outside the repository (a scratch directory): nothing to hide
        return str(p)


def checkpoints_dir() -> Path:
    path = Path(os.environ.get("ADLIB_CHECKPOINTS", cache_dir() / "checkpoints"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    """True when downloads must not be attempted ($ADLIB_OFFLINE=1)."""
    return os.environ.get("ADLIB_OFFLINE", "0").lower() in {"1", "true", "yes"}

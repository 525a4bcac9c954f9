"""One run configuration per notebook, with smoke / cpu / paper sections, read once.

``adlib/configs/NN_name.toml`` holds everything a notebook's size depends on (steps, grids, subsets, seeds,
image size). A ``[common]`` table is shared; ``[smoke]``, ``[cpu]`` and ``[paper]`` override it key by key
(nested tables are merged). `load_run_config` resolves the profile (`adlib.profiles`), activates it (output
folders, CPU threads) and returns a read-only `RunConfig`; its SHA-256 goes into every result row.
"""
from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .profiles import PROFILES, Profile, activate

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _freeze(value):
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class RunConfig:
    """The sizes of one notebook's run in one profile: ``cfg.steps`` or ``cfg["steps"]``; read-only."""

    notebook: str
    profile: Profile
    values: Mapping[str, Any]
    sha256: str

    def __getattr__(self, key: str):
        values = object.__getattribute__(self, "values")
        if key in values:
            return values[key]
        raise AttributeError(f"{self.notebook} config ({self.profile.name}) has no key {key!r}; "
                             f"keys: {', '.join(sorted(values))}")

    def __getitem__(self, key: str):
        return self.values[key]

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.values.get("seeds", self.profile.seeds))

    def as_dict(self) -> dict:
        def thaw(v):
            if isinstance(v, Mapping):
                return {k: thaw(x) for k, x in v.items()}
            if isinstance(v, tuple):
                return [thaw(x) for x in v]
            return v
        return thaw(self.values)

    def summary(self) -> str:
        return f"{self.notebook} [{self.profile.name}]: " + json.dumps(self.as_dict(), sort_keys=True)


def config_path(notebook: str) -> Path:
    path = CONFIG_DIR / f"{notebook}.toml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no run configuration {path}; known: {', '.join(known)}")
    return path


def load_run_config(notebook: str, profile: str | None = None) -> RunConfig:
    """Read ``adlib/configs/<notebook>.toml`` for ``profile`` (see `adlib.profiles.resolve_profile_name`)
    and activate that profile."""
    path = config_path(notebook)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    unknown = set(data) - {"common", *PROFILES}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; use [common], "
                         + ", ".join(f"[{p}]" for p in PROFILES))
    prof = activate(profile)
    if prof.name not in data:
        raise ValueError(f"{path} has no [{prof.name}] section")
    values = _merge(data.get("common", {}), data[prof.name])
    digest = hashlib.sha256(raw).hexdigest()
    return RunConfig(notebook, prof, _freeze(values), digest)

"""One run configuration per notebook, with smoke / cpu / paper sections, read once.

``adlib/configs/NN_name.toml`` holds everything a notebook's size depends on (steps, grids, subsets, seeds,
image size). A ``[common]`` table is shared; ``[smoke]``, ``[cpu]`` and ``[paper]`` override it key by key
(nested tables are merged). `load_run_config` resolves the profile (`adlib.profiles`), activates it (output
folders, CPU threads) and returns a read-only `RunConfig`; its SHA-256 goes into every result row.

``$ADLIB_MAX_STEPS=N`` caps every step and epoch count of the loaded configuration (every integer under a key
named ``steps`` / ``epochs`` or ending in ``_steps`` / ``_epochs``, nested tables included) at N: a quick check
that a profile's code path runs end to end (e.g. the paper profile on a CPU), not a result. It is read here and
nowhere else; the capped keys are printed and the cap changes the configuration's SHA-256.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .profiles import PROFILES, Profile, activate

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MAX_STEPS_ENV = "ADLIB_MAX_STEPS"


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
    max_steps: int | None = None  # the $ADLIB_MAX_STEPS cap applied, if any

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


def max_steps_cap() -> int | None:
    """$ADLIB_MAX_STEPS as a whole number of 1 or more, or None when unset."""
    from .runtime import positive_int_env

    return positive_int_env(MAX_STEPS_ENV, "steps", "unset it for the configured step counts")


def is_step_count_key(key: str) -> bool:
    """Keys that hold a number of training steps or epochs (``steps``, ``grid_steps``, ``epochs``, ...)."""
    return key in ("steps", "epochs") or key.endswith(("_steps", "_epochs"))


def cap_step_counts(values: dict, cap: int, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Lower every step/epoch count in ``values`` (nested dicts included) to at most ``cap``, in place;
    returns {dotted key: (before, after)} of the counts it lowered."""
    lowered = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lowered.update(cap_step_counts(value, cap, name + "."))
        elif is_step_count_key(key) and isinstance(value, int) and not isinstance(value, bool) and value > cap:
            values[key] = cap
            lowered[name] = (value, cap)
    return lowered


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
    cap = max_steps_cap()
    if cap is not None:
        lowered = cap_step_counts(values, cap)
        raw += f"\n# {MAX_STEPS_ENV}={cap}\n".encode()  # a capped run has its own configuration hash
        shown = ", ".join(f"{k} {a}->{b}" for k, (a, b) in lowered.items()) or "none above the cap"
        print(f"[adlib] {MAX_STEPS_ENV}={cap}: step/epoch counts capped for a check run, not for results "
              f"({notebook} [{prof.name}]: {shown})", flush=True)
    digest = hashlib.sha256(raw).hexdigest()
    return RunConfig(notebook, prof, _freeze(values), digest, cap)

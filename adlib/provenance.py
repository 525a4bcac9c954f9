"""Where a number came from: code version, machine, threads, device. Added to every result row."""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

from .paths import PROJECT_ROOT


# What a result depends on: the library (with its run configurations, adlib/configs/) and the notebooks' sources.
# A change to any of them (tracked or a new, untracked file) marks the commit "+dirty". Executed notebooks
# (notebooks/*.ipynb), figures and result tables are outputs, not inputs, and are not looked at.
CODE_PATHS = ("adlib", ":(glob)notebooks/*.py")


@functools.lru_cache(maxsize=4)
def git_commit(root: str | Path = PROJECT_ROOT) -> str:
    """HEAD's commit in ``root`` (the repository), with ``+dirty`` when the code differs from it
    (`CODE_PATHS`: adlib/ including its configs, notebooks/*.py), or 'unknown' outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str | None = None) -> str:
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()})"


def run_provenance(device: torch.device | str | None = None) -> dict:
    """Columns describing the code and machine of a run (the same for every row of a notebook run)."""
    return {"git_commit": git_commit(), "device": device_name(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__}

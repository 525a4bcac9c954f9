"""Where a number came from: code version, machine, threads, device. Added to every result row."""
from __future__ import annotations

import functools
import platform
import re
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


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_kind() -> dict[str, str]:
    """The CPU's model name and the vector width torch's own kernels use on it. Results are bit-identical only on
    the same CPU kind: another kind picks other kernels (README, "What a re-run reproduces")."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    model = found.group(1).strip() if found else (platform.processor() or "unknown")
    # a model name such as "Intel(R) Xeon(R) Processor" covers several generations: the instruction sets that
    # choose oneDNN's and MKL's kernels tell them apart
    found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    flags = set(found.group(1).split()) if found else set()
    isa = " ".join(f for f in ISA_FLAGS if f in flags) or "unknown"
    return {"cpu_model": model, "cpu_isa": isa, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def run_provenance(device: torch.device | str | None = None) -> dict:
    """Columns describing the code and machine of a run (the same for every row of a notebook run)."""
    return {"git_commit": git_commit(), "device": device_name(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, **cpu_kind()}

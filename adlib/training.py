"""Training-loop helpers shared by every method.

- `choose_device`, `seed_everything`: where to run, and the same numbers twice.
- `train_steps`: a step-counted loop whose batch order depends only on (seed, step), so a run that is
  interrupted and resumed from its last atomic checkpoint ends exactly where an uninterrupted one does.
- Early stopping on a held-out part of the *normal* training images (never on anomalies).
- `ResourceMeter`: wall time, throughput and peak memory of a block of work.
"""
from __future__ import annotations

import copy
import os
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.imageset import ImageSet
from .io import atomic_torch_save


def choose_device(prefer: str | None = None) -> torch.device:
    """cuda when available (or when asked for), else cpu."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_cpu_threads() -> int:
    """Use $ADLIB_THREADS CPU threads for torch (default: every core); returns the number set.

    On a machine shared with other jobs, ADLIB_THREADS=1 avoids oversubscribed threads thrashing.
    """
    wanted = os.environ.get("ADLIB_THREADS")
    try:
        n = int(wanted) if wanted else (os.cpu_count() or 1)
    except ValueError:
        raise ValueError(f"ADLIB_THREADS must be a positive integer, got {wanted!r}") from None
    if n < 1:
        raise ValueError(f"ADLIB_THREADS must be a positive integer, got {wanted!r}")
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def split_holdout(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split training normals into (fit, holdout) for early stopping; seeded."""
    n = len(images)
    n_hold = max(1, int(round(fraction * n))) if fraction > 0 else 0
    perm = np.random.default_rng(seed).permutation(n)
    return images.subset(np.sort(perm[n_hold:])), images.subset(np.sort(perm[:n_hold]))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch used at ``step``: a fresh seeded permutation per epoch, so any step is
    reproducible without replaying the ones before it (what makes resume exact)."""
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[pos * batch_size:(pos + 1) * batch_size]


@dataclass
class TrainHistory:
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    holdout_loss: list[float] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    images_seen: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds > 0 else float("nan")


def save_checkpoint(path: Path, **state) -> None:
    atomic_torch_save(state, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batch_loss: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor],
                train: ImageSet, *, steps: int, batch_size: int, seed: int,
                holdout: ImageSet | None = None, eval_every: int = 100, patience: int | None = None,
                checkpoint_path: str | Path | None = None, checkpoint_every: int = 200,
                device: torch.device | None = None, desc: str = "training", progress: bool = True,
                stop_after: int | None = None) -> TrainHistory:
    """Run ``steps`` optimisation steps of ``batch_loss(model, batch, step)`` on batches of ``train``.

    holdout/eval_every/patience: evaluate the mean loss on held-out normals every ``eval_every`` steps;
    keep the best weights; stop after ``patience`` evaluations without improvement.
    checkpoint_path: write an atomic checkpoint every ``checkpoint_every`` steps and resume from it.
    stop_after: stop (as if interrupted) after this many steps, for testing resume.
    """
    device = device or choose_device()
    model.to(device)
    history, start, best_state, best_loss, bad_evals = TrainHistory(), 0, None, float("inf"), 0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["step"]
        best_state, best_loss, bad_evals = state["best_state"], state["best_loss"], state["bad_evals"]
    n = len(train)
    if n < batch_size:
        batch_size = n
    t0 = time.perf_counter() - history.seconds
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, initial=start, total=steps, mininterval=1)
    step = start
    for step in bar:
        model.train()
        idx = batch_indices(n, batch_size, step, seed)
        batch = train.images[idx].to(device).float().div_(255.0)
        loss = batch_loss(model, batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.steps.append(step)
        history.train_loss.append(float(loss.detach()))
        history.images_seen += len(idx)
        done = step + 1
        if holdout is not None and (done % eval_every == 0 or done == steps):
            h = evaluate_loss(model, batch_loss, holdout, batch_size, device, done)
            history.eval_steps.append(done)
            history.holdout_loss.append(h)
            if h < best_loss - 1e-6:
                best_loss, bad_evals, history.best_step = h, 0, done
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_evals += 1
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", holdout=f"{h:.4f}")
            if patience is not None and bad_evals >= patience:
                history.stopped_early = True
        history.seconds = time.perf_counter() - t0
        if ckpt is not None and (done % checkpoint_every == 0 or history.stopped_early or done == steps):
            save_checkpoint(ckpt, model=model.state_dict(), optimizer=optimizer.state_dict(), step=done,
                            torch_rng=torch.get_rng_state(), history=history, best_state=best_state,
                            best_loss=best_loss, bad_evals=bad_evals)
        if history.stopped_early or (stop_after is not None and done >= stop_after):
            break
    bar.close()
    if best_state is not None and (stop_after is None or history.stopped_early or step + 1 >= steps):
        model.load_state_dict(best_state)
    return history


@torch.no_grad()
def evaluate_loss(model, batch_loss, images: ImageSet, batch_size: int, device, step: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in images.batches(batch_size):
        total += float(batch_loss(model, batch.to(device), step)) * len(batch)
        count += len(batch)
    return total / max(count, 1)


class ResourceMeter:
    """Measure wall time, throughput and peak memory of a block: ``with ResourceMeter() as m: ...``.

    Peak memory is CUDA's max allocated memory on a GPU, else the process peak RSS (ru_maxrss),
    which includes everything the process held before the block too.
    """

    def __init__(self, images: int = 0):
        self.images = images
        self.seconds = 0.0
        self.peak_mb = float("nan")

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        if torch.cuda.is_available():
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def as_row(self, **labels) -> dict:
        return {**labels, "seconds": round(self.seconds, 2), "images": self.images,
                "images_per_s": round(self.images_per_second, 1), "peak_memory_MB": round(self.peak_mb, 1)}

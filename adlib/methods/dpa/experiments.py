"""DPA-specific helpers for notebook 02: training throughput (and the sentences about it) and DPA-specific
figures. (Running a detector under the protocol is `adlib.experiment.run_experiment`, shared by every notebook;
notebook 02's reading tables and conclusions are in `reading`.)"""
from __future__ import annotations

import logging

import time

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ...training import seed_everything


def measure_training_speed(images: torch.Tensor, layers: tuple[str, ...], weights: str, batch_size: int = 128,
                           steps: int = 2, latent: int = 16, widths: int = 16, cached_targets: bool = False,
                           arch: str = "vgg19", bf16_autocast: bool = False, compiled: bool = False) -> dict:
    """Images/s of DPA training steps (AE forward, target features, reconstruction features, backward to the AE
    only, Adam step) at the images' size, after one warm-up step. cached_targets: the target features are
    computed once beforehand, as DPADetector does for its un-augmented training images. bf16_autocast /
    compiled: CPU speed options measured against the default (bfloat16 autocast of the forward passes;
    torch.compile of the perceptual network). The perceptual network already runs channels_last on maps of
    32 px and more (PerceptualLoss.normalised_features)."""
    from .losses import PerceptualLoss
    from .network import PerceptualAutoencoder

    seed_everything(0)
    x = images[:batch_size].float().div(255.0)
    if len(x) < batch_size:
        raise ValueError(f"need {batch_size} images to time a batch of {batch_size}, got {len(x)}")
    net = PerceptualAutoencoder(x.shape[1], x.shape[-1], widths, latent)
    loss_fn = PerceptualLoss(arch, weights)
    extractor = loss_fn.extractor(tuple(layers))
    eager_body = extractor.body
    if compiled:  # the extractor is shared by the process: compiled only for this measurement
        # torch's C++ extension loader warns on stderr that a CPU-only machine has no CUDA runtime: true, and noise
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        extractor.body = torch.compile(eager_body)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    targets = None
    if cached_targets:
        with torch.no_grad():
            targets = loss_fn.normalised_features(x, layers)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            loss = loss_fn.per_image(x, net(x), layers, target_features=targets).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        step()  # warm-up (allocations, kernel selection; compilation when compiled)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - t0
    finally:
        extractor.body = eager_body
    return {"image_size": x.shape[-1], "batch_size": batch_size, "loss layers": "+".join(layers),
            "targets": "cached" if cached_targets else "computed per step",
            "timed steps": steps, "seconds": round(seconds, 1), "images_per_s": round(steps * batch_size / seconds, 1),
            "bf16_autocast": bf16_autocast, "compiled": compiled,
            "threads": torch.get_num_threads(), "weights": loss_fn.weights_source}


def bare_step_speed(detector, images: torch.Tensor, steps: int) -> dict:
    """`measure_training_speed` at a fitted DPADetector's own configuration (network, loss layers, weights, batch,
    cached targets as the detector caches them): the bare PyTorch step its training loop runs."""
    hp = detector.hp
    return measure_training_speed(images, detector.final_loss_layers, detector.weights, hp["batch_size"], steps,
                                  latent=hp["latent"], widths=hp["widths"], cached_targets=True, arch=hp["arch"])


def loop_overhead(run, bare: dict) -> dict:
    """Images/s of a run's whole fit (`DPADetector.fit`: target cache, hold-out loss every eval_every steps, best
    checkpoint) against the bare step of the same network and loss; overhead = 1 - fit / bare."""
    fit = float(run.row["fit_images_per_s"])
    return {"method": run.row["method"], "fit images/s": fit, "bare step images/s": bare["images_per_s"],
            "loop overhead %": round(100 * (1 - fit / bare["images_per_s"]), 1),
            "eval_every": run.detector.hp["eval_every"], "cache seconds": round(run.detector.cache_seconds, 2)}


def speed_lines(speed: pd.DataFrame, options: pd.DataFrame) -> list[str]:
    """The training-speed sentences, from the measured tables: per loss layer the step the authors' code runs
    (target features computed in every step) and ours with cached targets, the cache's gain stated on its own;
    then the CPU options against the default."""
    out = []
    for layers, part in speed.groupby("loss layers", sort=False):
        by = part.set_index("targets")["images_per_s"]
        if {"computed per step", "cached"} <= set(by.index):
            first = part.iloc[0]
            out.append(f"{layers} ({first['image_size']} px, batch {first['batch_size']}, {first['weights']} "
                       f"weights, {first['threads']} thread(s)): the step with the target features computed in every "
                       f"step, as the authors' code does, runs at {by['computed per step']:.1f} img/s; caching them "
                       f"(DPADetector does, its training images are not augmented) gives {by['cached']:.1f} img/s, "
                       f"a gain of {by['cached'] / by['computed per step']:.2f}x from the cache alone.")
    if len(options) > 1:
        default = options["images_per_s"].iloc[0]
        for _, r in options.iloc[1:].iterrows():
            option = "bfloat16 autocast" if r["bf16_autocast"] else "torch.compile"
            ratio = r["images_per_s"] / default
            out.append(f"{option}: {r['images_per_s']:.1f} img/s against {default:.1f} ({ratio:.2f}x): "
                       + ("a measurable gain." if ratio >= 1.1 else "no measurable gain, so it stays off."))
    return out


def overhead_line(overhead: dict) -> str:
    """The training loop's cost over the bare step (`loop_overhead`), in words."""
    pct = overhead["loop overhead %"]
    return (f"{overhead['method']}'s whole fit ran at {overhead['fit images/s']:.0f} img/s, the bare step of the same "
            f"network and loss at {overhead['bare step images/s']:.0f} img/s: the training loop (target cache, hold-out "
            f"loss every {overhead['eval_every']} steps, best checkpoint) "
            + (f"costs {pct:.0f} % of the bare step's throughput: more than 10 %, worth trimming." if pct > 10 else
               f"costs {pct:.0f} % of the bare step's throughput (under 10 %)." if pct >= 0 else
               f"costs nothing measurable: the whole fit's rate came out {-pct:.0f} % above the bare step's, which "
               f"is timing noise (the bare step is timed over a few steps only)."))


def training_curve_with_stages(detector, title: str) -> plt.Figure:
    """Fig. 7 analogue: loss per step with the progressive stages shaded (loss scale changes per stage)."""
    from ...plots import legend_outside, training_curves

    fig = training_curves(detector.history, title=title)
    ax = fig.axes[0]
    start = 0
    for i, stage in enumerate(detector.schedule.stages):
        if stage.transition:
            ax.axvspan(start, start + stage.transition, color="orange", alpha=0.15,
                       label="fade-in (alpha 0->1)" if i == 1 else None)
        ax.text(start + stage.transition, ax.get_ylim()[1] * 0.95, f"{stage.resolution}px\n{'+'.join(stage.layers)}",
                fontsize=8, va="top")
        start += stage.steps
    ax.set_yscale("log")
    legend_outside(ax)
    fig.set_size_inches(8.0, 3.6)
    fig.tight_layout()
    return fig


def selection_figure(curves: pd.DataFrame, test_auroc: list[float], title: str, x: str = "n_anomalies",
                     hue: str | None = None) -> plt.Figure:
    """Fig. 5 analogue: test AUROC of the weakly-selected configuration (mean ± std over sampled validation
    sets) vs the number (or variety) of validation anomalies, with the best/worst configuration of the grid."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    groups = [(None, curves)] if hue is None else list(curves.groupby(hue))
    for key, part in groups:
        agg = part.groupby(x)["test_AUROC"].agg(["mean", "std"]).reset_index()
        ax.errorbar(agg[x], 100 * agg["mean"], yerr=100 * agg["std"].fillna(0), marker="o", capsize=3,
                    label="selected config (mean ± std)" if key is None else f"{hue}={key}")
    ax.axhline(100 * max(test_auroc), color="green", ls="--", lw=1, label="best config of the grid")
    ax.axhline(100 * min(test_auroc), color="red", ls="--", lw=1, label="worst config of the grid")
    ax.set(xlabel=x.replace("_", " "), ylabel="test AUROC (%)", title=title)
    if x == "n_anomalies":
        ax.set_xscale("log")
        ax.set_xticks(sorted(curves[x].unique()), [str(v) for v in sorted(curves[x].unique())])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def rescale_for_display(t: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1]: content tensors are not images and may leave [0, 1]."""
    flat = t.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (t - lo) / (hi - lo).clamp_min(1e-8)

"""The experiments of notebook 06 (WSCXR), written once so that the notebook's cells stay short.

`Study` holds one run of the notebook: its configuration, the result tables (one `ResultsTable` per study, saved
under results/), the timing rows and the models that later sections reuse. Every method sees the same cached patch
features (`Features`: one backbone's maps of one protocol, its coreset bank and the validation/test splits), so
PatchCore, SimpleNet, WSCXR, all seeds and all K share one CNN pass. CutPaste trains its own network on the images.

The rest are the notebook's reading tables, figures and the sentences it shows, all computed from the rows
(`adlib.verdicts` decides every "better", "tie", "below chance" and "reproduces").

The baselines are created through the registry by name (`adlib.detectors.create`), never imported: a method
module does not import a sibling method.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ... import verdicts
from ...data import Protocol, make_protocol
from ...detectors import create
from ...experiment import evaluate_feature_detector, evaluate_features, provenance_columns, run_experiment
from ...notebook import best_budget_rows, budget_rows
from ...paper_numbers import paper_numbers
from ...patch_features import (DatasetFeatures, FeatureSplit, PatchFeaturizer, flatten_patches, greedy_coreset,
                               time_knn)
from ...results import ResultsTable, save_frame
from ...training import ResourceMeter
from .detector import authors_protocol_diagnostic, mining_scores

METRICS = ("AUROC", "ACC", "F1")
DEFAULT_R = 0.2  # the paper's retention rate (WSCXRDetector's default)
FULL, NONE = "mining=on, mixing=on", "mining=off, mixing=off"
# Table II's rows in the paper's order (best first: 97.2 > 94.9 > 92.2 > 89.2) and the switches of each
TABLE2 = {FULL: {}, "mining=on, mixing=off": dict(mixing=False), "mining=off, mixing=on": dict(mining=False),
          NONE: dict(mining=False, mixing=False)}
T1, T2, TR = "06_table1_pneumonia", "06_table2_ablation", "06_retention_rate"
BUDGET_METHODS = ("CutPaste", "SimpleNet", "WSCXR")


def draws_for(ks, seeds) -> list[tuple[int, int]]:
    return [(k, s) for k in ks for s in seeds]


def coreset_bank(feats: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, ResourceMeter]:
    """The greedy-coreset memory bank M_n of (N, h, w, D) features, and the meter of its computation."""
    patches = flatten_patches(feats)
    with ResourceMeter(images=len(patches)) as meter:
        keep = greedy_coreset(patches, fraction=fraction, projection_dim=128, seed=seed)
    return patches[keep].contiguous(), meter


@dataclass
class Features:
    """One backbone's cached patch features of one protocol: the coreset bank, validation and test splits."""

    backbone: dict
    protocol: Protocol
    featurizer: PatchFeaturizer
    cache: DatasetFeatures
    layers: tuple
    bank: torch.Tensor
    val: FeatureSplit
    test: FeatureSplit
    coreset_seconds: float = 0.0

    def normal(self) -> torch.Tensor:
        return self.cache.features("train", layers=self.layers)

    def few_shot(self, k: int, seed: int):
        return self.cache.few_shot(k, seed, layers=self.layers)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(x) for x in self.val.features.shape[1:3])


@dataclass
class Study:
    """One run of notebook 06: configuration, result tables, timing rows, and the models later sections reuse."""

    cfg: object
    tables: dict = field(default_factory=dict)
    timing: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)
    models: dict = field(default_factory=dict)  # (study, backbone, variant, seed) -> fitted detector

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.cfg.seeds)

    @property
    def backbones(self) -> list[dict]:
        return [dict(b) for b in self.cfg.backbones]

    @property
    def main(self) -> dict:
        """The default backbone: figures, ablations and the other datasets use it."""
        return self.backbones[0]

    @property
    def k_abl(self) -> int:
        return max(self.cfg.ks)

    def table(self, name: str) -> ResultsTable:
        return self.tables.setdefault(name, ResultsTable(name))

    def time(self, step: str, seconds: float, items: int, unit: str) -> None:
        self.timing.append({"step": step, "seconds": round(seconds, 1), "items": int(items), "unit": unit,
                            "per_s": round(items / seconds, 1) if seconds > 0 else float("nan")})

    # -------------------------------------------------------------------------------------------- data, features
    def load(self, dataset: str) -> Protocol:
        """The protocol at the profile's image size, with the training normals (n_normal, one seeded subset shared
        by the seeds) and the val/test caps of the profile."""
        cfg = self.cfg
        full = make_protocol(dataset, size=cfg.image_size, channels=None)
        return Protocol(dataset, full.train.sample(cfg.n_normal, seed=0), full.val.sample(cfg.get("max_val"), seed=0),
                        full.test.sample(cfg.get("max_test"), seed=0), full.train_anomaly_pool, source=full.source)

    def features(self, backbone: dict, protocol: Protocol, ks, *, extra_layers=(), per_class: bool = False,
                 knn_timing: bool = False) -> Features:
        """Run the backbone once over every split (and the few-shot draws of ``ks`` x seeds), build the coreset."""
        cfg, layers = self.cfg, tuple(backbone["layers"])
        extract = tuple(sorted(set(layers) | set(extra_layers)))
        fz = PatchFeaturizer(arch=backbone["arch"], layers=extract, weights=backbone["weights"],
                             input_size=cfg.input_size, patch_size=5, dim=1024)
        fs = DatasetFeatures(fz, protocol, protocol.train, draws_for(ks, self.seeds), per_class=per_class,
                             val=protocol.val, test=protocol.test, progress=False)
        self.time(f"feature extraction ({backbone['name']}, {protocol.dataset}, all splits)", fs.seconds,
                  fs.n_images, "images")
        f = self.with_layers(Features(backbone, protocol, fz, fs, layers, None, None, None), layers)
        if knn_timing:
            patches = flatten_patches(f.test.features)
            t = time_knn(patches, f.bank, k=1)["torch_cdist_chunked_s"]
            self.time(f"greedy coreset ({cfg.coreset:.0%} of {len(flatten_patches(f.normal()))} patches)",
                      f.coreset_seconds, len(flatten_patches(f.normal())), "patches")
            self.time(f"kNN, torch.cdist chunked ({len(patches)} test patches vs a bank of {len(f.bank)})", t,
                      len(patches), "patches")
        return f

    def with_layers(self, f: Features, layers) -> Features:
        """The same cached CNN pass combined from other layers (Eq. 1-3), with its own coreset bank."""
        layers = tuple(layers)
        bank, meter = coreset_bank(f.cache.features("train", layers=layers), self.cfg.coreset)
        return Features(f.backbone, f.protocol, f.featurizer, f.cache, layers, bank, f.cache.pair("val", layers=layers),
                        f.cache.pair("test", layers=layers), meter.seconds)

    # -------------------------------------------------------------------------------------------- one method
    def record(self, table: str | None, det, f: Features, method: str, variant: str, seed: int, **extra) -> dict:
        """Score val and test features, threshold on validation, write one row to the study ``table``."""
        return evaluate_feature_detector(det, f.val, f.test, table=self.table(table) if table else None,
                                         config=self.cfg, protocol=f.protocol, method=method, seed=seed,
                                         variant=variant, backbone=f.backbone["name"], input_size=self.cfg.input_size,
                                         **extra)

    def disc_kwargs(self, **over) -> dict:
        cfg = self.cfg
        return {**dict(depth=2, hidden=cfg.hidden, epochs=cfg.epochs, eval_every=cfg.eval_every,
                       batch_size=cfg.batch_size), **over}

    def wscxr(self, f: Features, k: int | None, seed: int, *, diagnostic: bool = False, anomalies=None, **kw):
        """WSCXR with the K-shot draw (k, seed), or with explicit ``anomalies`` = (features, grades)."""
        an, grades = anomalies if anomalies is not None else f.few_shot(k, seed)
        det = create("wscxr", featurizer=f.featurizer, seed=seed, progress=False, **self.disc_kwargs(**kw))
        return det.fit_features(None, f.val, an, grades, bank=f.bank, diagnostic=f.test if diagnostic else None)

    def simplenet(self, f: Features, seed: int, noise_scale: float, **kw):
        cfg = self.cfg
        normal = f.bank[None, None] if cfg.simplenet_on_bank else f.normal()
        det = create("simplenet", featurizer=f.featurizer, seed=seed, progress=False, noise_scale=noise_scale,
                     **self.disc_kwargs(epochs=cfg.simplenet_epochs, **kw))
        return det.fit_features(normal, f.val)

    def patchcore(self, f: Features):
        return create("patchcore", featurizer=f.featurizer, progress=False).fit_features(None, bank=f.bank)

    def cutpaste(self, f: Features, seed: int, table: str | None = T1, curve: bool = False, **over):
        """CutPaste on the images (its own network); ``curve``: record validation AUROC and pretext-task accuracy
        over training (the same training, cut into resumable chunks)."""
        b, cfg = f.backbone, self.cfg
        kw = {**dict(arch=b["cutpaste_arch"], weights=b["weights"], freeze_until=b["cutpaste_freeze"], progress=False),
              **cfg.cutpaste, **over}
        if curve:
            kw["curve_every"] = cfg.cutpaste_curve_every
        return run_experiment("cutpaste", f.protocol, config=cfg, seed=seed, method="CutPaste",
                              variant="unsupervised", table=self.table(table) if table else None, backbone=b["name"],
                              input_size=kw["input_size"], use_val_in_fit=curve, detector_kwargs=kw).detector

    def choose_noise_scale(self, f: Features):
        """SimpleNet's noise scale is tied to the feature scale: chosen on validation AUROC (first seed)."""
        models = {ns: self.simplenet(f, self.seeds[0], ns) for ns in self.cfg.noise_grid}
        val_auroc = {ns: m.history.best_value for ns, m in models.items()}
        best = max(val_auroc, key=val_auroc.get)
        return best, val_auroc, models[best]

    # -------------------------------------------------------------------------------------------- the studies
    def table1(self, f: Features) -> dict:
        """PatchCore, SimpleNet, WSCXR (every K and seed) and CutPaste on one backbone's features."""
        name, out = f.backbone["name"], {"features": f}
        pc = self.patchcore(f)
        with ResourceMeter(images=len(f.test.labels)) as meter:
            self.record(T1, pc, f, "PatchCore", "unsupervised", self.seeds[0])
        self.time(f"PatchCore scoring ({name}, test split incl. kNN)", meter.seconds, meter.images, "images")
        out["noise"], out["noise_val"], sn0 = self.choose_noise_scale(f)
        for seed in self.seeds:
            sn = self.models[("simplenet", name, seed)] = (
                sn0 if seed == self.seeds[0] else self.simplenet(f, seed, out["noise"]))
            self.record(T1, sn, f, "SimpleNet", "unsupervised", seed)
        for k in self.cfg.ks:
            for seed in self.seeds:
                det = self.models[("table1", name, k, seed)] = self.wscxr(f, k, seed, diagnostic=True)
                row = self.record(T1, det, f, "WSCXR", f"K={k}", seed)
                oracle = authors_protocol_diagnostic(det.history, f.test.labels)
                self.diagnostics.append({"backbone": name, "K": k, "seed": seed,
                                         **{f"ours {m}": row[m] for m in METRICS},
                                         **{f"oracle {m}": oracle[m] for m in METRICS},
                                         "oracle epoch": oracle["epoch"]})
        for seed in self.seeds:
            self.models[("cutpaste", name, seed)] = self.cutpaste(f, seed, curve=name == self.main["name"])
        return out

    def table2(self, f: Features) -> ResultsTable:
        """Table II: mining and mixing switched off one at a time and together (largest K, every seed)."""
        name, k = f.backbone["name"], self.k_abl
        for variant, switches in TABLE2.items():
            for seed in self.seeds:
                det = (self.models[("table1", name, k, seed)] if not switches
                       else self.wscxr(f, k, seed, **switches))
                self.models[("table2", name, variant, seed)] = det
                self.record(T2, det, f, "WSCXR", variant, seed, K=k)
        return self.table(T2)

    def retention(self, f: Features) -> ResultsTable:
        """AUROC vs the retention rate r at the largest K, every seed. r = 0.2 is Table I's model; r = 1.0 keeps
        every patch, which is exactly 'mining off' (Table II's mining=off, mixing=on model is reused)."""
        name, k = f.backbone["name"], self.k_abl
        for r in self.cfg.r_grid:
            for seed in self.seeds:
                if r == DEFAULT_R:
                    det = self.models[("table1", name, k, seed)]
                elif r == 1.0:
                    det = self.models[("table2", name, "mining=off, mixing=on", seed)]
                else:
                    det = self.wscxr(f, k, seed, retention=r)
                self.record(TR, det, f, "WSCXR", f"r={r}", seed, retention=r, K=k)
        return self.table(TR)

    def depth(self, f: Features) -> ResultsTable:
        """One linear layer (the authors' code) vs the paper's MLP (depth 2), largest K, every seed."""
        name, k = f.backbone["name"], self.k_abl
        for seed in self.seeds:
            for depth in (1, 2):
                det = self.models[("table1", name, k, seed)] if depth == 2 else self.wscxr(f, k, seed, depth=1)
                self.record("06_discriminator_depth", det, f, "WSCXR", f"depth={depth}", seed, K=k)
        return self.table("06_discriminator_depth")

    def layer_study(self, f: Features) -> ResultsTable:
        """PatchCore and WSCXR (largest K, first seed) on other layer choices of the same cached CNN pass."""
        seed, k = self.seeds[0], self.k_abl
        choices = [f.layers] + [tuple(ls) for ls in self.cfg.layer_alternatives if tuple(ls) != f.layers]
        for layers in choices:
            fl = f if layers == f.layers else self.with_layers(f, layers)
            w = self.models[("table1", f.backbone["name"], k, seed)] if fl is f else self.wscxr(fl, k, seed)
            for method, det in (("PatchCore", self.patchcore(fl)), (f"WSCXR K={k}", w)):
                self.record("06_layers", det, fl, method, "+".join(layers), seed, grid=fl.grid[0])
        return self.table("06_layers")

    def weights_study(self, f: Features) -> ResultsTable | None:
        """PatchCore and WSCXR with the pretrained and a randomly initialised copy of the backbone, on a seeded
        subset of the normals, validation and test images (config `weight_subset`)."""
        if not self.cfg.random_weights_study:
            return None
        prot, k, seed = f.protocol, self.k_abl, self.seeds[0]
        rng = np.random.default_rng(1)
        parts = {s: (prot.train if s == "train" else getattr(prot, s)) for s in ("train", "val", "test")}
        sub = {s: imgs.subset(np.sort(rng.choice(len(imgs), min(n, len(imgs)), replace=False)))
               for (s, imgs), n in zip(parts.items(), self.cfg.weight_subset)}
        sub_prot = Protocol(prot.dataset, sub["train"], sub["val"], sub["test"], prot.train_anomaly_pool,
                            source=prot.source)
        for weights in dict.fromkeys((f.backbone["weights"], "random")):  # once when the main weights are random
            b = {**f.backbone, "weights": weights, "name": f"{f.backbone['name'].split(' (')[0]} ({weights})"}
            fs = self._subset_features(b, sub_prot, k, seed)
            self.record("06_weights", self.patchcore(fs), fs, "PatchCore", "subset", seed)
            self.record("06_weights", self.wscxr(fs, k, seed), fs, f"WSCXR K={k}", "subset", seed)
        return self.table("06_weights")

    def _subset_features(self, backbone: dict, prot: Protocol, k: int, seed: int) -> Features:
        cfg = self.cfg
        fz = PatchFeaturizer(arch=backbone["arch"], layers=tuple(backbone["layers"]), weights=backbone["weights"],
                             input_size=cfg.input_size, patch_size=5, dim=1024)
        fs = DatasetFeatures(fz, prot, prot.train, [(k, seed)], val=prot.val, test=prot.test, progress=False)
        return self.with_layers(Features(backbone, prot, fz, fs, tuple(backbone["layers"]), None, None, None),
                                backbone["layers"])

    def other_datasets(self, noise_scale: float) -> ResultsTable | None:
        """BreastMNIST and RetinaMNIST: PatchCore, SimpleNet (``other_sn_seeds`` seeds, the noise scale chosen on
        PneumoniaMNIST) and WSCXR at ``other_ks`` (per grade on RetinaMNIST) with the default backbone."""
        cfg = self.cfg
        for dataset in cfg.other_datasets:
            per_class = dataset == "retina"
            f = self.features(self.main, self.load(dataset), cfg.other_ks, per_class=per_class)
            self.record("06_other_datasets", self.patchcore(f), f, "PatchCore", "unsupervised", self.seeds[0])
            for seed in self.seeds:
                if seed in self.seeds[:cfg.other_sn_seeds]:
                    self.record("06_other_datasets", self.simplenet(f, seed, noise_scale), f, "SimpleNet",
                                "unsupervised", seed)
                for k in cfg.other_ks:
                    self.record("06_other_datasets", self.wscxr(f, k, seed), f, "WSCXR",
                                f"K={k}" + (" per grade" if per_class else ""), seed)
            del f
        return self.table("06_other_datasets") if cfg.other_datasets else None

    def save_diagnostics(self, protocol: Protocol) -> str:
        """The oracle diagnostic of every WSCXR run of Table I (results/06_authors_protocol_diagnostic.csv)."""
        return save_frame(pd.DataFrame(self.diagnostics), "06_authors_protocol_diagnostic",
                          provenance_columns(self.cfg, protocol))

    def timing_frame(self, protocol: Protocol) -> tuple[pd.DataFrame, str]:
        """The timing rows (with the discriminators' and CutPaste's training throughput) and where they went."""
        name, k, seed = self.main["name"], self.k_abl, self.seeds[0]
        for label, det, unit in ((f"WSCXR discriminator training (K={k}, {self.cfg.epochs} epochs)",
                                  self.models[("table1", name, k, seed)], "patches"),
                                 (f"SimpleNet training ({self.cfg.simplenet_epochs} epochs)",
                                  self.models[("simplenet", name, seed)], "patches"),
                                 (f"CutPaste fine-tuning ({self.cfg.cutpaste['steps']} steps, {name}; training loop "
                                  "only)", self.models[("cutpaste", name, seed)], "normal images")):
            self.time(label, det.history.seconds, det.history.images_seen, unit)
        curve = self.models[("cutpaste", name, seed)].history.extras.get("curve")
        if curve:
            self.time("CutPaste diagnostic curve (Gaussian + val AUROC + task accuracy per point)",
                      curve["seconds"], len(curve["step"]), "curve points")
        frame = pd.DataFrame(self.timing)
        return frame, save_frame(frame, "06_timing", provenance_columns(self.cfg, protocol))


# ---------------------------------------------------------------------------------------------------- reading
def paper_frame(table: str = "Table I", metric: str = "AUROC") -> pd.DataFrame:
    """The paper's printed numbers (percent) for PneumoniaMNIST/ZhangLab as method, variant, paper."""
    printed = paper_numbers("WSCXR", table)
    printed = printed[(printed["our_dataset"] == "pneumonia") & (printed["metric"] == metric)]
    return printed[["method", "variant", "value"]].rename(columns={"value": "paper"}).reset_index(drop=True)


def budget_table_rows(rows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Best-budget rows (results/budget/, rung chosen on validation AUROC) of CutPaste, SimpleNet and WSCXR on
    PneumoniaMNIST, labelled with their budget and image size, and one sentence per method not measured."""
    rows = budget_rows() if rows is None else rows
    found, missing = [], []
    for method in BUDGET_METHODS:
        best = best_budget_rows(method, "pneumonia", rows) if not rows.empty else rows
        if best is None or best.empty:
            missing.append(f"{method}: not measured in the budget study (results/budget/ has no {method} rows on "
                           "PneumoniaMNIST).")
            continue
        ours = "unsupervised" if method != "WSCXR" else f"K={int(best['K'].iloc[0])}"
        size = int(best["image_size"].iloc[0])
        found.append(best.assign(variant=f"{ours}, {best['budget'].iloc[0]}, {size} px", paper_variant=ours))
    return (pd.concat(found, ignore_index=True) if found else pd.DataFrame()), missing


def table1_reading(rows: pd.DataFrame, backbone: str, budget: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table I of one backbone as a reading table (AUROC in %, F1/ACC at the validation threshold, paper AUROC);
    best-budget rows appended when given."""
    mine = rows[rows["backbone"] == backbone]
    paper = paper_frame()
    if budget is not None and not budget.empty:
        mine = pd.concat([mine, budget], ignore_index=True)
        extra = budget[["method", "variant", "paper_variant"]].drop_duplicates()
        extra = extra.merge(paper, left_on=["method", "paper_variant"], right_on=["method", "variant"],
                            suffixes=("", "_paper"))[["method", "variant", "paper"]]
        paper = pd.concat([paper, extra], ignore_index=True)
    from ...notebook import reading_table

    return reading_table(mine, "AUROC", keys=("method", "variant"), paper=paper, extra_metrics=("F1", "ACC"))


def not_run_sentence() -> str:
    p = paper_frame()
    rest = p[p["method"].isin(["SQUID", "DDAD"])]
    parts = [f"{m} " + ", ".join(f"{v + ' ' if v != 'unsupervised' else ''}{x:.1f}" for v, x in
                                 zip(g["variant"], g["paper"])) for m, g in rest.groupby("method", sort=False)]
    return ("Paper numbers only, not run here (not implemented within this notebook's budget): "
            + "; ".join(parts) + " AUROC.")


def rows_of(frame: pd.DataFrame, method: str, variant: str | None = None, **where) -> pd.DataFrame:
    sel = frame["method"] == method
    if variant is not None:
        sel &= frame["variant"] == variant
    for column, value in where.items():
        sel &= frame[column] == value
    return frame[sel]


def table1_verdicts(rows: pd.DataFrame, backbone: str, ks) -> list:
    """Chance of every method, the paper's Table I order (WSCXR at the smallest K above PatchCore, SimpleNet and
    CutPaste, sorted by the paper's AUROC) and 'AUROC rises with K', on one backbone's rows."""
    mine = rows[rows["backbone"] == backbone]
    k_lo, k_hi = min(ks), max(ks)
    named = {f"WSCXR (K={k})": rows_of(mine, "WSCXR", f"K={k}") for k in (k_lo, k_hi)}
    named.update({m: rows_of(mine, m) for m in ("PatchCore", "SimpleNet", "CutPaste")})
    out = [f"**{backbone}**:"]
    out += [verdicts.chance_sentence(r, name=n) for n, r in named.items()
            if verdicts.chance_status(r) != "above chance"]
    paper = paper_frame().set_index(["method", "variant"])["paper"]
    order = sorted(["PatchCore", "SimpleNet", "CutPaste"], key=lambda m: -paper[(m, "unsupervised")])
    out.append(verdicts.order_claim(named, [f"WSCXR (K={k_lo})", order[0], order[2]]))
    out.append(verdicts.order_claim(named, [f"WSCXR (K={k_lo})", order[1], order[2]]))
    if k_hi != k_lo:
        out.append(verdicts.compare(named[f"WSCXR (K={k_hi})"], named[f"WSCXR (K={k_lo})"]))
    return out


def oracle_table(diagnostics: list[dict]) -> pd.DataFrame:
    """WSCXR's ACC/F1 at our validation threshold vs the authors' protocol (test epoch + Youden's J on test: an
    oracle) vs the paper's printed numbers (obtained with that oracle), per backbone and K (means, %)."""
    d = pd.DataFrame(diagnostics)
    cols = [f"{who} {m}" for m in ("ACC", "F1") for who in ("ours", "oracle")]
    mean = (d.groupby(["backbone", "K"], sort=False)[cols].mean() * 100).round(1).reset_index()
    for m in ("ACC", "F1"):
        p = paper_frame(metric=m)
        p = p[p["method"] == "WSCXR"].assign(K=lambda x: x["variant"].str.extract(r"(\d+)", expand=False).astype(int))
        mean = mean.merge(p[["K", "paper"]].rename(columns={"paper": f"paper {m} (oracle)"}), on="K", how="left")
    mean["n_seeds"] = d.groupby(["backbone", "K"], sort=False).size().to_numpy()
    order = ["backbone", "K", "n_seeds", "ours ACC", "oracle ACC", "paper ACC (oracle)", "ours F1", "oracle F1",
             "paper F1 (oracle)"]
    return mean[order].rename(columns={"ours ACC": "ours ACC (val threshold)", "ours F1": "ours F1 (val threshold)",
                                       "oracle ACC": "ours ACC (oracle)", "oracle F1": "ours F1 (oracle)"})


def oracle_sentence(diagnostics: list[dict]) -> str:
    d = pd.DataFrame(diagnostics)
    gain = {m: 100 * (d[f"oracle {m}"] - d[f"ours {m}"]) for m in METRICS}
    return (f"Choosing the epoch and the threshold on the test set (the authors' code; Youden's J on test) would "
            f"add on average {gain['AUROC'].mean():+.1f} AUROC, {gain['ACC'].mean():+.1f} ACC and "
            f"{gain['F1'].mean():+.1f} F1 points to our WSCXR runs ({len(d)} runs; ACC up to "
            f"{gain['ACC'].max():+.1f}). The paper's ACC/F1 are such **oracle** numbers: compare them with the "
            "oracle columns, and our validation-threshold numbers with nothing the paper printed.")


def paired_sentence(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str], metric: str = "AUROC") -> str:
    """Per-seed difference a - b (the same seed = the same K images, bank and initialisation)."""
    diff = (a.set_index("seed")[metric] - b.set_index("seed")[metric]).dropna() * 100
    if diff.empty:
        return ""
    lower = int((diff < 0).sum())
    return (f"Paired by seed (same K images and initialisation), **{names[0]}** is below **{names[1]}** in "
            f"{lower} of {len(diff)} seeds on test {metric}: mean difference {diff.mean():+.1f} points "
            f"(range {diff.min():+.1f} to {diff.max():+.1f}).")


def ablation_verdicts(rows: pd.DataFrame) -> list:
    """Table II: the paper's order of the four rows, the full method against neither (test and validation AUROC,
    and paired by seed), mining's and mixing's own effect."""
    by = {v: rows[rows["variant"] == v] for v in TABLE2}
    out = [verdicts.order_claim(by, list(TABLE2))]
    out.append(verdicts.compare(by[FULL], by[NONE], names=("full WSCXR", "neither mining nor mixing")))
    out.append(verdicts.compare(by[FULL], by[NONE], metric="val_AUROC",
                                names=("full WSCXR", "neither mining nor mixing")))
    out.append(paired_sentence(by[FULL], by[NONE], ("full WSCXR", "neither mining nor mixing")))
    out.append(verdicts.compare(by[FULL], by["mining=off, mixing=on"], names=("mining on", "mining off (mixing on)")))
    out.append(verdicts.compare(by[FULL], by["mining=on, mixing=off"], names=("mixing on", "mixing off (mining on)")))
    return [v for v in out if v]


def retention_verdicts(rows: pd.DataFrame) -> list:
    """r = 0.2 (the paper's) against r = 1.0 (no mining), and the r that validation would choose."""
    rows = rows.assign(r=rows["variant"].str.removeprefix("r=").astype(float))
    out = []
    if {DEFAULT_R, 1.0} <= set(rows["r"]):
        out.append(verdicts.compare(rows[rows["r"] == DEFAULT_R], rows[rows["r"] == 1.0],
                                    names=(f"r = {DEFAULT_R} (paper)", "r = 1.0 (no mining)")))
    val = rows.groupby("r")["val_AUROC"].mean()
    test = rows.groupby("r")["AUROC"].mean()
    out.append(f"Chosen on validation AUROC, the retention rate would be **r = {val.idxmax():g}** (val "
               f"{100 * val.max():.1f}, test {100 * test[val.idxmax()]:.1f}); the paper's r = {DEFAULT_R} has val "
               f"{100 * val.get(DEFAULT_R, np.nan):.1f}, test {100 * test.get(DEFAULT_R, np.nan):.1f}.")
    return out


def evaluate_scores_of(detector, protocol: Protocol) -> dict:
    """Validation and test AUROC of an image detector (no row written; for the exercises)."""
    from ...metrics import ScoredSplit, evaluate_scores

    m = evaluate_scores(ScoredSplit.of(detector.score(protocol.val), protocol.val),
                        ScoredSplit.of(detector.score(protocol.test), protocol.test))
    return {"val_AUROC": round(m["val_AUROC"], 3), "AUROC": round(m["AUROC"], 3)}


def ablation_discussion(study: Study, mining: dict) -> list[str]:
    """The discussion of Table II, decided by the verdicts: does the paper's mining gain reproduce, on test and on
    validation, and what the mining measurement says about it."""
    t2 = study.table(T2).frame()
    full, none = (t2[t2["variant"] == v] for v in (FULL, NONE))
    p2 = paper_frame("Table II").set_index("variant")["paper"]
    test, val = verdicts.compare(full, none), verdicts.compare(full, none, metric="val_AUROC")
    gain = f"{p2[FULL] - p2[NONE]:+.1f} points ({p2[FULL]:.1f} vs {p2[NONE]:.1f})"
    if test.outcome == "worse":
        head = (f"**Non-reproduction**: the full method is **worse** than neither mining nor mixing, beyond the "
                f"seed spread and the test-image CIs ({100 * test.difference:+.1f} points against the paper's {gain}).")
    elif test.outcome == "better":
        head = (f"The direction of Table II reproduces: the full method beats neither mining nor mixing "
                f"({100 * test.difference:+.1f} points against the paper's {gain}).")
    else:
        head = (f"**Not reproduced**: the full method against neither mining nor mixing is **{test.label}** "
                f"({100 * test.difference:+.1f} points), where the paper has {gain}.")
    out = [head, f"On the validation split, which no test-set choice touched: **{val.label}** "
                 f"({100 * val.difference:+.1f} points)."]
    if mining["beyond"] > mining["retention"]:
        out.append(f"The mining measurement fits a non-reproduction: {100 * mining['beyond']:.0f} % of the anomalous "
                   f"images' patches are farther from the normal bank than {100 * mining['q']:.0f} % of normal "
                   f"patches, but mining keeps only {100 * mining['retention']:.0f} %, so it discards patches that "
                   "carry the anomaly signal (diffuse pneumonia on a coarse grid).")
    else:
        out.append(f"Only {100 * mining['beyond']:.0f} % of the anomalous images' patches are farther from the normal "
                   f"bank than {100 * mining['q']:.0f} % of normal patches, fewer than mining keeps "
                   f"({100 * mining['retention']:.0f} %): mining does not discard far patches here.")
    if mining["ring_share"] > mining["ring_expected"] + 0.1:
        out.append(f"Mining favours the grid's border ({100 * mining['ring_share']:.0f} % of mined patches on a ring "
                   f"that holds {100 * mining['ring_expected']:.0f} % of the positions), where the image edge and, on "
                   "many X-rays, text markers sit rather than lung tissue.")
    return out


def weights_verdicts(rows: pd.DataFrame, pretrained: str) -> list:
    """Pretrained against random backbone weights, per method (nothing when only one weights source ran)."""
    if rows["weights"].nunique() < 2:
        return [f"Only the {pretrained} weights ran (this profile's default backbone is itself random)."]
    return [named_compare(rows, dict(method=m, weights=pretrained), dict(method=m, weights="random"),
                          (f"{m}, {pretrained}", f"{m}, random")) for m in rows["method"].unique()]


def named_compare(rows: pd.DataFrame, a: dict, b: dict, names: tuple[str, str], metric: str = "AUROC"):
    return verdicts.compare(rows_of(rows, **a), rows_of(rows, **b), metric=metric, names=names)


# ---------------------------------------------------------------------------------------------------- measurements
def mining_measurement(f: Features, det, q: float = 0.95) -> dict:
    """Why mining may drop useful patches: S(m) (Eq. 4, mean distance to the 5 nearest normal bank features) of
    every patch of the K anomalous images against S of the validation *normal* images' patches; where on the
    patch grid the mined patches lie (outer ring vs inside)."""
    h, w = f.grid
    normal_val = flatten_patches(f.val.features[torch.as_tensor(f.val.labels == 0)])
    s_normal = mining_scores(normal_val, f.bank, k=det.hp["mining_k"]).numpy()
    s_anom = det.mining_scores.numpy()
    position = det.mined_index.numpy() % (h * w)
    counts = np.bincount(position, minlength=h * w).reshape(h, w)
    ring = np.ones((h, w), bool)
    ring[1:-1, 1:-1] = False
    cut = float(s_anom[det.mined_index.numpy()].min())
    return {"s_normal": s_normal, "s_anomalous": s_anom, "cut": cut, "q": q,
            "beyond": float(np.mean(s_anom > np.quantile(s_normal, q))),
            "mined_beyond": float(np.mean(s_anom[det.mined_index.numpy()] > np.quantile(s_normal, q))),
            "counts": counts, "ring_share": float(counts[ring].sum() / counts.sum()),
            "ring_expected": float(ring.mean()),
            "n_mined": int(len(position)), "n_patches": int(len(s_anom)), "retention": det.hp["retention"]}


def mining_sentence(m: dict) -> str:
    return (f"Of the {m['n_patches']} patches of the K anomalous images, **{100 * m['beyond']:.0f} %** are farther "
            f"from the normal bank than {100 * m['q']:.0f} % of the validation-normal patches; mining at r = "
            f"{m['retention']:g} keeps {m['n_mined']} ({100 * m['mined_beyond']:.0f} % of them beyond that line) and "
            f"drops the rest. {100 * m['ring_share']:.0f} % of the mined patches lie on the outer ring of the "
            f"{m['counts'].shape[0]} x {m['counts'].shape[1]} grid, which holds {100 * m['ring_expected']:.0f} % of "
            "the positions.")


def mining_figure(m: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    bins = np.linspace(min(m["s_normal"].min(), m["s_anomalous"].min()),
                       max(m["s_normal"].max(), m["s_anomalous"].max()), 50)
    axes[0].hist(m["s_normal"], bins=bins, density=True, alpha=0.5, label="validation normal images' patches")
    axes[0].hist(m["s_anomalous"], bins=bins, density=True, alpha=0.5, label="K anomalous images' patches")
    axes[0].axvline(m["cut"], color="k", ls="--", lw=1, label=f"mining cut (r = {m['retention']:g})")
    axes[0].set(xlabel="S(m): mean distance to the 5 nearest normal features", ylabel="density",
                title="distance to the normal bank (Eq. 4)")
    axes[0].legend(fontsize=9)
    share = m["counts"] / m["counts"].sum() * m["counts"].size  # 1 = as often as a uniform choice
    im = axes[1].imshow(share, cmap="magma")
    fig.colorbar(im, ax=axes[1], label="mined share / uniform share")
    axes[1].set(title="where the mined patches lie", xlabel="grid column", ylabel="grid row")
    fig.tight_layout()
    return fig


def cutpaste_curves(study: Study) -> pd.DataFrame:
    """The diagnostic curve of every CutPaste run on the default backbone: step, seed, val AUROC, task accuracy."""
    name = study.main["name"]
    frames = [pd.DataFrame({k: v for k, v in det.history.extras["curve"].items() if k != "seconds"}).assign(seed=key[2])
              for key, det in study.models.items() if key[:2] == ("cutpaste", name) and "curve" in det.history.extras]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def cutpaste_curve_figure(curves: pd.DataFrame, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3))
    for seed, g in curves.groupby("seed"):
        axes[0].plot(g["step"], 100 * g["val_AUROC"], "o-", ms=3, label=f"seed {seed}")
        axes[1].plot(g["step"], 100 * g["task_accuracy"], "o-", ms=3, label=f"seed {seed}")
    axes[0].axhline(50, color="grey", ls=":", lw=1, label="chance")
    axes[0].set(xlabel="training step (0 = pretrained backbone, before training)", ylabel="validation AUROC (%)",
                title=f"{title}: anomaly detection")
    axes[1].set(xlabel="training step", ylabel="pretext-task accuracy (%)",
                title="self-supervised task (val normals vs CutPaste)")
    for ax in axes:
        ax.legend(fontsize=9)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def cutpaste_sentences(curves: pd.DataFrame, rows: pd.DataFrame, budget: pd.DataFrame | None = None) -> list[str]:
    """What the curves say: validation AUROC before/after training vs the pretext-task accuracy, and the budget
    study's CutPaste rungs (validation AUROC at more steps)."""
    if curves.empty:
        return ["No CutPaste curve was recorded in this run."]
    first, last = (curves[curves["step"] == s] for s in (curves["step"].min(), curves["step"].max()))
    low = curves.groupby("step")["val_AUROC"].mean()
    a0, a1 = 100 * first["val_AUROC"], 100 * last["val_AUROC"]
    t0, t1 = 100 * first["task_accuracy"], 100 * last["task_accuracy"]
    n = len(first)
    fell = a1.mean() < a0.mean() - max(a0.std(ddof=1) if n > 1 else 0, 2.0)
    out = [f"CutPaste ({n} seed{'s' if n > 1 else ''}): validation AUROC **{a0.mean():.1f}** with the pretrained "
           f"backbone before any training step, **{a1.mean():.1f}** (seeds {', '.join(f'{v:.1f}' for v in a1)}) "
           f"after {int(last['step'].iloc[0])} steps, lowest mean {100 * low.min():.1f} at step {int(low.idxmin())}; "
           f"the pretext-task accuracy goes from {t0.mean():.1f} to {t1.mean():.1f} %."]
    if fell and t1.mean() > t0.mean() + 5:
        out.append("The self-supervised task **is** learned, while the anomaly signal of the ImageNet features is "
                   "lost: fine-tuning to spot pasted rectangles moves the features away from what separates "
                   "pneumonia from normal lungs. The low Table I AUROC is a training-budget effect on this "
                   "backbone, not a broken evaluation (the Gaussian before training scores the same images well).")
    elif fell:
        out.append("Validation AUROC falls although the task accuracy barely moves: the features change without "
                   "the task being learned.")
    val_cp = rows[(rows["method"] == "CutPaste")].groupby("backbone")["val_AUROC"].mean()
    out.append("Validation AUROC of the Table I CutPaste rows per backbone: "
               + "; ".join(f"{b} {100 * v:.1f}" for b, v in val_cp.items()) + ".")
    if budget is not None and not budget.empty:
        cp = budget[(budget["method"] == "CutPaste") & (budget["dataset"] == "pneumonia")].sort_values("budget_value")
        if len(cp):
            out.append("The budget study (results/budget/, 64 px, one seed per rung) measured CutPaste's validation "
                       "AUROC at " + ", ".join(f"{int(r.budget_value)} steps: {100 * r.val_AUROC:.1f}"
                                               for r in cp.itertuples()) + ".")
    return out


def k_and_r_figure(t1: pd.DataFrame, r_rows: pd.DataFrame, backbone: str, ks, r_grid) -> plt.Figure:
    """AUROC vs K (ours ± seed std, the paper, PatchCore and SimpleNet) and AUROC vs r (± seed std)."""
    mine = t1[t1["backbone"] == backbone]
    w = mine[mine["method"] == "WSCXR"].assign(K=lambda x: x["variant"].str.extract(r"(\d+)", expand=False).astype(int))
    k_sum = w.groupby("K")["AUROC"].agg(["mean", "std"]).fillna(0)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    axes[0].errorbar(k_sum.index, 100 * k_sum["mean"], yerr=100 * k_sum["std"], marker="o", capsize=3,
                     label="WSCXR (ours, ± seed std)")
    pk = paper_frame()
    pk = pk[pk["method"] == "WSCXR"]
    axes[0].plot(pk["variant"].str.extract(r"(\d+)", expand=False).astype(int), pk["paper"], "s--",
                 label="WSCXR (paper)")
    for name, colour in (("PatchCore", "C2"), ("SimpleNet", "C3")):
        v = mine.loc[mine["method"] == name, "AUROC"]
        if len(v):
            axes[0].axhline(100 * v.mean(), color=colour, ls=":", label=f"{name} (ours)")
    axes[0].set_xscale("log", base=2)
    axes[0].xaxis.set_minor_formatter(plt.NullFormatter())
    ticks = sorted(set(ks) | set(pk["variant"].str.extract(r"(\d+)", expand=False).astype(int)))
    axes[0].set(xticks=ticks, xticklabels=ticks, xlabel="K anomalous images", ylabel="test AUROC (%)",
                title="AUROC vs K")
    axes[0].legend(fontsize=9, loc="best")
    r = r_rows.assign(r=r_rows["variant"].str.removeprefix("r=").astype(float)).groupby("r")
    for metric, label in (("AUROC", "test"), ("val_AUROC", "validation")):
        s = r[metric].agg(["mean", "std"]).fillna(0)
        axes[1].errorbar(s.index, 100 * s["mean"], yerr=100 * s["std"], marker="o", capsize=3, label=label)
    axes[1].axvline(DEFAULT_R, color="grey", ls=":", lw=1, label=f"paper r = {DEFAULT_R}")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_minor_formatter(plt.NullFormatter())
    axes[1].set(xticks=list(r_grid), xticklabels=[f"{x:g}" for x in r_grid], xlabel="retention rate r",
                ylabel="AUROC (%)", title=f"AUROC vs r (K={max(ks)}; r = 1: no mining)")
    axes[1].legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def anomaly_map_figure(det, f: Features, n: int = 4, seed: int = 0) -> plt.Figure:
    """Fig. 2 analogue: WSCXR's patch scores as maps on ``n`` normal and ``n`` pneumonia test images."""
    from ... import plots

    test = f.protocol.test
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(test.labels == c), n, replace=False) for c in (0, 1)])
    feats = f.test.features[torch.as_tensor(pick)]
    maps, scores = det.maps_from_features(feats, test.size), det.score_features(feats)
    titles = [f"{'normal' if test.labels[i] == 0 else 'pneumonia'}\nscore {s:.3g}" for i, s in zip(pick, scores)]
    return plots.overlay_maps(test.images[pick], maps, titles=titles)


def embedding_sample(f: Features, det, k: int, seed: int, n: int, sample_seed: int = 0):
    """A seeded random sample of patch features across images: normal training patches (all images), the K
    anomalous images' unmined and mined patches, and mixed features. Returns (X, labels, n normal images hit)."""
    g = torch.Generator().manual_seed(sample_seed)
    normal = flatten_patches(f.normal())
    anomalous = flatten_patches(f.few_shot(k, seed)[0])
    mined = torch.zeros(len(anomalous), dtype=torch.bool)
    mined[det.mined_index] = True

    def pick(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(len(x), generator=g)[:m]
        return x[idx], idx

    normal_x, normal_idx = pick(normal, n)
    groups = {"normal (training images)": normal_x, "anomalous image, not mined": pick(anomalous[~mined], n // 2)[0],
              "mined (M'_a)": pick(anomalous[mined], n // 2)[0], "mixed (M*_a)": det.mixed_examples(n // 2)}
    labels = np.concatenate([[name] * len(v) for name, v in groups.items()])
    images_hit = len(np.unique(normal_idx.numpy() // (f.grid[0] * f.grid[1])))
    return torch.cat(list(groups.values())).numpy(), labels, images_hit


def data_sentence(protocol: Protocol) -> str:
    t, v = protocol.test, protocol.val
    exact = t.medmnist_exact
    text = (f"Training normals used: {len(protocol.train)}; validation {v.counts()['normal']} normal / "
            f"{v.counts()['anomalous']} pneumonia; test {t.counts()['normal']} normal / {t.counts()['anomalous']} "
            f"pneumonia (data: {protocol.data_source()}).")
    if exact is not None and not exact.all():
        text += (f" Of the test images, {int(exact.sum())} are exactly MedMNIST's test images and "
                 f"{int((~exact).sum())} normals come from the Kaggle test set only (MedMNIST lacks them): every "
                 "row reports the AUROC on both (the note column shows the MedMNIST-exact one).")
    return text


def conclusions(study: Study, budget_missing: list[str]) -> list:
    """The discussion's generated summary: Table I per backbone against the paper, the ablation finding, the
    backbone effect, and what the budget study could not say."""
    t1 = study.table(T1).frame()
    paper = paper_frame().set_index(["method", "variant"])["paper"]
    out = []
    for b in study.backbones:
        mine = t1[t1["backbone"] == b["name"]]
        gaps = [verdicts.paper_gap(rows_of(mine, m, v), paper[(m, v)]) for m, v in paper.index
                if len(rows_of(mine, m, v))]
        below = sum(g.status == "below paper" for g in gaps)
        out.append(f"**{b['name']}**: {below} of {len(gaps)} Table I AUROCs are below the paper's beyond our noise; "
                   + "; ".join(f"{g.ours.name} {g.gap_points:+.1f}" for g in gaps) + " points.")
    if len(study.backbones) > 1:
        a, b = (s["name"] for s in study.backbones[:2])
        k = study.k_abl
        out.append(named_compare(t1, dict(method="WSCXR", variant=f"K={k}", backbone=a),
                                 dict(method="WSCXR", variant=f"K={k}", backbone=b),
                                 (f"WSCXR K={k}, {a}", f"WSCXR K={k}, {b}")))
    t2 = study.table(T2).frame()
    full, none = (t2[t2["variant"] == v] for v in (FULL, NONE))
    c = verdicts.compare(full, none)
    p2 = paper_frame("Table II").set_index("variant")["paper"]
    out.append(f"Table II ablation: the full method against neither mining nor mixing is **{c.label}** "
               f"({100 * c.difference:+.1f} points); the paper reports {p2[FULL] - p2[NONE]:+.1f} "
               f"({p2[FULL]:.1f} vs {p2[NONE]:.1f}).")
    rows = budget_rows()
    ablated = rows[(rows["method"] == "WSCXR") & rows["variant"].astype(str).str.contains("mining")] \
        if not rows.empty else rows
    if ablated.empty:
        out.append("At a larger training budget, whether mining helps is **not measured**: the budget study "
                   "(results/budget/) trains the full WSCXR only, without the Table II switches.")
    out += budget_missing
    return out

"""Patch features from a frozen backbone, memory banks, nearest-neighbour distances and anomaly maps.

The machinery PatchCore, SimpleNet and WSCXR share (WSCXR paper, Sec. II-B, Eq. 1-3):

1. chosen layers of a frozen CNN (``adlib.backbones.FeatureExtractor``) are upsampled (bilinear) to the grid
   of the largest one and *aligned in channels*: each layer's C channels are average-pooled to ``dim``
   values per position, the layers are concatenated and pooled once more to ``dim``;
2. neighbourhood aggregation (Eq. 1-2): each position is replaced by the average of its p x p neighbourhood
   (``f_agg`` = adaptive average pooling, as in the paper; zero padding is *not* counted at the border);
3. the feature set of an image (Eq. 3) is the (h, w) grid of these ``dim``-dimensional patch features.

`greedy_coreset` picks a subset of a memory bank that covers it (farthest-point / k-centre greedy, on a
random projection as in PatchCore); `knn_distances` gives exact k-nearest-neighbour distances in chunks so
that memory stays bounded; `patch_maps_to_images` turns patch scores into image-sized, Gaussian-smoothed
anomaly maps. `PatchFeatureDetector` is the base of the three detectors: it extracts features once and
subclasses work on feature tensors (so a notebook can cache features and reuse them across methods).
"""
from __future__ import annotations

import copy

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.imageset import ImageSet, iter_float_batches
from .detectors import Detector


# ------------------------------------------------------------------------------------------ featurizer
@dataclass(frozen=True)
class PatchFeatureConfig:
    """Which backbone, layers and sizes make the patch features (recorded with results)."""

    arch: str = "densenet121"
    layers: tuple[str, ...] = ("denseblock4",)  # the authors' layer
    weights: str = "auto"
    input_size: int | None = 256  # the authors' ZhangLab input size
    patch_size: int = 5  # p of Eq. 1-2 (authors: 5)
    dim: int = 1024  # feature dimension after channel alignment (authors: 1024)
    seed: int = 0  # only used by weights="random"

    def __post_init__(self):
        if isinstance(self.layers, str):
            object.__setattr__(self, "layers", (self.layers,))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number (p x p neighbourhood), got {self.patch_size}")
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")


def align_channels(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., C) -> (..., dim) by adaptive average pooling over the channel axis (identity when C == dim)."""
    if x.shape[-1] == dim:
        return x
    lead = x.shape[:-1]
    return F.adaptive_avg_pool1d(x.reshape(-1, 1, x.shape[-1]), dim).reshape(*lead, dim)


def aggregate_neighbourhood(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Eq. 1-2: average over the p x p neighbourhood of each position; x (N, C, h, w) -> same shape."""
    if patch_size == 1:
        return x
    return F.avg_pool2d(x, kernel_size=patch_size, stride=1, padding=patch_size // 2, count_include_pad=False)


def combine_layers(features: dict[str, torch.Tensor], layers, patch_size: int, dim: int) -> torch.Tensor:
    """{layer: (N, C_l, h_l, w_l)} -> (N, h, w, dim) on the grid of the largest layer (Eq. 1-3)."""
    maps = [features[name] for name in layers]
    h = max(m.shape[-2] for m in maps)
    w = max(m.shape[-1] for m in maps)
    aligned = []
    for m in maps:
        if m.shape[-2:] != (h, w):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        aligned.append(align_channels(m.permute(0, 2, 3, 1), dim))  # (N, h, w, dim) per layer
    combined = aligned[0] if len(aligned) == 1 else align_channels(torch.cat(aligned, dim=-1), dim)
    combined = aggregate_neighbourhood(combined.permute(0, 3, 1, 2), patch_size)
    return combined.permute(0, 2, 3, 1).contiguous()


class PatchFeaturizer:
    """Frozen backbone -> (N, h, w, dim) patch features; ``extract`` runs it in batches under no_grad."""

    def __init__(self, config: PatchFeatureConfig | None = None, **overrides):
        from .backbones import FeatureExtractor

        self.config = config or PatchFeatureConfig(**overrides)
        if config is not None and overrides:
            self.config = PatchFeatureConfig(**{**asdict(config), **overrides})
        c = self.config
        self.extractor = FeatureExtractor(c.arch, list(c.layers), weights=c.weights, seed=c.seed,
                                          input_size=c.input_size)
        self.weights_source = self.extractor.weights_source

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return combine_layers(self.extractor(x), self.config.layers, self.config.patch_size, self.config.dim)

    @torch.no_grad()
    def extract_layers(self, images, batch_size: int = 32, progress: bool = True, desc: str = "features"
                       ) -> dict[str, torch.Tensor]:
        """Raw per-layer maps {layer: (N, C, h, w)} (to combine several ways without re-running the CNN)."""
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.config.layers}
        n = len(images)
        for batch in tqdm(iter_float_batches(images, batch_size), total=-(-n // batch_size), desc=desc,
                          disable=not progress, leave=False, mininterval=2):
            for name, t in self.extractor(batch).items():
                parts[name].append(t.float())
        return {name: torch.cat(p) for name, p in parts.items()}

    @torch.no_grad()
    def extract(self, images, batch_size: int = 32, progress: bool = True, desc: str = "patch features"
                ) -> torch.Tensor:
        """(N, h, w, dim) patch features of ImageSet / uint8 / float [0,1] images."""
        if len(images) == 0:
            raise ValueError("no images to extract features from")
        parts = []
        n = len(images)
        for batch in tqdm(iter_float_batches(images, batch_size), total=-(-n // batch_size), desc=desc,
                          disable=not progress, leave=False, mininterval=2):
            parts.append(self(batch))
        return torch.cat(parts)


# ------------------------------------------------------------------------------------------ coreset
@torch.no_grad()
def greedy_coreset(features: torch.Tensor, n_select: int | None = None, fraction: float | None = None,
                   projection_dim: int | None = 128, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Indices of a greedy k-centre coreset of ``features`` (M, D): start at a seeded random point, then
    repeatedly add the point farthest from everything selected so far (PatchCore's subsampling).

    Distances are computed on a seeded Gaussian random projection to ``projection_dim`` dimensions (None or
    >= D: on the features themselves), which preserves distances approximately and makes each step cheap.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (M, D), got {tuple(features.shape)}")
    m = len(features)
    if (n_select is None) == (fraction is None):
        raise ValueError("give exactly one of n_select and fraction")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n_select = max(1, int(round(fraction * m)))
    if not 1 <= n_select <= m:
        raise ValueError(f"n_select must be in [1, {m}], got {n_select}")
    if n_select == m:
        return torch.arange(m)
    gen = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        x = x @ proj
    sq = (x * x).sum(1)
    selected = torch.empty(n_select, dtype=torch.long)
    current = int(torch.randint(m, (1,), generator=gen))
    min_dist = torch.full((m,), float("inf"))
    for i in tqdm(range(n_select), desc="coreset", disable=not progress, leave=False, mininterval=2):
        selected[i] = current
        d = (sq - 2 * (x @ x[current]) + sq[current]).clamp_min_(0)  # squared distance to the newest centre
        torch.minimum(min_dist, d, out=min_dist)
        current = int(torch.argmax(min_dist))
    return selected


# ------------------------------------------------------------------------------------------ kNN
def _chunk_rows(n_cols: int, max_bytes: int) -> int:
    return max(1, int(max_bytes // (4 * max(n_cols, 1))))


@torch.no_grad()
def knn_distances(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, max_bytes: int = 256 * 2**20,
                  return_indices: bool = False, progress: bool = False):
    """Exact L2 distances from each query (Q, D) to its k nearest rows of ``bank`` (M, D), ascending: (Q, k).

    Computed in blocks of queries x bank rows with torch.cdist (matrix-multiply form) so that no distance
    block exceeds ``max_bytes``; partial top-k results of bank blocks are merged.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"need queries (Q, D) and bank (M, D) of the same D; got {tuple(queries.shape)} "
                         f"and {tuple(bank.shape)}")
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be in [1, {len(bank)}] (the bank size), got {k}")
    queries, bank = queries.float(), bank.float()
    bank_block = min(len(bank), max(k, _chunk_rows(1, max_bytes // 64)))  # at most 1/64 of budget per row
    query_block = _chunk_rows(bank_block, max_bytes)
    out_d = torch.empty(len(queries), k)
    out_i = torch.empty(len(queries), k, dtype=torch.long)
    for qs in tqdm(range(0, len(queries), query_block), desc="kNN", disable=not progress, leave=False,
                   mininterval=2):
        q = queries[qs:qs + query_block]
        best_d = best_i = None
        for bs in range(0, len(bank), bank_block):
            d = torch.cdist(q, bank[bs:bs + bank_block], compute_mode="use_mm_for_euclid_dist")
            kk = min(k, d.shape[1])
            dv, di = torch.topk(d, kk, dim=1, largest=False)
            di = di + bs
            if best_d is None:
                best_d, best_i = dv, di
            else:
                cat_d, cat_i = torch.cat([best_d, dv], 1), torch.cat([best_i, di], 1)
                best_d, pos = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1, largest=False)
                best_i = torch.gather(cat_i, 1, pos)
        out_d[qs:qs + len(q)], out_i[qs:qs + len(q)] = best_d, best_i
    return (out_d, out_i) if return_indices else out_d


def knn_distances_faiss(queries: torch.Tensor, bank: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The same exact L2 kNN with faiss-cpu's IndexFlatL2 (optional; only for the speed comparison)."""
    import faiss  # noqa: PLC0415  (optional dependency)

    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank.float().numpy()))
    d2, _ = index.search(np.ascontiguousarray(queries.float().numpy()), k)
    return torch.from_numpy(d2).clamp_min(0).sqrt()


def time_knn(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, repeats: int = 1) -> dict[str, float]:
    """Seconds for torch-chunked and (when installed) faiss kNN on the same data, and their max difference."""
    out = {}
    t0 = time.perf_counter()
    for _ in range(repeats):
        d_torch = knn_distances(queries, bank, k)
    out["torch_cdist_chunked_s"] = (time.perf_counter() - t0) / repeats
    try:
        t0 = time.perf_counter()
        for _ in range(repeats):
            d_faiss = knn_distances_faiss(queries, bank, k)
        out["faiss_flatL2_s"] = (time.perf_counter() - t0) / repeats
        out["max_abs_difference"] = float((d_torch - d_faiss).abs().max())
    except ImportError:
        out["faiss_flatL2_s"] = float("nan")
    return out


# ------------------------------------------------------------------------------------------ maps
def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(4 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, H, W) maps with reflect padding."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma)
    r = len(k) // 2
    x = maps.unsqueeze(1).float()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x[:, 0]


def patch_maps_to_images(patch_scores: torch.Tensor, image_size: int, sigma: float = 4.0) -> torch.Tensor:
    """(N, h, w) patch scores -> (N, S, S) anomaly maps: bilinear upsampling, then Gaussian smoothing."""
    if patch_scores.ndim != 3:
        raise ValueError(f"patch scores must be (N, h, w), got {tuple(patch_scores.shape)}")
    up = F.interpolate(patch_scores.unsqueeze(1).float(), size=(image_size, image_size), mode="bilinear",
                       align_corners=False)[:, 0]
    return gaussian_smooth(up, sigma)


def image_scores(patch_scores: torch.Tensor) -> np.ndarray:
    """Image score = maximum patch score (WSCXR Eq. 8, PatchCore)."""
    return patch_scores.flatten(1).max(1).values.double().numpy()


def flatten_patches(features: torch.Tensor) -> torch.Tensor:
    """(N, h, w, D) -> (N*h*w, D)."""
    return features.reshape(-1, features.shape[-1])


# ------------------------------------------------------------------------------------------ detectors
def _guard_fit_features(fit_features):
    """Wrap a subclass's fit_features like `Detector.fit`: the features of training normals, of the few-shot
    anomalies and of the validation split (checkpoint choice) must not come from the test split. A FeatureSplit
    is checked by its test mark and unwrapped to its features; ``val`` must be a FeatureSplit (it carries the
    mark). ``diagnostic=`` (the authors'-protocol comparison) is the one argument that holds test features: it is
    only scored after training (`train_patch_scorer`)."""
    import functools

    from .data.imageset import refuse_test_data, require_marked

    @functools.wraps(fit_features)
    def guarded(self, normal=None, val=None, anomalies=None, *args, **kwargs):
        who = f"{type(self).__name__}.fit_features"
        for part, data in (("normal", normal), ("anomalies", anomalies)):
            refuse_test_data(data, f"{who}({part}=...)")
        require_marked(val, f"{who}(val=...)")
        normal, anomalies = (d.features if isinstance(d, FeatureSplit) else d for d in (normal, anomalies))
        return fit_features(self, normal, val, anomalies, *args, **kwargs)

    guarded.__guarded__ = True
    return guarded


class PatchFeatureDetector(Detector):
    """Base of patch-feature detectors: ``fit``/``score``/``anomaly_maps`` on images extract features
    and call the feature-level ``fit_features`` / ``patch_scores`` that subclasses implement.

    Pass ``featurizer=`` to share one backbone between detectors, or the PatchFeatureConfig fields.
    ``map_sigma``: Gaussian smoothing of anomaly maps, in pixels of the input image.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fit_features = cls.__dict__.get("fit_features")
        if fit_features is not None and not getattr(fit_features, "__guarded__", False):
            cls.fit_features = _guard_fit_features(fit_features)

    def __init__(self, featurizer: PatchFeaturizer | None = None, config: PatchFeatureConfig | None = None,
                 map_sigma: float = 4.0, batch_size: int = 32, progress: bool = True, **feature_kwargs):
        self._featurizer = featurizer
        self.config = featurizer.config if featurizer is not None else (config or PatchFeatureConfig(**feature_kwargs))
        self.map_sigma, self.batch_size, self.progress = map_sigma, batch_size, progress
        self._image_size: int | None = None
        self.fitted = False

    @property
    def featurizer(self) -> PatchFeaturizer:
        if self._featurizer is None:
            self._featurizer = PatchFeaturizer(self.config)
        return self._featurizer

    @property
    def weights(self) -> str:  # type: ignore[override]
        return self.featurizer.weights_source if self._featurizer is not None else self.config.weights

    @property
    def weights_file(self) -> str:  # type: ignore[override]
        return self.featurizer.extractor.weights_file if self._featurizer is not None else ""

    @property
    def weights_sha256(self) -> str:  # type: ignore[override]
        return self.featurizer.extractor.weights_sha256 if self._featurizer is not None else ""

    def features(self, images) -> torch.Tensor:
        return self.featurizer.extract(images, self.batch_size, self.progress, desc=f"{self.name} features")

    # subclasses ------------------------------------------------------------------------------------
    def fit_features(self, normal: torch.Tensor, val: tuple[torch.Tensor, np.ndarray] | None = None,
                     anomalies: torch.Tensor | None = None, anomaly_classes: np.ndarray | None = None
                     ) -> "PatchFeatureDetector":
        raise NotImplementedError

    def patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # Detector API ----------------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet | None = None, anomalies: ImageSet | None = None):
        if not isinstance(train, ImageSet) or len(train) == 0:
            raise ValueError("fit needs a non-empty ImageSet of training normals")
        self._image_size = train.size
        val_pair = None
        if val is not None and len(np.unique(val.labels)) == 2:
            val_pair = FeatureSplit(self.features(val), val.labels, val.split, val.from_test, val.raw_labels)
        anomaly_feats = self.features(anomalies) if anomalies is not None and len(anomalies) else None
        classes = anomalies.raw_labels if anomalies is not None and anomaly_feats is not None else None
        return self.fit_features(self.features(train), val_pair, anomaly_feats, classes)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() (or fit_features()) first")

    def score_features(self, features: torch.Tensor) -> np.ndarray:
        self._check_fitted()
        return image_scores(self.patch_scores(features))

    def maps_from_features(self, features: torch.Tensor, image_size: int) -> np.ndarray:
        self._check_fitted()
        return patch_maps_to_images(self.patch_scores(features), image_size, self.map_sigma).numpy()

    def score(self, images) -> np.ndarray:
        return self.score_features(self.features(images))

    def anomaly_maps(self, images) -> np.ndarray:
        size = int(images.size if isinstance(images, ImageSet) else torch.as_tensor(images).shape[-1])
        return self.maps_from_features(self.features(images), size)


# ------------------------------------------------------------------------------------------ discriminators
class PatchDiscriminator(torch.nn.Module):
    """Patch feature (D) -> one score. depth 1: a single linear layer without bias (the WSCXR authors' code);
    depth >= 2: (depth - 1) x [Linear, BatchNorm1d, LeakyReLU(0.2)] then Linear (an MLP, as the paper says
    and as SimpleNet's discriminator)."""

    def __init__(self, dim: int, depth: int = 2, hidden: int = 1024):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers: list[torch.nn.Module] = []
        c = dim
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(c, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.LeakyReLU(0.2)]
            c = hidden
        layers.append(torch.nn.Linear(c, 1, bias=depth > 1))
        self.net = torch.nn.Sequential(*layers)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


@torch.no_grad()
def apply_patchwise(fn, features: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """fn: (P, D) -> (P,) applied to (N, h, w, D) features in chunks -> (N, h, w)."""
    n, h, w, d = features.shape
    flat = features.reshape(-1, d)
    return torch.cat([fn(flat[s:s + chunk].float()) for s in range(0, len(flat), chunk)]).view(n, h, w)


def train_patch_scorer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step_loss, normal: torch.Tensor,
                       score_patches, *, epochs: int, batch_size: int, seed: int,
                       val: "FeatureSplit | None" = None, eval_every: int = 1,
                       diagnostic: "FeatureSplit | None" = None, progress: bool = True,
                       desc: str = "discriminator"):
    """SimpleNet's and WSCXR's training on `adlib.training.train_loop`: ``epochs`` passes over the normal patch
    features (P, D) in seeded batches; ``step_loss(normal_batch, gen)`` returns one step's loss (it draws its
    own anomalous features with ``gen``, a generator that depends only on (seed, step)).
    ``score_patches(features (N,h,w,D)) -> (N,h,w)``.

    val (a FeatureSplit of the validation split): its image-level AUROC is measured every ``eval_every``
    epochs and the best state is kept (the checkpoint is chosen on validation only; test features are refused).
    diagnostic (test features): for the "what the authors' protocol would report" comparison only. Test features
    never enter the training loop: the monitor keeps a copy of the weights at each evaluation, and the test
    features are scored with those copies after training has ended (``history.extras``), so they can influence
    neither training nor the kept checkpoint.
    """
    from .metrics import auroc
    from .training import Monitor, Phase, step_generator, train_loop

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    bs = min(batch_size, len(normal))
    per_epoch = max(1, len(normal) // bs)
    extras = {"steps_per_epoch": per_epoch, "diagnostic_auroc": [], "diagnostic_scores": []}
    monitor, snapshots = None, []
    if val is not None:
        from .data.imageset import require_marked

        require_marked(val, f"{desc}: checkpoint choice on validation AUROC")

        def evaluate(step: int) -> float:
            if diagnostic is not None:  # weights kept for the diagnostic after training (test data stays outside)
                snapshots.append(copy.deepcopy(model.state_dict()))
            return auroc(val.labels, image_scores(score_patches(val.features)))

        monitor = Monitor("val AUROC", evaluate, "max", every=eval_every * per_epoch)
    phase = Phase(desc, optimizer, lambda batch, step: step_loss(batch, step_generator(seed, step)))
    history = train_loop(model, [phase], normal, steps=epochs * per_epoch, batch_size=bs, seed=seed,
                         monitor=monitor, device=torch.device("cpu"), desc=desc, progress=progress)
    if snapshots:  # training is over: score the test features with each evaluation's weights, then restore
        kept = copy.deepcopy(model.state_dict())
        model.eval()
        for state in snapshots:
            model.load_state_dict(state)
            d = image_scores(score_patches(diagnostic.features))
            extras["diagnostic_scores"].append(d)
            extras["diagnostic_auroc"].append(auroc(diagnostic.labels, d))
        model.load_state_dict(kept)
    history.extras = extras
    if history.best_step is None:
        history.best_step = epochs * per_epoch
    return history


class FeatureSplit:
    """Patch features of one split with its labels and the protocol's test mark (unpacks as (features, labels)).

    Built by `DatasetFeatures.pair`, so test-split features stay marked however they are called."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, split: str, from_test: np.ndarray | bool,
                 raw_labels: np.ndarray | None = None):
        self.features, self.labels, self.split, self.raw_labels = features, np.asarray(labels), split, raw_labels
        self.from_test = np.broadcast_to(np.asarray(from_test, dtype=bool), (len(self.labels),))

    @property
    def contains_test(self) -> bool:
        return bool(self.from_test.any())

    def __iter__(self):
        return iter((self.features, self.labels))

    def __len__(self) -> int:
        return len(self.labels)


def evaluate_on_features(detector: "PatchFeatureDetector", val: FeatureSplit, test: FeatureSplit) -> dict[str, float]:
    """AUROC/AP on test and F1/ACC/SEN/SPE at the threshold chosen on validation: the runner's
    `adlib.experiment.evaluate_features` (kept under this name for notebook 06)."""
    from .experiment import evaluate_features

    return evaluate_features(detector, val, test)


# ------------------------------------------------------------------------------------------ feature cache
def _row_keys(images: torch.Tensor) -> list[bytes]:
    return [bytes(memoryview(row.contiguous().numpy()).cast("B")) for row in images]


def pool_indices(pool: ImageSet, drawn: ImageSet) -> np.ndarray:
    """Row indices in ``pool`` of the images of ``drawn`` (a subset of it, e.g. few_shot_anomalies)."""
    lookup = {}
    for i, key in enumerate(_row_keys(pool.images)):
        lookup.setdefault(key, i)
    try:
        return np.array([lookup[key] for key in _row_keys(drawn.images)], dtype=np.int64)
    except KeyError as err:
        raise ValueError("an image of the drawn set is not in the pool") from err


class DatasetFeatures:
    """Backbone maps of one protocol, extracted once and reused across methods, seeds, K and layer choices.

    splits: "train" (the training normals used), "val", "test", "pool" (the union of every few-shot draw).
    ``features(split, layers)`` combines the cached raw maps with Eq. 1-3 (memoised);
    ``few_shot(k, seed, ...)`` returns the features of ``adlib.data.few_shot_anomalies(protocol, k, seed)``.
    """

    def __init__(self, featurizer: PatchFeaturizer, protocol, train: ImageSet, draws: list[tuple[int, int]],
                 per_class: bool = False, val: ImageSet | None = None, test: ImageSet | None = None,
                 batch_size: int = 32, progress: bool = True):
        from .data import few_shot_anomalies

        self.featurizer, self.protocol, self.per_class = featurizer, protocol, per_class
        self.images = {"train": train, "val": val if val is not None else protocol.val,
                       "test": test if test is not None else protocol.test}
        self.draws: dict[tuple[int, int], np.ndarray] = {}
        for k, seed in draws:
            drawn = few_shot_anomalies(protocol, k, seed, per_class=per_class)
            self.draws[(k, seed)] = pool_indices(protocol.train_anomaly_pool, drawn)
        used = np.unique(np.concatenate(list(self.draws.values()))) if self.draws else np.zeros(0, np.int64)
        self.pool_rows = {int(p): r for r, p in enumerate(used)}
        self.images["pool"] = protocol.train_anomaly_pool.subset(used)
        self.raw: dict[str, dict[str, torch.Tensor]] = {}
        self.n_images = sum(len(s) for s in self.images.values())
        t0 = time.perf_counter()
        for split, imgs in self.images.items():
            if len(imgs):
                self.raw[split] = featurizer.extract_layers(imgs, batch_size, progress, desc=f"{split} features")
        self.seconds = time.perf_counter() - t0
        self._memo: dict = {}

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")

    def labels(self, split: str) -> np.ndarray:
        return self.images[split].labels

    def features(self, split: str, layers=None, patch_size: int | None = None, dim: int | None = None) -> torch.Tensor:
        c = self.featurizer.config
        layers = tuple(layers or c.layers)
        patch_size, dim = patch_size or c.patch_size, dim or c.dim
        key = (split, layers, patch_size, dim)
        if key not in self._memo:
            missing = [name for name in layers if name not in self.raw[split]]
            if missing:
                raise ValueError(f"layers {missing} were not extracted (have {list(self.raw[split])})")
            self._memo[key] = combine_layers(self.raw[split], layers, patch_size, dim)
        return self._memo[key]

    def pair(self, split: str, **kw) -> FeatureSplit:
        imgs = self.images[split]
        return FeatureSplit(self.features(split, **kw), imgs.labels, split, imgs.from_test, imgs.raw_labels)

    def few_shot(self, k: int, seed: int, **kw) -> tuple[torch.Tensor, np.ndarray]:
        """Features and raw labels (grades) of the K-shot draw (k, seed) made at construction."""
        if (k, seed) not in self.draws:
            raise KeyError(f"draw (k={k}, seed={seed}) was not extracted; pass it in `draws`")
        rows = np.array([self.pool_rows[int(p)] for p in self.draws[(k, seed)]])
        feats = self.features("pool", **kw)[torch.as_tensor(rows)]
        raw = self.images["pool"].raw_labels
        return feats, (raw[rows] if raw is not None else np.ones(len(rows), np.int64))

    def drop_raw(self) -> None:
        """Free the raw maps (keeps memoised combined features)."""
        self.raw = {}

"""MADDR: Zhang, Lu et al., *A Model-Agnostic Framework for Universal Anomaly Detection of Multi-organ and
Multi-modal Images*, MICCAI 2023 (notebook 05).

losses.py       focal loss (Eqs. 2-3), leave-one-out centre loss (Eq. 4), mixup with label bookkeeping
wrapper.py      `MADDR`: one wrapper around any registered detector that declares a latent code
                (`adlib.detectors.Detector.latent_phase`, `LatentHook`); `MADDRHook`: the terms of Eq. 1
experiments.py  helpers of notebook 05 (the paper's numbers, the runs of Tables 1-2, per-dataset evaluation, the
                heads' diagnostics, figures)
conclusions.py  notebook 05's reading tables and generated conclusions (through adlib.verdicts)

Where the paper is ambiguous, or the authors' code differs, we chose:

1. Which numbers of z are z_o, z_m, z_c. The paper does not say; the authors' code takes the first 20 numbers of
   a 128-number code as categorical (10 modality, 10 organ) and the other 108 as z_c. We take the first
   ``category_dims`` (10) numbers for the organ head, the next 10 for the modality head, the rest is z_c; for
   GANomaly (nz 100) z_c has 80 numbers.
2. Heads' labels. The authors' code feeds the modality label to both heads (the organ labels are overwritten in
   place), so its organ head never sees organ labels. Here each head gets the labels of its own key
   (ImageSet.domains["organ"] / ["modality"]); tests/test_maddr.py checks it.
3. Focal loss. Eqs. 2-3 *sum* over images; we average over the batch (as Lin et al.'s focal loss normalises,
   and as Eq. 4 does with 1/L_b), so that lambda = 1 weighs per-image terms alike whatever the batch size. With
   one alpha = 0.25 for every class, alpha only scales the term (an effective weight of 0.25).
4. Centre loss. Eq. 4 per batch, (1/L) sum_i ||z_i - m_i||^2 with m_i the mean of the other codes of the batch;
   the sum over batches of Eq. 4 is the sum over training steps. Plain squared Euclidean distance, no
   normalisation of z.
5. Mixup. The paper applies mixup "on the fly" without saying how; the authors' code uses it only late in
   training (iterations 7,000-10,000 of 10,000). We mix from loop step ``mixup_from`` on (the notebook: the last
   30 % of the steps), one lam ~ Beta(0.2, 0.2) per batch (Zhang et al.'s range; the paper gives no alpha), a
   seeded partner for every image inside the batch (partners may come from other organs / modalities: that is
   the point, "to bridge the gap among organs and modalities"), and the organ / modality targets mixed with the
   same lam and partner (soft targets in the focal loss). The baseline's own loss then sees mixed images too.
6. The heads are trained by the wrapped detector's optimizer of its main phase, with its settings ("we follow
   the original settings of the baseline methods"); the extra terms act only in that phase (DPA: the
   autoencoder; GANomaly: the generator; MemAE: its autoencoder, on the code before the memory; f-AnoGAN: the
   izi_f encoder stage, after its WGAN stage, which stays the baseline's own), never in a discriminator's.
7. The anomaly score, checkpoint choice and threshold are the baseline's own; for a model trained on all
   datasets the F1 threshold is chosen on each dataset's own validation split (the paper's grid search on the
   validation F1, per test set).
8. Latent. DPA under MADDR (and its per-dataset baseline of Table 1) uses a 128-number code (Table 2 rows 1-2);
   the rest of DPA follows notebook 02 / the authors' code facts (no progressive growing under MADDR).
9. Our data. PneumoniaMNIST (chest, X-ray), BreastMNIST (breast, ultrasound), RetinaMNIST (eye, fundus
   photograph): organ and modality coincide for every dataset, so both heads see the same 3-class partition.
   No fourth domain that crosses organ or modality can be built honestly from the data we have (the only other
   set is CIFAR-10). The ablation therefore tests one head vs two heads on the same partition, heads on z vs on
   their own parts (feature disentanglement), and the centre on z vs on z_c.
"""
from .losses import FOCAL_ALPHA, FOCAL_GAMMA, LAMBDAS, centre_loss, focal_loss, mixup  # noqa: F401
from .wrapper import HEADS, MADDR, MADDRHook, encode_labels  # noqa: F401

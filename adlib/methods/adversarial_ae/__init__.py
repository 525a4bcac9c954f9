"""CCB-AAE and its family: Zhang et al., *Unsupervised Deep Anomaly Detection for Medical Images Using an
Improved Adversarial Autoencoder*, J Digit Imaging 2022, with GANomaly and Skip-GANomaly as the same detector
with other skip connections (AnoGAN and EGBAD, the paper's other baselines, are `adlib.methods.anogan` and
`adlib.methods.egbad`).

network.py   encoder / decoder / discriminator blocks; skip connections none | plain | CCB (Fig. 2, 3)
losses.py    Eqs. 2 and 4-7
detector.py  the detectors "ganomaly", "skip_ganomaly", "ccb_aae" (one class, parameter ``skip``)
experiments.py  helpers of notebook 03 (paper numbers, run helper, reading tables, figures)
conclusions.py  notebook 03's generated text: the score-term diagnostics and the chance-aware conclusions

No public code exists for CCB-AAE; this follows the text. Where the text is ambiguous we chose, and say so:

1. Depth and small images. G_E has 5 down-sampling blocks (conv 4x4/2, BN, LeakyReLU 0.2), as Fig. 3. At
   32 px (CIFAR-10) they reach 1 x 1; at 64/128 px they end at 2 x 2 / 4 x 4. In every case a final linear
   conv over the remaining grid gives the latent vector z (nz = 100), as DCGAN/GANomaly encoders end. Images
   smaller than 32 px get log2(size) blocks (16 px: 4) and keep the top CCB lengths ([2, 3, 4]).
2. CCB placement. 5 levels give 4 encoder-decoder connections (the bottom level is the bottleneck); chain
   lengths [1, 2, 3, 4] from bottom to top (the paper: "the length of a CCB for shallow layer is long",
   Tables 6/7 row "[1-4]"). A conv block is conv 3x3 (same width, padding 1) + ReLU; the chain's output is
   concatenated with the decoder features of the same resolution (Fig. 1: "concatenate with the decoding
   feature"). Ablation lengths x2, x4, x6, x8 = `network.scaled_ccb_lengths`.
3. z and z_hat. For CCB-AAE the paper's D is "not only used as a classifier but also as a feature extractor
   ... to compute latent representations of input image and reconstructed image" and Fig. 1 has no second
   encoder, so z = f(x), z_hat = f(x_hat) with f = D's last feature map (as Skip-GANomaly). GANomaly keeps its
   second encoder: z = G_E(x), z_hat = E(x_hat). (``latent_source`` overrides either.)
4. Adversarial loss. D maximises Eq. 4 (binary cross-entropy, real = x, fake = x_hat). G's adversarial term is
   feature matching on D's features, || E f(x) - E f(x_hat) ||^2 over the batch (GANomaly Eq. 1), not a loss
   on D's outputs. With z = f(x) the latent loss (Eq. 6) is the *per-image* distance of the same features,
   the adversarial term the distance of their batch means, so the two terms differ.
5. Similarity loss: L2 (mean squared error), as Eq. 5 says, for all three variants (GANomaly and
   Skip-GANomaly originally used L1); lambda_s = 50, lambda_adv = 1, lambda_lat = 1 (Eq. 7) for all three,
   so that only the connections differ.
6. Dropout 0.5 ("the dropout rate is 0.5"): after the two innermost (lowest-resolution) decoder blocks, where
   pix2pix's U-Net (Skip-GANomaly's generator) puts it; off at test time.
7. Anomaly score (Eq. 2): alpha * D1 + (1 - alpha) * D2, D1 = per-image MSE of x - x_hat, D2 = per-image MSE
   of z - z_hat, each divided by its mean on held-out normal training images (so alpha weighs comparable
   numbers; a fixed rescaling, never a min-max over the test set). alpha is chosen on the *validation*
   AUROC (grid 0, 0.1, ..., 1; ties -> closest to 0.9) when fit gets a validation split, else 0.9.
8. Checkpoint: the weights with the best validation AUROC (at its best alpha), evaluated every
   ``eval_every`` steps, when a validation split is given; else the lowest hold-out loss
   (50 L_s + L_lat on 10 % held-out normals). The paper trains 50 epochs and does not say which epoch it
   reports. BatchNorm and dropout are in eval mode whenever anything is scored, so a score does not depend
   on the other images of its batch.
9. Optimisation: Adam, lr 2e-4, betas (0.5, 0.999), batch 64 (paper; betas from DCGAN/GANomaly); one G step
   then one D step per batch; D's collapse (its loss below 1e-4 for 200 steps) or a NaN stops the run with
   TrainingDiverged (no re-initialisation of D).
"""
from .detector import ALPHA_GRID, CCBAAE, AdversarialAEDetector, GANomaly, SkipGANomaly, choose_alpha  # noqa: F401
from ...gan import (PAPER_CCB_LENGTHS, SKIPS, AdversarialAutoencoder, ChainOfConvBlocks, Decoder,  # noqa: F401
                      Discriminator, Encoder, JointDiscriminator, scaled_ccb_lengths)

"""SALAD: Zhao, Li, He, Ma, Fang, Li, Zheng, *Anomaly Detection for Medical Images using Self-supervised and
Translation-consistent Features*, IEEE TMI 2021 - and the helpers of notebook 04.

network.py        M_E, M_D, M'_D (shared-tail variant), PatchGAN D_I, MLP D_F, the centre buffer
losses.py         Eqs. 1-9 and the scores A_F, A_I, A_C
perturbations.py  in-painting, local pixel shuffling, Bézier intensity (Fig. 3), batched and seeded
detector.py       the registered detector "salad" with the ablation switches of Tables III-V
experiments.py    helpers of notebook 04 (paper numbers, method settings, runs of the ablations and Table V, figures)
conclusions.py    notebook 04's reading tables and generated conclusions (through adlib.verdicts)
paper_numbers_salad.csv  the numbers printed in Tables I-VI

No public code exists for SALAD; this follows the text section by section. Where the text is ambiguous we
chose, and say so here and in the notebook:

1. Depth. "Eight convolutional layers" of kernel 4, stride 2 at 256 px reach 1 x 1; we use one fewer per
   halving (7 at 128 px, 6 at 64, 5 at 32). The last encoder layer (2 x 2 -> 1 x 1) has no InstanceNorm or
   LeakyReLU: the instance norm of a 1 x 1 map is zero, and z' must be able to match N(0, I). Channel widths
   are not given: ``width`` doubling per level up to ``max_width`` (64 / 512, pix2pix's values, in the paper
   profile). The latent size n is not given: nz = 128 in the paper profile.
2. PatchGAN: pix2pix's 70 x 70 discriminator (three stride-2 blocks) at 128 px and more, fewer stride-2 blocks
   on small images. The feature discriminator's depth/width are not given: a 3-layer MLP, 256 hidden units.
3. SSIM (Eq. 5): `pytorch_msssim.ssim`, Gaussian window 11 (sigma 1.5), on images mapped to [0, 1]; the
   paper's "c1 = 0.01, c2 = 0.03" are read as K1, K2 (c_i = (K_i L)^2), the usual SSIM constants. We minimise
   1 - SSIM (Eq. 4 minimises -SSIM: same gradient).
4. Centre (Eq. 7): "updated based on the feature distances following [43]" = Wen et al.'s centre update,
   C <- C - 0.5 * sum_i (C - z'_i) / (1 + m) once per step, C starting at 0 (the mean of p_z). A_C = |z_t - C|
   uses the final C.
5. KL alternative of Table III: the encoder is deterministic, so the KL term compares the batch's per-dimension
   mean and variance of z' with N(0, 1) (weight delta, like L_ct).
6. Perturbations (Sec. III-C): tile sizes read as ranges of tile *area* ([WH/64, WH/25] for in-painting,
   at most WH/100 for shuffling); "three randomly selected control points" read as three random interior
   control points between fixed end points (0, 0) and (1, 1). See `perturbations`.
7. Self-supervision variants (Table IV): "E. + D." uses M_D itself as M'_D; "encoder and the last few layers
   of the decoder" shares M_D's last 2 layers (the paper does not say how many).
8. Optimisation: Adam lr 2e-4, betas (0.5, 0.999) (not given; CycleGAN's, whose loss weights the paper
   follows), batch 64, constant then linear decay to zero over the second half of training. One
   encoder-decoder step (Eq. 9) then one discriminator step (Eqs. 1 + 2) per batch.
9. Scores (Sec. III-E, Table V): A_F = mean |z_t - z_hat_t| over dimensions (L1, as Eq. 6; the paper writes
   |.| without saying mean or sum - the ranking is the same), A_I = mean |x_t - x_hat_t|, A_C = mean |z_t - C|.
10. Model choice and threshold: the paper trains 200 epochs, reports "the average score of three runs", and
    takes "the threshold ... based on the best value of F1-score" without saying on which split. We keep the
    checkpoint with the best validation AUROC and choose the threshold on the validation split only (never on the
    test split), by the project's rule (Youden's J; the F1-max threshold is kept as labelled *_f1max columns).
"""
from .detector import FEATURE_CONSTRAINTS, IMAGE_LOSSES, SCORES, SELF_SUPERVISION, SALADDetector  # noqa: F401
from .network import (Centre, FeatureDiscriminator, PatchDiscriminator, SaladDecoder, SaladEncoder,  # noqa: F401
                      SharedTailDecoder, salad_depth)
from .perturbations import bezier_intensity, inpaint, local_shuffle, perturb  # noqa: F401

"""DPA: Deep Perceptual Autoencoder (Shvetsova et al., IEEE Access 2021).

network.py      pre-activation residual autoencoder that can grow progressively
losses.py       relative-perceptual-L1 (Eq. 1-2), L1, WGAN-GP terms
progressive.py  the growing schedule as data (Eq. 3 fade-in of network and loss)
detector.py     the "dpa" detector (and its ablation losses)
selection.py    weakly-supervised hyperparameter selection (Sec. III-C) and the unsupervised criterion
"""
from .detector import LOSSES, DPADetector  # noqa: F401  (registers "dpa")
from .network import PerceptualAutoencoder  # noqa: F401
from .progressive import Schedule, Stage  # noqa: F401

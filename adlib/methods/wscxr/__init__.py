"""WSCXR (Ni et al., "Weakly Supervised Anomaly Detection for Chest X-Ray Image"): the detector (anomaly feature
mining, linear mixing, a patch discriminator; `detector`) and the experiments of notebook 06 (`experiments`:
Table I/II runs, reading tables, figures and the generated conclusions)."""
from .detector import (WSCXRDetector, authors_protocol_diagnostic, linear_mix, mine_anomaly_features,  # noqa: F401
                       mining_scores, wscxr_loss)

"""adlib: a small, readable library behind the notebooks that reproduce five papers on
anomaly detection in medical images (DPA, WSCXR, SALAD, CCB-AAE, MADDR)."""

__version__ = "0.1.0"

"""Progress bars for long work: tqdm where someone watches, nothing where nobody can.

In Jupyter and terminals the bars are tqdm's (`tqdm.auto`: a widget in a notebook, text in a terminal). A headless
run (``./run_all.sh`` executing notebooks with papermill sets ``ADLIB_HEADLESS=1``) draws none: a widget saved in
a notebook file shows a dead "0/84" when the notebook is opened later, and a text bar lands in the notebook as a
red stderr output. What such a run did is in its tables (wall time, images/s) instead.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm

HEADLESS_ENV = "ADLIB_HEADLESS"


def headless() -> bool:
    """True in a run nobody watches (``$ADLIB_HEADLESS`` = 1/true/yes)."""
    return os.environ.get(HEADLESS_ENV, "0").strip().lower() in {"1", "true", "yes"}


def progress_bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
    """`tqdm.auto.tqdm` with the same arguments, disabled in headless runs."""
    return tqdm(iterable, disable=disable or headless(), **kwargs)

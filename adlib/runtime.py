"""Where a run computes and with how many threads: `choose_device`, `set_cpu_threads`.

Why one thread: a float sum split over two threads is added in another order than over one, so torch's CPU
kernels (convolutions, matrix products, reductions) give slightly different numbers at different thread counts,
and over a training run those differences grow into different AUROCs (measured: the conv AE and SimpleNet gave
other scores with 1 and 2 threads, and bit-identical scores for the same thread count, run after run). Every
profile therefore computes with ONE intra-op thread per process, whatever the number of cores, and speed comes
from running independent work in parallel processes (``./run_all.sh --jobs N``, joblib workers in notebook 07).
``$ADLIB_THREADS`` still overrides the count; the numbers will then differ from the committed ones, which a
warning says once per process and every result row records (``threads``, `adlib.provenance.run_provenance`).

A leaf module: it imports nothing from adlib, so anything may import it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

THREADS_ENV = "ADLIB_THREADS"
DEFAULT_THREADS = 1  # intra-op threads per process in every profile: numbers independent of the core count
# read by the OpenMP / BLAS libraries that numpy, scikit-learn and torch link; set for child processes
# (joblib workers) as well, unless the user chose them
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_warned_override = False


def choose_device(prefer: str | None = None) -> torch.device:
    """cuda when available (or when asked for), else cpu."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def positive_int_env(name: str, what: str, unset_hint: str) -> int | None:
    """``$name`` as a whole number of 1 or more, None when unset; a clear ValueError for anything else."""
    wanted = os.environ.get(name, "").strip()
    if not wanted:
        return None
    try:
        n = int(wanted)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be a whole number of {what}, 1 or more, got {wanted!r}; {unset_hint}")
    return n


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook shows figures and Markdown there)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def requested_threads(default: int | None = None) -> tuple[int, bool]:
    """(threads, overridden): $ADLIB_THREADS when set, else ``default``, else `DEFAULT_THREADS` (1).

    Raises ValueError for anything but a whole number of 1 or more in $ADLIB_THREADS."""
    n = positive_int_env(THREADS_ENV, "CPU threads",
                         f"unset it to use {DEFAULT_THREADS} thread per process (the committed numbers)")
    return (default or DEFAULT_THREADS, False) if n is None else (n, True)


def set_cpu_threads(default: int | None = None) -> int:
    """Use one torch intra-op thread (or $ADLIB_THREADS, else ``default``) in this process; returns the count.

    Also sets the inter-op threads (only possible before torch's first parallel work; later calls keep the
    value) and limits the OpenMP/BLAS pools of numpy and scikit-learn to the same count, so that every numerical
    library in the process computes with the same number of threads."""
    n, overridden = requested_threads(default)
    if overridden and n != DEFAULT_THREADS:
        _warn_override_once(n)
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # inter-op pool already started: it does not change the numbers, only scheduling
            pass
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, str(n))
    _limit_native_pools(n)
    return n


def _limit_native_pools(n: int) -> None:
    """numpy's BLAS and scikit-learn's OpenMP: the same thread count as torch (threadpoolctl comes with
    scikit-learn; without it the OMP_NUM_THREADS/... variables set above still reach child processes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n)


def _warn_override_once(n: int) -> None:
    global _warned_override
    if _warned_override:
        return
    _warned_override = True
    message = (f"{THREADS_ENV}={n}: torch computes with {n} threads per process instead of {DEFAULT_THREADS}; "
               f"results will differ slightly from the committed ones (which used {DEFAULT_THREADS} thread; the "
               f"'threads' column of every result row records the count)")
    print(f"[adlib] warning: {message}", flush=True)


@contextmanager
def keep_torch_threads():
    """Restore torch's intra-op thread count after code that resets the shared OpenMP pool.

    umap-learn's numba kernels set OpenMP's thread count to every core, and torch reads that same setting: after one
    UMAP projection, notebook 05 computed its later rows with 2 threads instead of 1 (measured; on a 16-core machine it
    would be 16), so those numbers depended on the core count."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

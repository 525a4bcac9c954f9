"""`ResourceMeter`: wall time, throughput and memory of a block of work (``with ResourceMeter() as m: ...``), as
the notebooks' cost tables report them. Also importable from `adlib.training`."""
from __future__ import annotations

import resource
import time

import torch


class ResourceMeter:
    """Measure wall time, throughput and memory of a block: ``with ResourceMeter() as m: ...``.

    peak_mb: CUDA's max allocated memory on a GPU, else the process peak RSS (ru_maxrss), which includes
    everything the process held before the block too (so on a CPU it only grows from block to block).
    added_mb: what the block itself added at its peak - on a GPU the same as peak_mb (its counter is reset on
    entry), on a CPU the largest resident set sampled during the block (every 10 ms, psutil) minus the resident
    set at entry. This is the number to compare methods by on a CPU.
    """

    SAMPLE_SECONDS = 0.01

    def __init__(self, images: int = 0):
        self.images = images
        self.seconds = 0.0
        self.peak_mb = float("nan")
        self.added_mb = float("nan")

    def _sample_rss(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self._max_rss = max(self._max_rss, self._process.memory_info().rss)

    def __enter__(self):
        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
            self._start_cuda = torch.cuda.memory_allocated()  # the peak counts what was there before, too
        else:
            import threading

            import psutil

            self._process = psutil.Process()
            self._start_rss = self._max_rss = self._process.memory_info().rss
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
            self._sampler.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        if self._cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            self.added_mb = (torch.cuda.max_memory_allocated() - self._start_cuda) / 2**20
        else:
            self._stop.set()
            self._sampler.join()
            self._max_rss = max(self._max_rss, self._process.memory_info().rss)
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.added_mb = (self._max_rss - self._start_rss) / 2**20
        return False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def as_row(self, **labels) -> dict:
        return {**labels, "seconds": round(self.seconds, 2), "images": self.images,
                "images_per_s": round(self.images_per_second, 1), "peak_memory_MB": round(self.peak_mb, 1),
                "added_memory_MB": round(self.added_mb, 1)}

"""Peak memory over a stretch of work: CUDA peak allocated on a GPU, peak resident set on the CPU."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil
import torch

MIB = 1024 * 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib`` and ``peak.kind``.

    On CUDA it resets and reads the allocator's peak; on the CPU a thread samples the
    process's resident set size every ``interval_s`` (short peaks between samples are missed).
    """

    def __init__(self, device: str, interval_s: float = 0.005) -> None:
        self.cuda = device.startswith("cuda")
        self.kind = "cuda_peak_allocated" if self.cuda else "peak_rss"
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def mib(self) -> float:
        return round(self.peak_bytes / MIB, 1)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()

    def _sample(self) -> None:
        process = psutil.Process()
        while True:
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

"""How busy the machine's cores were while a benchmark ran, from /proc (Linux; elsewhere nothing).

A throughput row on a small machine measures the machine as much as the code: when the workers, Redis
and the files' kernel work already keep every core busy, a second worker has nothing to run on.
:class:`CpuSampler` samples, on a background thread, the machine's busy CPU time (``/proc/stat``) and
that of some processes (``/proc/<pid>/stat``), so a row can say how many cores were busy over its
measured window and how many of them the workers used.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def _tick_s() -> float:
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 0.01


TICK_S = _tick_s()


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent not idle since boot (every core summed)."""
    try:
        fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) * TICK_S


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 once it has gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime (fields 14 and 15)


class CpuSampler:
    """Context manager: samples every ``interval_s`` until exit; :meth:`cores` reads a window."""

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.1) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float]] = []  # (epoch s, machine busy s, processes' s)
        self._seen: dict[int, float] = {}  # each process's last CPU time, kept after it exits
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        if machine_busy_s() is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        for pid in self.pids():
            self._seen[pid] = max(self._seen.get(pid, 0.0), process_cpu_s(pid))
        busy = machine_busy_s()
        if busy is not None:
            self.samples.append((time.time(), busy, sum(self._seen.values())))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval_s):
                self._sample()
                return

    def cores(self, t0: float, t1: float) -> tuple[float, float] | None:
        """(cores the machine kept busy, cores the processes used) on average between the samples
        nearest the epoch times ``t0`` and ``t1``; None without two distinct samples in between."""
        times = [s[0] for s in self.samples]
        i = min(bisect.bisect_left(times, t0), len(times) - 1)
        j = min(bisect.bisect_left(times, t1), len(times) - 1)
        if i < 0 or j <= i:
            return None
        (a, busy_a, own_a), (b, busy_b, own_b) = self.samples[i], self.samples[j]
        return (busy_b - busy_a) / (b - a), (own_b - own_a) / (b - a)

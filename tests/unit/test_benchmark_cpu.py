"""benchmarks/_cpu.py: the busy cores a queue benchmark row reports beside its rate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._cpu import CpuSampler, machine_busy_s, process_cpu_s

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc")

SPIN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_a_spinning_process_counts_as_about_one_busy_core() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SPIN.format(s=1.0)])
    try:
        with CpuSampler(lambda: [proc.pid], interval_s=0.05) as cpu:
            proc.wait(timeout=60)
    finally:
        proc.kill()
    t0, t1 = cpu.samples[0][0], cpu.samples[-1][0]
    machine, own = cpu.cores(t0, t1)
    spent = cpu.samples[-1][2]  # the child's whole CPU time, kept after it exited
    assert 0.9 <= spent <= 1.5  # it spun for 1 s of CPU, plus the interpreter's start
    assert 0.0 < own <= 1.1  # one thread: never more than one core
    assert machine >= own - 0.05  # the machine's busy time holds the child's


def test_cpu_time_of_a_process_and_of_the_machine_grow_while_it_works() -> None:
    me, busy = process_cpu_s(os.getpid()), machine_busy_s()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert process_cpu_s(os.getpid()) - me >= 0.15
    assert machine_busy_s() - busy >= 0.15
    assert process_cpu_s(2**22 + 12345) == 0.0  # no such process: nothing, not an error


def test_a_window_without_two_samples_has_no_figure() -> None:
    cpu = CpuSampler(lambda: [])
    assert cpu.cores(0.0, 1.0) is None  # never started
    cpu.samples = [(10.0, 5.0, 0.0), (10.1, 5.1, 0.0)]
    assert cpu.cores(10.05, 10.06) is None  # both ends nearest the same sample
    assert cpu.cores(9.0, 10.1) == pytest.approx((1.0, 0.0))

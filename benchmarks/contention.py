"""How much one process slows another down on this machine: the same workload timed alone and then in
two processes at once (one torch thread each), printed as a markdown table.

Two workers can only be twice as fast as one if neither slows the other. Three workloads tell the
machine's shared parts apart:

* ``alu``: arithmetic on a tensor that stays in L1. Slows down only if the two "cores" share one
  physical core (SMT siblings on the host) or the host takes them away.
* ``stream``: a 48 MiB float copy, larger than L3: memory bandwidth.
* ``chain``: the 13-effect chain on a 1024² image (fused kernels compiled first), float in and out, as a
  worker with one thread runs it: L3 and memory bandwidth as a worker uses them.

    python benchmarks/contention.py                  # all three, 8 s each
    python benchmarks/contention.py --only chain --seconds 15
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

KINDS = ("alu", "stream", "chain")


def workload(kind: str) -> Callable[[], object]:
    import torch

    torch.set_num_threads(1)
    if kind == "alu":
        x = torch.rand(1024)

        def alu() -> None:
            for _ in range(200):
                x.mul_(1.0000001).add_(1e-9)

        return alu
    if kind == "stream":
        src = torch.rand(3, 2048, 2048)
        dst = torch.empty_like(src)
        return lambda: torch.mul(src, 1.0, out=dst)
    from benchmarks.effects import COMPILE_WAIT_S, chain_case, decoded, params_for, test_image
    from worker.effects import fused, load_all
    from worker.effects.chain import run_chain
    from worker.imaging import to_tensor
    from worker.memory import tune_malloc

    tune_malloc()
    load_all()
    fused.enable(True, wait_s=COMPILE_WAIT_S)
    steps = [(name, params_for(name, overrides)) for name, overrides in chain_case().steps]
    with torch.inference_mode():
        x = to_tensor([decoded(test_image(1024, 1024))])
        other = x.flip(-1).contiguous()

    def chain() -> None:
        with torch.inference_mode():
            run_chain(x, [steps], [7], {"dissolve": other})

    chain()
    fused.wait(COMPILE_WAIT_S)
    return chain


def child(kind: str, seconds: float) -> None:
    """Time ``kind`` for ``seconds`` after a warm-up; print the median ms as JSON."""
    fn = workload(kind)
    fn()
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps(statistics.median(times) * 1e3))


def run(kind: str, processes: int, seconds: float) -> list[float]:
    cmd = [sys.executable, __file__, "--child", kind, "--seconds", str(seconds)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    out = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a {kind} process failed")
    return [float(o.strip().splitlines()[-1]) for o in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=KINDS, action="append", help="run only this workload (repeatable)")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each process times (default 8)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.seconds)
        return 0
    print("| workload | alone, ms (before / after) | two at once, ms each | slowdown |")
    print("|---|---:|---:|---:|")
    for kind in args.only or KINDS:
        before = run(kind, 1, args.seconds)[0]
        both = run(kind, 2, args.seconds)
        after = run(kind, 1, args.seconds)[0]
        alone = (before + after) / 2
        print(f"| {kind} | {before:.3f} / {after:.3f} | {both[0]:.3f}, {both[1]:.3f} | "
              f"{statistics.mean(both) / alone:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

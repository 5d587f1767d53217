"""Effect timings and memory, printed as a markdown table with each row's target and PASS/MISS.

Every timed case runs what a worker runs for one request: uint8 HWC array -> float tensor
(``worker.imaging.to_tensor``) -> ``worker.effects.chain.run_chain`` -> uint8 arrays
(``worker.imaging.from_tensor``). PNG decode/encode (Pillow) and the bare conversions are reported
apart. Effects not registered yet are skipped with a note, so the script runs on a partial tree.

A second table times each effect alone on float tensors (no conversions) beside a plain torch version
of the node packs' formula (benchmarks/_node_formulas.py, on the ``(B, H, W, C)`` images ComfyUI
passes), and counts it in passes of the floor: one float pass over the image (read it, write it), timed
in the same run.

    python benchmarks/effects.py                 # 1024x1024, 7 repeats, full table
    python benchmarks/effects.py --quick         # small sizes, smoke run
    python benchmarks/effects.py --size 2048 --repeat 5
    python benchmarks/effects.py --only sharpen    # just the rows whose label contains "sharpen"
    python benchmarks/effects.py --default-malloc  # glibc's defaults (workers tune malloc by default)

Timings on a shared machine are noisy: the load average before and after is printed with the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and a sibling like benchmarks/queue.py would
# shadow the standard library module of that name (torch imports `queue`): drop the folder, add the root.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from darkroom.apps.params import GROUPS_BY_NAME  # noqa: E402
from worker.effects import fused, load_all  # noqa: E402
from worker.effects.chain import run_chain  # noqa: E402
from worker.effects.registry import EFFECTS  # noqa: E402
from worker.imaging import DecodedImage, from_tensor, to_tensor  # noqa: E402
from worker.memory import tune_malloc  # noqa: E402

# "Enabled" settings per effect (effects.md's reference table); everything else at its default.
ENABLED: dict[str, dict] = {
    "grain": {"grain_intensity": 0.4, "grain_scale": 10},
    "color_correction": {"temperature": 20, "brightness": 10, "contrast": 10, "saturation": 20, "gamma": 1.2},
    "chromatic_aberration": {"red_shift": 5, "blue_shift": -5, "blue_direction": "vertical"},
    "blur": {"blur_type": "gaussian", "blur_radius": 3, "blur_sigma": 1},
    "vignette": {"vignette_strength": 0.5},
    "parabolize": {"parabolize_coeff": 1, "vertex_x": 0.5, "vertex_y": 0.5},
    "tint": {"tint_mode": "sepia", "tint_strength": 0.7},
    "dissolve": {"dissolve_factor": 0.5, "dissolve_image_url": "data:bench"},
    "dodge_burn": {"dodge_burn_mode": "dodge_and_burn", "dodge_burn_intensity": 0.5},
    "glow": {"glow_radius": 5, "glow_intensity": 1},
    "sharpen": {"sharpen_mode": "basic", "sharpen_radius": 1, "sharpen_alpha": 1},
    "solarize": {"solarize_threshold": 0.5},
    "desaturate": {"desaturate_method": "luminance (Rec.709)", "desaturate_factor": 1.0},
}
SINGLE_TARGET_MS = 25.0
SLOW_SINGLE_TARGET_MS = 60.0  # kuwahara, smart sharpen
WORST_TARGET_MS = 100.0
CHAIN_TARGET_MS = 70.0  # issue [6/6]: 87 ms quiet before it
CONVERSIONS_TARGET_MS = 3.0  # to_tensor + from_tensor together
POINTWISE_PASSES = 3.0  # a point-wise effect costs at most this many floor passes
MEMORY_TARGET_X = 8.0
COMPILE_WAIT_S = 300.0  # the longest a case waits for its fused kernels (cold compiler cache)


@dataclass
class Case:
    label: str
    steps: list[tuple[str, dict]]  # (effect, overrides of ENABLED)
    target_ms: float | None


@dataclass
class Row:
    label: str
    value: str
    spread: str
    target: str
    result: str


# ---- inputs ---------------------------------------------------------------------------------------


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 (H, W, 3) picture: smooth gradients, a few edges and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1), xx / max(w - 1, 1)
    r = 0.5 + 0.4 * np.sin(6 * xx + 2 * yy)
    g = 0.5 + 0.4 * np.cos(5 * yy - 3 * xx)
    b = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).astype(np.float32) * 0.6 + 0.2
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 0.03, (h, w, 3)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def decoded(arr: np.ndarray) -> DecodedImage:
    h, w = arr.shape[:2]
    return DecodedImage(rgb=arr, alpha=None, icc_profile=None, width=w, height=h, source_format="PNG")


def params_for(name: str, overrides: dict):
    return GROUPS_BY_NAME[name].params(**{**ENABLED[name], **overrides})


# ---- timing ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm-up: first-call allocations, oneDNN primitive creation, fused kernels' compiles
    if fused.enabled():
        if not fused.wait(COMPILE_WAIT_S):
            print(f"(fused kernels still compiling after {COMPILE_WAIT_S:g} s: timing what is ready)")
        fn()  # the compiled code's own first call
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def request_fn(case: Case, arrays: list[np.ndarray], other: torch.Tensor | None) -> Callable[[], object]:
    images = [decoded(a) for a in arrays]
    chain = [(name, params_for(name, ov)) for name, ov in case.steps]
    extra = {"dissolve": other} if other is not None else None

    def run() -> list[np.ndarray]:
        with torch.inference_mode():
            x = to_tensor(images)
            y = run_chain(x, [chain] * len(images), [7] * len(images), extra)
            return from_tensor(y)

    return run


def verdict(value: float, target: float | None, higher_is_worse: bool = True) -> tuple[str, str]:
    if target is None:
        return "–", "info"
    ok = value <= target if higher_is_worse else value >= target
    return f"≤ {target:g}", "PASS" if ok else "MISS"


def missing(case: Case) -> list[str]:
    return [name for name, _ in case.steps if name not in EFFECTS]


def time_case(case: Case, size: int, repeat: int, batch: int = 1) -> Row:
    gone = missing(case)
    if gone:
        return Row(case.label, "skipped", "", "", f"not registered: {', '.join(gone)}")
    arrays = [test_image(size, size, seed=i) for i in range(batch)]
    other = None
    if any(name == "dissolve" for name, _ in case.steps):
        other = to_tensor([decoded(test_image(size, size, seed=99 + i)) for i in range(batch)])
    ts = timed(request_fn(case, arrays, other), repeat)
    med = statistics.median(ts)
    target, result = verdict(med, case.target_ms)
    return Row(case.label, f"{med:.1f}", f"{min(ts):.1f}–{max(ts):.1f}", target, result)


# ---- the cases ------------------------------------------------------------------------------------


def single_cases() -> list[Case]:
    cases = []
    for name in ENABLED:
        cases.append(Case(f"{name} (enabled, defaults)", [(name, {})], SINGLE_TARGET_MS))
        if name == "blur":
            cases.append(Case("blur kuwahara r3", [(name, {"blur_type": "kuwahara"})], SLOW_SINGLE_TARGET_MS))
        if name == "sharpen":
            cases.append(Case("sharpen smart (7, .75, 5, .5)", [(name, {"sharpen_mode": "smart"})],
                              SLOW_SINGLE_TARGET_MS))
            cases.append(Case("sharpen cas 0.8", [(name, {"sharpen_mode": "cas"})], SINGLE_TARGET_MS))
    for style in ("analog", "kodak", "fuji", "cinematic", "newspaper"):
        cases.append(Case(f"grain {style}", [("grain", {"grain_style": style})], SINGLE_TARGET_MS))
    return cases


def worst_cases() -> list[Case]:
    return [
        Case("blur gaussian r31", [("blur", {"blur_radius": 31})], WORST_TARGET_MS),
        Case("blur kuwahara r31", [("blur", {"blur_type": "kuwahara", "blur_radius": 31})], WORST_TARGET_MS),
        Case("glow r50", [("glow", {"glow_radius": 50})], WORST_TARGET_MS),
        Case("sharpen basic r15", [("sharpen", {"sharpen_radius": 15})], WORST_TARGET_MS),
        Case("sharpen smart noise_radius 25", [("sharpen", {"sharpen_mode": "smart", "noise_radius": 25})],
             450.0),
        Case("sharpen cas 1.0", [("sharpen", {"sharpen_mode": "cas", "cas_amount": 1.0})], WORST_TARGET_MS),
        Case("grain scale 100", [("grain", {"grain_scale": 100})], None),
        Case("grain scale 1", [("grain", {"grain_scale": 1})], None),
    ]


def chain_case(target: float | None = CHAIN_TARGET_MS) -> Case:
    return Case("all 13 effects chained, defaults (sharpen basic)", [(n, {}) for n in ENABLED], target)


# ---- batch, conversions, memory -------------------------------------------------------------------


def batch_rows(size: int, repeat: int) -> list[Row]:
    case = chain_case(None)
    gone = missing(case)
    present = Case(case.label, [s for s in case.steps if s[0] not in gone], None)
    note = f" (without {', '.join(gone)})" if gone else ""
    one = time_case(present, size, repeat, batch=1)
    eight = time_case(present, size, max(3, repeat // 2), batch=8)
    per1, per8 = float(one.value), float(eight.value) / 8
    ok = per8 <= per1 * 1.05
    return [
        Row(f"chain at {size}², batch 1, per image{note}", f"{per1:.1f}", one.spread, "–", "info"),
        Row(f"chain at {size}², batch 8, per image{note}", f"{per8:.1f}", "",
            "≤ batch 1 (+5% noise margin)", "PASS" if ok else "MISS"),
    ]


def conversion_rows(size: int, repeat: int) -> list[Row]:
    arr = test_image(size, size)
    img = [decoded(arr)]
    x = to_tensor(img)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    png = buf.getvalue()

    def decode() -> None:
        with Image.open(io.BytesIO(png)) as im:
            np.asarray(im.convert("RGB"))

    def encode() -> None:
        Image.fromarray(arr).save(io.BytesIO(), format="PNG")

    y = torch.empty_like(x)

    def both() -> None:
        from_tensor(to_tensor(img))

    rows = []
    for label, fn in [
        ("one float pass (the floor)", lambda: torch.mul(x, 1.0, out=y)),
        ("uint8 → float (to_tensor)", lambda: to_tensor(img)),
        ("float → uint8 (from_tensor)", lambda: from_tensor(x)),
        ("to_tensor + from_tensor", both),
        ("PNG decode (Pillow)", decode),
        ("PNG encode (Pillow, default level)", encode),
    ]:
        ts = timed(fn, max(repeat, 15))
        med = statistics.median(ts)
        target, result = "–", "info (not in effect rows unless noted)"
        if fn is both:
            target, result = verdict(med, CONVERSIONS_TARGET_MS)
        rows.append(Row(f"{label} at {size}²", f"{med:.2f}", f"{min(ts):.2f}–{max(ts):.2f}", target, result))
    return rows


def memory_child(size: int) -> None:
    """Run in a fresh process: peak RSS growth of one full-chain request at ``size``² (stdout: JSON)."""
    load_all()
    case = chain_case(None)
    steps = [s for s in case.steps if s[0] in EFFECTS]
    small = Case(case.label, steps, None)
    request_fn(small, [test_image(64, 64)], to_tensor([decoded(test_image(64, 64, 1))]))()  # load kernels
    arr = test_image(size, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    needs_other = any(n == "dissolve" for n, _ in steps)
    other = to_tensor([decoded(test_image(size, size, 1))]) if needs_other else None
    request_fn(small, [arr], other)()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image_bytes = size * size * 3 * 4
    print(json.dumps({"growth_x": (after - before) * 1024 / image_bytes, "skipped": missing(case)}))


def memory_row(size: int) -> Row:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ})
    if proc.returncode != 0:
        return Row(f"peak RSS growth, full chain at {size}²", "error", "", "", proc.stderr.strip()[-200:])
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    note = f" (without {', '.join(data['skipped'])})" if data["skipped"] else ""
    target, result = verdict(data["growth_x"], MEMORY_TARGET_X)
    return Row(f"peak RSS growth, full chain at {size}², × float32 image{note}", f"{data['growth_x']:.2f}×",
               "", target.replace("≤ ", "≤ ") + "×", result)


# ---- output ---------------------------------------------------------------------------------------


POINTWISE = ("color_correction", "vignette", "parabolize", "tint", "dissolve", "dodge_burn", "solarize",
             "desaturate")


def floor_ms(size: int, repeat: int) -> float:
    """One float pass over a ``size``² RGB image: read it, write another (preallocated)."""
    x = torch.rand(1, 3, size, size)
    y = torch.empty_like(x)
    return statistics.median(timed(lambda: torch.mul(x, 1.0, out=y), max(repeat, 15)))


def node_rows(size: int, repeat: int, floor: float) -> list[Row]:
    """Each effect alone on float tensors against the node packs' formula in plain torch."""
    from benchmarks._node_formulas import FORMULAS

    x = torch.from_numpy(test_image(size, size)).float().div_(255.0)[None]  # (1, H, W, 3)
    other = torch.from_numpy(test_image(size, size, seed=99)).float().div_(255.0)[None]
    xc, oc = x.permute(0, 3, 1, 2).contiguous(), other.permute(0, 3, 1, 2).contiguous()
    rows = []
    for name, enabled in ENABLED.items():
        if name not in EFFECTS:
            continue
        chain = [[(name, params_for(name, {}))]]

        def ours(chain=chain) -> object:
            with torch.inference_mode():
                return run_chain(xc, chain, [7], {"dissolve": oc})

        def theirs(fn=FORMULAS[name], enabled=enabled) -> object:
            with torch.inference_mode():
                return fn(x, other, enabled)

        a = statistics.median(timed(ours, repeat))
        b = statistics.median(timed(theirs, repeat))
        passes = a / floor
        ok = b / a >= 1.0 and (name not in POINTWISE or passes <= POINTWISE_PASSES)
        target = "≥ 1×" + (f", ≤ {POINTWISE_PASSES:g} passes" if name in POINTWISE else "")
        rows.append(Row(f"{name} (enabled)", f"{a:.2f}", f"node formula {b:.2f} ms = {b / a:.2f}×; "
                        f"{passes:.1f} passes", target, "PASS" if ok else "MISS"))
    return rows


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n### {title}\n")
    print("| case | median ms | min–max ms | target | result |")
    print("|---|---:|---:|---|---|")
    for r in rows:
        print(f"| {r.label} | {r.value} | {r.spread} | {r.target} | {r.result} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="side of the square test image (1024)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per case, after one warm-up (7)")
    ap.add_argument("--batch-size", type=int, default=512, help="side for the batch 8 vs 1 rows (512)")
    ap.add_argument("--memory-size", type=int, default=4096, help="side for the peak-memory row (4096)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is; by default the benchmark keeps freed "
                    "image-sized buffers in the heap as workers do (worker.memory.tune_malloc)")
    ap.add_argument("--no-fuse", action="store_true",
                    help="run every effect eagerly; by default point-wise kernels are compiled "
                    "(worker.effects.fused, as workers do) and each case is timed once they are ready")
    ap.add_argument("--threads", type=int, default=0, help="torch/cv2 threads (default: torch's choice)")
    ap.add_argument("--only", default="", help="run only the timed cases whose label contains this text")
    ap.add_argument("--quick", action="store_true", help="smoke run: 256² images, 2 repeats, 1024² memory")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.repeat, args.batch_size, args.memory_size = 256, 2, 128, 1024
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tuned = not args.default_malloc and tune_malloc()
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    if args.threads:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    load_all()
    fused.enable(not args.no_fuse)
    load0 = os.getloadavg()[0]
    print(f"# Darkroom effect benchmark: {args.size}², median of {args.repeat}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"\nglibc malloc: {'tuned as in workers' if tuned else 'defaults (--default-malloc)'}; "
          f"point-wise kernels: {'eager (--no-fuse)' if args.no_fuse else 'fused (compiled before timing)'}.")
    print("Timings include uint8 → float → uint8 (worker.imaging); targets apply at 1024² on 2 CPU cores.")

    def rows(cases: list[Case]) -> list[Row]:
        return [time_case(c, args.size, args.repeat) for c in cases if args.only in c.label]

    print_table("Single effects", rows(single_cases()))
    print_table("Worst cases", rows(worst_cases()))
    if args.only:
        return 0
    floor = floor_ms(args.size, args.repeat)
    print_table(f"Each effect alone (float in and out) vs the node packs' formula in plain torch; "
                f"floor = one float pass = {floor:.2f} ms", node_rows(args.size, args.repeat, floor))
    chain = [*rows([chain_case()]), *batch_rows(args.batch_size, args.repeat), memory_row(args.memory_size)]
    print_table("Chain, batching, memory", chain)
    print_table("Conversions (reported apart)", conversion_rows(args.size, args.repeat))
    print(f"\nLoad average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

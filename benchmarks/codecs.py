"""Codec timings: encode and decode per output format and encoder, output bytes, and whether each
encoder lets a second thread run (it releases the GIL), printed as markdown tables.

Every encoder available in this environment is timed on the same pixels: Pillow, OpenCV
(``cv2.imencode``), and ``imagecodecs`` and ``simplejpeg`` when they import. The row
"imaging.encode" is what a worker runs (``worker.imaging.encode``: the encoder it chose, channel
order, ICC chunk and all). Images are photo-like (``benchmarks/effects.py``'s ``test_image``) and
random noise (what ``benchmarks/queue.py`` sends: incompressible), RGB and RGBA. The encoders of one
case run interleaved, round after round, and each row gives the median, so load from other processes
hits them alike.

    python benchmarks/codecs.py                  # 256² and 1024², 5 rounds (~7 min on 2 busy cores)
    python benchmarks/codecs.py --quick          # 256² only, 2 rounds, smoke run
    python benchmarks/codecs.py --sizes 1024 --repeat 9 --only png

The thread table encodes 8 images (1024² photo, RGB) with 1 and with 2 threads: images/s and the
ratio. About 2× on two free cores means the encoder releases the GIL; about 1× means it holds it (or
the cores are busy). The load average before and after is printed with the tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and benchmarks/queue.py would shadow the
# standard library's queue module: drop the folder, add the repository root (as benchmarks/effects.py).
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image, features  # noqa: E402

from benchmarks.effects import test_image  # noqa: E402
from worker import imaging  # noqa: E402

try:
    import imagecodecs
except ImportError:  # optional: measured when installed
    imagecodecs = None
try:
    import simplejpeg
except ImportError:  # optional: measured when installed
    simplejpeg = None

QUALITY = 90  # jpeg (4:4:4, as imaging uses at >= 90), webp and avif
PNG_LEVEL = imaging.PNG_COMPRESS_LEVEL
AVIF_SPEED = 6  # Pillow's default; the others are set to it so the rows compare like with like
THREAD_IMAGES = 8
SHARE_SECONDS = 0.3  # how long the Python-beside-it probe encodes (and, for its baseline, sleeps)

Encoder = Callable[[np.ndarray], bytes]  # (H, W, 3 or 4) uint8 RGB(A) -> file bytes


@dataclass
class Row:
    label: str
    value: str
    spread: str
    size: str
    note: str


# ---- inputs ---------------------------------------------------------------------------------------


def photo(size: int, channels: int) -> np.ndarray:
    rgb = test_image(size, size)
    if channels == 3:
        return rgb
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    alpha = np.clip(1.6 - 2.4 * np.hypot(xx - 0.5, yy - 0.5), 0, 1) * 255 + 0.5  # a soft round mask
    return np.dstack([rgb, alpha.astype(np.uint8)])


def noise(size: int, channels: int) -> np.ndarray:
    return np.random.default_rng(size).integers(0, 256, (size, size, channels), dtype=np.uint8)


# ---- encoders -------------------------------------------------------------------------------------


def _bgr(px: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(px, cv2.COLOR_RGB2BGR if px.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)


def _pillow(fmt: str, **opts) -> Encoder:
    def run(px: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format=fmt, **opts)
        return buf.getvalue()

    return run


def _cv2(ext: str, params: list[int]) -> Encoder:
    def run(px: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(ext, _bgr(px), params)
        assert ok, ext
        return buf.tobytes()

    return run


def _imaging(fmt: str) -> Encoder:
    def run(px: np.ndarray) -> bytes:
        alpha = px[..., 3] if px.shape[2] == 4 else None
        return imaging.encode(np.ascontiguousarray(px[..., :3]), alpha, None, fmt, QUALITY).data

    return run


def png_encoders() -> dict[str, Encoder]:
    lv = PNG_LEVEL
    out = {
        "imaging.encode": _imaging("png"),
        f"Pillow level {lv}": _pillow("PNG", compress_level=lv),
        f"cv2 level {lv} (libpng adaptive filters)": _cv2(".png", [cv2.IMWRITE_PNG_COMPRESSION, lv]),
    }
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        sub = [cv2.IMWRITE_PNG_COMPRESSION, lv, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
        out[f"cv2 level {lv}, SUB filter"] = _cv2(".png", sub)
        rle = [*sub, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        out[f"cv2 level {lv}, SUB filter, RLE strategy"] = _cv2(".png", rle)
    if imagecodecs is not None:
        out[f"imagecodecs png level {lv}"] = lambda px: imagecodecs.png_encode(px, level=lv)
        if imagecodecs.SPNG.available:
            out[f"imagecodecs spng level {lv}"] = lambda px: imagecodecs.spng_encode(px, level=lv)
    return out


def jpeg_encoders() -> dict[str, Encoder]:
    q = QUALITY
    out = {
        "imaging.encode": _imaging("jpeg"),
        "Pillow": _pillow("JPEG", quality=q, subsampling=0),
        "cv2": _cv2(".jpg", [cv2.IMWRITE_JPEG_QUALITY, q,
                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
    }
    if simplejpeg is not None:
        out["simplejpeg"] = lambda px: simplejpeg.encode_jpeg(px, quality=q, colorsubsampling="444")
    if imagecodecs is not None and imagecodecs.JPEG8.available:
        out["imagecodecs jpeg8"] = lambda px: imagecodecs.jpeg8_encode(px, level=q, subsampling="444")
    return out


def webp_encoders() -> dict[str, Encoder]:
    q, m = QUALITY, imaging.WEBP_METHOD
    out = {
        "imaging.encode": _imaging("webp"),
        f"Pillow method {m}": _pillow("WEBP", quality=q, method=m, exact=True),
        "cv2 (libwebp's default method 4)": _cv2(".webp", [cv2.IMWRITE_WEBP_QUALITY, q]),
    }
    if imagecodecs is not None and imagecodecs.WEBP.available:
        out[f"imagecodecs webp method {m}"] = lambda px: imagecodecs.webp_encode(
            px, level=q, lossless=False, method=m)
    return out


def avif_encoders() -> dict[str, Encoder]:
    if not features.check("avif"):
        return {}
    q, s = QUALITY, AVIF_SPEED
    out = {
        "imaging.encode": _imaging("avif"),
        f"Pillow speed {s}": _pillow("AVIF", quality=q, speed=s),
    }
    if hasattr(cv2, "IMWRITE_AVIF_QUALITY"):
        out[f"cv2 speed {s}"] = _cv2(".avif", [cv2.IMWRITE_AVIF_QUALITY, q, cv2.IMWRITE_AVIF_SPEED, s])
    if imagecodecs is not None and imagecodecs.AVIF.available:
        out[f"imagecodecs avif speed {s}"] = lambda px: imagecodecs.avif_encode(px, level=q, speed=s)
    return out


FORMATS: dict[str, Callable[[], dict[str, Encoder]]] = {
    "png": png_encoders, "jpeg": jpeg_encoders, "webp": webp_encoders, "avif": avif_encoders,
}


# ---- decoders -------------------------------------------------------------------------------------


def decoders(channels: int) -> dict[str, Callable[[bytes], np.ndarray]]:
    mode = "RGB" if channels == 3 else "RGBA"
    back = cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA

    def pillow(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert(mode) if im.mode != mode else im)

    def opencv(data: bytes) -> np.ndarray:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return cv2.cvtColor(arr, back if arr.shape[2] == channels else cv2.COLOR_BGR2RGB)

    out = {"Pillow": pillow, "cv2.imdecode": opencv}
    if imagecodecs is not None:
        out["imagecodecs.imread"] = lambda data: imagecodecs.imread(data)
    return out


# ---- timing ---------------------------------------------------------------------------------------


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Each function once to warm up, then ``repeat`` rounds of all of them in turn (ms)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def row(label: str, ts: list[float], size: str = "", note: str = "") -> Row:
    return Row(label, f"{statistics.median(ts):.1f}", f"{min(ts):.1f}–{max(ts):.1f}", size, note)


def images(sizes: list[int]) -> list[tuple[str, np.ndarray]]:
    out = []
    for size in sizes:
        for kind, make in (("photo", photo), ("noise", noise)):
            for channels, mode in ((3, "RGB"), (4, "RGBA")):
                out.append((f"{size}² {kind} {mode}", make(size, channels)))
    return out


def encode_rows(fmt: str, cases: list[tuple[str, np.ndarray]], repeat: int) -> list[Row]:
    encoders = FORMATS[fmt]()
    rows = []
    for case, px in cases:
        inputs = {name: px for name in encoders}
        if fmt == "jpeg" and px.shape[2] == 4:  # JPEG has no alpha: the bare encoders get what imaging
            flat = imaging._output_pixels(px[..., :3], px[..., 3], "jpeg")  # encodes, flattened on white
            inputs = {name: px if name == "imaging.encode" else flat for name in encoders}
            case = case.replace("RGBA", "RGBA flattened on white")
        runs = {name: (lambda enc=enc, px=inputs[name]: enc(px)) for name, enc in encoders.items()}
        times = interleaved(runs, repeat)
        fastest = min(times, key=lambda n: statistics.median(times[n]) if n != "imaging.encode" else 1e9)
        for name, enc in encoders.items():
            note = "fastest encoder" if name == fastest else ""
            rows.append(row(f"{case}: {name}", times[name], f"{len(enc(inputs[name])):,}", note))
    return rows


def decode_rows(cases: list[tuple[str, np.ndarray]], repeat: int) -> list[Row]:
    rows = []
    for case, px in cases:
        for fmt in FORMATS:
            if fmt == "avif" and not features.check("avif"):
                continue
            data = _imaging(fmt)(px)
            channels = 3 if fmt == "jpeg" else px.shape[2]
            runs = {name: (lambda dec=dec, data=data: dec(data)) for name, dec in decoders(channels).items()}
            times = interleaved(runs, repeat)
            for name in runs:
                rows.append(row(f"{fmt} {case}: {name}", times[name], f"{len(data):,}"))
    return rows


def pool_rate(enc: Encoder, px: np.ndarray, workers: int) -> float:
    """Images/s for ``THREAD_IMAGES`` encodes shared by ``workers`` threads."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(enc, [px] * workers))  # warm-up
        t0 = time.perf_counter()
        list(pool.map(enc, [px] * THREAD_IMAGES))
        return THREAD_IMAGES / (time.perf_counter() - t0)


def python_share(enc: Encoder, px: np.ndarray) -> float:
    """How fast a pure-Python loop in a second thread runs while this thread encodes, as a fraction of
    its speed while this thread sleeps for as long: near 1 when the encoder releases the GIL, near 0
    when it holds it. Both runs compete alike for the cores, so other load mostly cancels out."""
    def spin(stop: threading.Event, out: list[int]) -> None:
        count = 0
        while not stop.is_set():
            count += 1
        out.append(count)

    def run(work: Callable[[], object]) -> float:
        stop, out = threading.Event(), []
        thread = threading.Thread(target=spin, args=(stop, out))
        thread.start()
        t0 = time.perf_counter()
        work()
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
        return out[0] / elapsed

    def encode_for_a_while() -> None:
        end = time.perf_counter() + SHARE_SECONDS
        while time.perf_counter() < end:
            enc(px)

    enc(px)
    return run(encode_for_a_while) / run(lambda: time.sleep(SHARE_SECONDS))


def thread_rows(size: int, rounds: int) -> list[Row]:
    """Per encoder: images/s with 1 and 2 threads (best of ``rounds // 2`` each, interleaved) and the
    Python-beside-it share (median of three)."""
    px = photo(size, 3)
    rows = []
    for fmt in FORMATS:
        for name, enc in FORMATS[fmt]().items():
            if name == "imaging.encode":
                continue
            rates: dict[int, float] = {1: 0.0, 2: 0.0}
            for workers in (1, 2) * max(1, rounds // 2):
                rates[workers] = max(rates[workers], pool_rate(enc, px, workers))
            share = statistics.median(python_share(enc, px) for _ in range(3))
            verdict = "releases the GIL" if share >= 0.6 else "holds the GIL" if share < 0.3 else "partly"
            rows.append(Row(f"{fmt} {size}² photo RGB: {name}", f"{rates[1]:.1f}", f"{rates[2]:.1f}",
                            f"{rates[2] / rates[1]:.2f}×", f"Python beside it at {share:.0%}: {verdict}"))
    return rows


# ---- output ---------------------------------------------------------------------------------------


HEADER = "| case | median ms | min–max ms | bytes | note |"
THREAD_HEADER = "| case | 1 thread, images/s | 2 threads, images/s | ratio | note |"


def print_table(title: str, rows: list[Row], header: str = HEADER) -> None:
    print(f"\n### {title}\n")
    print(header)
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r.label} | {r.value} | {r.spread} | {r.size} | {r.note} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="square sides (256 1024)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds per case after a warm-up (5)")
    ap.add_argument("--only", choices=[*FORMATS, "decode", "threads"], help="print just one table")
    ap.add_argument("--thread-size", type=int, default=1024, help="side for the thread table (1024)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 256² only, 2 rounds, threads at 256²")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.thread_size = [256], 2, 256
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)  # the codecs themselves are single-threaded; keep cvtColor from fanning out
    load0 = os.getloadavg()[0]
    extra = [f"imagecodecs {imagecodecs.__version__}" if imagecodecs else "no imagecodecs",
             f"simplejpeg {simplejpeg.__version__}" if simplejpeg else "no simplejpeg"]
    print(f"# Darkroom codec benchmark: sizes {args.sizes}, median of {args.repeat} interleaved rounds, "
          f"Pillow {PIL.__version__}, OpenCV {cv2.__version__}, {', '.join(extra)}, {os.cpu_count()} CPUs")
    print(f"\nQuality {QUALITY} for lossy formats; PNG at level {PNG_LEVEL}. Bytes are the output's size.")
    cases = images(args.sizes)
    for fmt in FORMATS:
        if args.only in (None, fmt):
            rows = encode_rows(fmt, cases, args.repeat)
            if rows:
                print_table(f"{fmt.upper()} encode", rows)
    if args.only in (None, "decode"):
        title = "Decode (to RGB/RGBA arrays; input: imaging.encode's output)"
        print_table(title, decode_rows(cases, args.repeat))
    if args.only in (None, "threads"):
        title = f"{THREAD_IMAGES} images encoded concurrently: 1 vs 2 threads"
        print_table(title, thread_rows(args.thread_size, args.repeat), THREAD_HEADER)
    print(f"\nLoad average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

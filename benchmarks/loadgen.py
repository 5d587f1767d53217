"""A small HTTP load generator for the API benchmark, run as its own process.

It speaks just enough HTTP/1.1 (keep-alive POSTs, Content-Length responses) over raw asyncio streams
so that its own CPU cost per request stays far below the server's: on a 2-core machine a heavier
client (httpx) would take the cores it is meant to measure.

Two modes, each over ``--clients`` keep-alive connections:
- closed loop (default): every client sends its next request as soon as the previous answer arrives;
  reports the highest rate the server sustains.
- open loop (``--rate R``): requests are due at R per second in all, spread over the clients; a
  request's latency counts from when it was due, so a stalled server is not hidden by clients that
  stop sending (no coordinated omission).

Prints one JSON object: n, seconds, rate, errors, latency percentiles in ms. In the open loop the
seconds (and so the achieved rate) run from when the first request was due to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def build_request(host: str, path: str, body: bytes, headers: tuple[str, ...] = ()) -> bytes:
    extra = "".join(f"{h.strip()}\r\n" for h in headers)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; returns its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def client(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes,
                 due: list[float], lat: list[float], errors: list[int]) -> None:
    reader, writer = conn
    try:
        for t_due in due:
            now = time.perf_counter()
            if t_due > now:
                await asyncio.sleep(t_due - now)
            start = t_due if t_due else time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            lat.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")


async def run(url: str, body: bytes, n: int, clients: int, rate: float,
              headers: tuple[str, ...] = ()) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(f"{host}:{port}", parts.path or "/", body, headers)
    per_client = n // clients
    conns = [await asyncio.open_connection(host, port) for _ in range(clients)]  # before the clock
    t0 = time.perf_counter() + 0.05
    schedules = []
    for c in range(clients):
        if rate > 0:  # client c sends every clients/rate s, offset so the total is evenly spread
            step = clients / rate
            schedules.append([t0 + (c / rate) + i * step for i in range(per_client)])
        else:
            schedules.append([0.0] * per_client)
    lat: list[float] = []
    errors: list[int] = []
    # open loop: the clock starts when the first request is due, not during the 50 ms lead before it
    # (counted in, that lead alone would take 2.5% off the achieved rate of a 2-second run)
    started = t0 if rate > 0 else time.perf_counter()
    pairs = zip(conns, schedules, strict=True)
    await asyncio.gather(*(client(conn, request, s, lat, errors) for conn, s in pairs))
    seconds = time.perf_counter() - started
    lat.sort()
    return {
        "n": len(lat), "seconds": seconds, "rate": len(lat) / seconds, "errors": len(errors),
        "p50_ms": pct(lat, 0.50), "p90_ms": pct(lat, 0.90), "p99_ms": pct(lat, 0.99),
        "max_ms": pct(lat, 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="full URL to POST to, e.g. http://127.0.0.1:8000/fal-ai/post-processing")
    parser.add_argument("--body", required=True, help="JSON body to send with every request")
    parser.add_argument("-n", type=int, default=5000, help="requests in all (default 5000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent connections (default 50)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open loop: requests per second in all (default 0: closed loop)")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="an extra request header, e.g. an API key (repeatable)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    body = args.body.encode()
    result = asyncio.run(run(args.url, body, args.n, args.clients, args.rate, tuple(args.header)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

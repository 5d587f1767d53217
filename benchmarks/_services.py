"""Start a throwaway Darkroom (redis-server, API and worker processes) for the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from darkroom.cli.embedded import free_port, start_redis
from darkroom.settings import Settings
from storage.jobs import JobStore, redis_client

ROOT = Path(__file__).resolve().parents[1]
FUSE_WAIT_S = 300.0  # the longest a worker waits for its fused kernels (a cold compiler cache)


class Stack:
    def __init__(self, settings: Settings, data: Path) -> None:
        self.settings = settings
        self.data = data
        self.procs: list[subprocess.Popen] = []
        self.store = JobStore(redis_client(settings.redis_url, 5), settings.retention_s)

    @property
    def url(self) -> str:
        return self.settings.api_base_url

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
        return {**env, **self.settings.to_env(), **extra}

    def start_api(self) -> None:
        cmd = [sys.executable, "-m", "darkroom.cli", "api"]
        self.procs.append(subprocess.Popen(cmd, env=self.env(DARKROOM_LOG_LEVEL="WARNING"), cwd=ROOT))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("API did not start")

    def start_workers(self, count: int, **extra: str) -> None:
        client = redis.Redis.from_url(self.settings.redis_url)
        before = set(client.scan_iter("darkroom:heartbeat:*"))
        for i in range(count):
            name = f"bench{i}-{time.time_ns()}@bench"
            cmd = [sys.executable, "-m", "darkroom.cli", "worker", "--name", name]
            env = self.env(**{"DARKROOM_LOG_LEVEL": "WARNING", **extra})
            log_path = self.data / f"worker-{name.split('@')[0]}.log"  # kept with the run's data
            with log_path.open("ab") as log_file:
                self.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=log_file))
        deadline = time.monotonic() + 60 + self.settings.worker_fuse_wait_s
        while len(set(client.scan_iter("darkroom:heartbeat:*")) - before) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)

    def stop_workers(self) -> None:
        for p in self.procs[1:]:
            p.terminate()
        for p in self.procs[1:]:
            p.wait(timeout=30)
        del self.procs[1:]

    def wait_done(self, ids: list[str], timeout_s: float = 600) -> list:
        deadline = time.monotonic() + timeout_s
        pending = list(ids)
        while pending:
            pipe = self.store.r.pipeline()
            for rid in pending:
                pipe.hget(f"darkroom:job:{rid}", "status")
            pending = [rid for rid, st in zip(pending, pipe.execute(), strict=True) if st != b"COMPLETED"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} jobs not done")
            time.sleep(0.05)
        return [self.store.get(rid) for rid in ids]


@contextmanager
def stack(**overrides):
    """A Redis server, an API process and (later) workers, with local or S3 storage."""
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp:
        data = Path(tmp)
        rproc, url = start_redis(data / "redis", appendonly=False)
        values = dict(
            redis_url=url, port=free_port(), local_storage_dir=data / "objects",
            log_level="WARNING", max_queue_length=0, torch_threads=1,
            worker_fuse_wait_s=FUSE_WAIT_S,  # steady state: workers take jobs once their kernels compiled
        )
        values.update(overrides)
        st = Stack(Settings(**values), data)
        try:
            yield st
        finally:
            for p in st.procs:
                p.terminate()
            for p in st.procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            rproc.terminate()

"""Fault table: what a killed worker, a stopped worker, a Redis restart or a Redis outage at submit
costs Darkroom, measured from outside, like an operator would (real processes: redis-server with AOF,
`darkroom api`, `darkroom worker`s, a webhook receiver).

A control row (``no_fault``) runs the same jobs with nothing breaking. Each scenario runs with the
fault suite's SHORT settings (``FAST`` in tests/e2e/test_faults.py) and with DEFAULT settings (production
defaults for the visibility timeout, heartbeats and sweeps; only the plumbing to reach the local
servers is set). Jobs are the fault app's ``slow`` mode (tests/support/fault_plugin.py), each with a fal
webhook. One row per scenario and settings:

* jobs lost: accepted (200 with a request_id) but not COMPLETED without error by the cap;
* duplicated: more than one COMPLETED transition (pub/sub) or more than one result object;
* webhooks lost / posted twice: no POST, or more than one POST, for a request_id;
* recovered in: from the fault until every job is COMPLETED and every webhook delivered, or
  "did not recover within X s" (what is missing then counts as lost).

Progress goes to stderr, the table to stdout, worker and API logs to ``--log-dir``.

    .venv/bin/python benchmarks/faults.py                                  # all scenarios, both settings
    .venv/bin/python benchmarks/faults.py --settings short --jobs 40
    .venv/bin/python benchmarks/faults.py --scenarios worker_sigkill --settings default --max-wait-s 90
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a plain script from a checkout (and never shadow stdlib modules)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402

from darkroom.cli.embedded import free_port, start_redis  # noqa: E402
from darkroom.settings import Settings  # noqa: E402
from storage import keys  # noqa: E402
from storage.jobs import redis_client  # noqa: E402
from storage.objects import build_object_store  # noqa: E402
from tests.e2e.test_faults import FAST, FAULTS, EventLog  # noqa: E402
from tests.support.harness import make_settings, stop_process  # noqa: E402
from tests.support.images import gradient, png_data_uri  # noqa: E402
from tests.support.servers import WebhookReceiver  # noqa: E402

log = logging.getLogger("bench.faults")

SCENARIOS = ("no_fault", "worker_sigkill", "worker_sigstop", "redis_restart", "idempotency_outage")
PROFILES = ("short", "default")
# The lease-based recovery sweep's knobs, short; used only where Settings has them (FAST wins).
SHORT_RECOVERY = dict(recovery_interval_s=0.5, recovery_grace_s=2.0)
HOOK_HOSTS = ["127.0.0.1", "::1", "localhost"]  # the webhook receiver listens on loopback
LEGEND_FIELDS = (
    "visibility_timeout_s", "broker_restore_interval_s", "heartbeat_interval_s", "heartbeat_ttl_s",
    "recovery_interval_s", "recovery_grace_s", "orphan_after_s", "orphan_sweep_interval_s",
    "task_hard_time_limit_s", "webhook_backoff_base_s", "idempotency_ttl_s", "idempotency_claim_ttl_s",
)
SMALL_IMAGE = png_data_uri(gradient(16, 16))


def known(values: dict) -> dict:
    """``values`` less the fields this checkout's Settings lacks (they come and go as Darkroom changes)."""
    return {k: v for k, v in values.items() if k in Settings.model_fields}


def build_settings(profile: str, redis_url: str, port: int, data: Path) -> Settings:
    plumbing = dict(
        local_storage_dir=data / "objects", plugins="tests.support.fault_plugin", max_queue_length=0,
        torch_threads=1, metrics_port=0, log_level="INFO",
    )
    if profile == "short":
        return make_settings(redis_url, None, port, **known({**SHORT_RECOVERY, **FAST, **plumbing}))
    values = dict(redis_url=redis_url, port=port, fetch_allow_hosts=HOOK_HOSTS, **plumbing)
    return Settings(**known(values))


def until(condition: Callable[[], object], timeout_s: float, interval_s: float = 0.05) -> object:
    """Poll ``condition`` until it is truthy or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    return {**env, **settings.to_env(), "PYTHONPATH": str(ROOT), **extra}


@dataclass
class Row:
    scenario: str
    profile: str
    cap_s: float
    jobs: int = 0
    lost: int = 0
    duplicated: int = 0
    hooks_lost: int = 0
    hooks_twice: int = 0
    failed: int = 0  # COMPLETED with an error (counted in lost too)
    recovery_s: float | None = None
    notes: list[str] = field(default_factory=list)


class Darkroom:
    """One settings profile's shared services: redis-server (AOF on), a `darkroom api` process, the
    COMPLETED event log and a webhook receiver. Workers are started fresh for each scenario."""

    def __init__(self, profile: str, data: Path, log_dir: Path) -> None:
        self.profile, self.data, self.log_dir = profile, data, log_dir
        self.redis_dir, self.redis_port = data / "redis", free_port()
        self.redis_proc, url = start_redis(self.redis_dir, port=self.redis_port)
        self.settings = build_settings(profile, url, free_port(), data)
        self.r = redis_client(url, 2)
        self.objects = build_object_store(self.settings)
        self.events = EventLog(url)
        self.hooks = WebhookReceiver()
        self.workers: list[subprocess.Popen] = []
        self.api: subprocess.Popen | None = None
        try:
            self.api = self._start_api()
        except BaseException:
            self.close()
            raise

    # --- processes ---
    def _start_api(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "darkroom.cli", "api"]
        with open(self.log_dir / f"{self.profile}-api.log", "ab") as out:
            env = child_env(self.settings, DARKROOM_LOG_LEVEL="WARNING")
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        health = self.settings.api_base_url + "/health"
        if not until(lambda: proc.poll() is not None or answers(health), 60) or proc.poll() is not None:
            raise RuntimeError(f"the API did not start (see {self.log_dir}/{self.profile}-api.log)")
        return proc

    def start_workers(self, tag: str, count: int, concurrency: int) -> list[subprocess.Popen]:
        """Stop the last scenario's workers, empty Redis, start ``count`` workers, wait for heartbeats."""
        self.stop_workers()
        self.r.flushall()
        for i in range(count):
            name = f"faults-{tag}-{i}-{time.monotonic_ns()}@faults"
            cmd = [sys.executable, "-m", "darkroom.cli", "worker", "--name", name,
                   "--concurrency", str(concurrency)]
            path = self.log_dir / f"{self.profile}-{tag}-w{i}.log"
            with open(path, "ab") as out:
                env = child_env(self.settings, DARKROOM_TORCH_THREADS="1")
                proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            proc.log_path = path  # type: ignore[attr-defined]
            self.workers.append(proc)
        for proc in self.workers:
            until(lambda p=proc: p.poll() is not None or self.heartbeat_alive(p), 120, 0.1)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited at start (rc={proc.returncode}, see {proc.log_path})")
        log.info("[%s] %d worker(s) up: pids %s", self.profile, count, [p.pid for p in self.workers])
        return list(self.workers)

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                proc.terminate()
        for proc in self.workers:
            stop_process(proc, timeout_s=15)
        self.workers = []

    def heartbeat_alive(self, proc: subprocess.Popen) -> bool:
        try:
            return bool(self.r.exists(keys.heartbeat(worker_id(proc))))
        except redis.RedisError:
            return False

    def kill_redis(self) -> None:
        self.redis_proc.kill()
        self.redis_proc.wait(timeout=10)
        log.info("[%s] redis-server SIGKILLed", self.profile)

    def restart_redis(self) -> None:
        self.redis_proc, _ = start_redis(self.redis_dir, port=self.redis_port)
        log.info("[%s] redis-server restarted on port %d (AOF replayed)", self.profile, self.redis_port)

    def close(self) -> None:
        self.stop_workers()
        if self.api is not None:
            stop_process(self.api, timeout_s=10)
        self.events.stop()
        self.hooks.close()
        self.redis_proc.terminate()
        self.redis_proc.wait(timeout=10)

    # --- requests ---
    def post(self, body: dict, idempotency_key: str = "", client: httpx.Client | None = None):
        """One submit with a fal webhook; the response, or None when the request itself failed."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        url = f"{self.settings.api_base_url}/{FAULTS}"
        params = {"fal_webhook": self.hooks.url}
        try:
            if client is not None:
                return client.post(url, params=params, json=body, headers=headers)
            return httpx.post(url, params=params, json=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            log.warning("submit failed: %r", exc)
            return None

    def submit(self, n: int, row: Row, **fields) -> list[str]:
        body = {"image_url": SMALL_IMAGE, **fields}
        ids, refused = [], Counter()
        with httpx.Client(timeout=30) as client:
            for _ in range(n):
                resp = self.post(body, client=client)
                if resp is not None and resp.status_code == 200:
                    ids.append(resp.json()["request_id"])
                else:
                    refused[resp.status_code if resp is not None else "error"] += 1
        if refused:
            row.notes.append("submits refused: " + ", ".join(f"{k}×{v}" for k, v in refused.items()))
        log.info("[%s] %d jobs accepted", self.profile, len(ids))
        return ids

    # --- observations ---
    def states(self, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """request id -> (status, error JSON) from the job records (None: no record)."""
        pipe = self.r.pipeline(transaction=False)
        for rid in ids:
            pipe.hmget(keys.job(rid), "status", "error")
        return {rid: (_text(s), _text(e)) for rid, (s, e) in zip(ids, pipe.execute(), strict=True)}

    def hook_counts(self) -> Counter[str]:
        """POSTs received per request id (the receiver answers 200 to all)."""
        counts: Counter[str] = Counter()
        for received in list(self.hooks.received):
            try:
                counts[received.json().get("request_id")] += 1
            except ValueError:
                counts["<not json>"] += 1
        return counts

    def all_done(self, ids: list[str]) -> bool:
        try:
            states = self.states(ids)
        except (redis.RedisError, OSError):
            return False
        hooks = self.hook_counts()
        return all(s == "COMPLETED" for s, _ in states.values()) and all(hooks[i] for i in ids)

    def result_objects(self, request_id: str) -> int:
        return sum(1 for _ in self.objects.list_objects(f"{request_id}/"))

    def job_ids(self) -> list[str]:
        """Every job record in Redis (it is emptied at the start of each scenario)."""
        found = (k.decode() for k in self.r.scan_iter(match=keys.job("*"), count=1000))
        return sorted(k.rsplit(":", 1)[1] for k in found if k.count(":") == 2)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def worker_id(proc: subprocess.Popen) -> str:
    """The identity a worker process writes in leases and heartbeats (worker/health.py)."""
    return f"{socket.gethostname()}:{proc.pid}"


# --- measuring ---------------------------------------------------------------------------------


def wait_recovered(dr: Darkroom, ids: list[str], t0: float, cap_s: float,
                   actions: list[tuple[float, Callable[[], None]]] = ()) -> float | None:
    """Seconds from ``t0`` until every job is COMPLETED and every webhook arrived (None: not within
    ``cap_s``); runs each ``(time, action)`` when its time comes, all of them in any case."""
    pending = sorted(actions, key=lambda a: a[0])
    done_s, next_report = None, t0 + 5
    while True:
        now = time.monotonic()
        while pending and (now >= pending[0][0] or now > t0 + cap_s):
            pending.pop(0)[1]()
        if done_s is None and dr.all_done(ids):
            done_s = time.monotonic() - t0
            log.info("[%s] all %d jobs COMPLETED and webhooks in, %.1f s after the fault", dr.profile,
                     len(ids), done_s)
        if (done_s is not None or now > t0 + cap_s) and not pending:
            return done_s
        if now >= next_report:
            report_progress(dr, ids, now - t0)
            next_report += 5
        time.sleep(0.1)


def report_progress(dr: Darkroom, ids: list[str], elapsed_s: float) -> None:
    try:
        statuses = Counter(s for s, _ in dr.states(ids).values())
    except (redis.RedisError, OSError) as exc:
        log.info("[%s] t+%.0f s: Redis unreachable (%s)", dr.profile, elapsed_s, type(exc).__name__)
        return
    hooks = dr.hook_counts()
    log.info("[%s] t+%.0f s: %s; webhooks for %d/%d", dr.profile, elapsed_s,
             ", ".join(f"{k}={v}" for k, v in sorted(statuses.items(), key=str)),
             sum(1 for i in ids if hooks[i]), len(ids))


def measure(dr: Darkroom, row: Row, ids: list[str], t0: float, opts: argparse.Namespace,
            actions: list[tuple[float, Callable[[], None]]] = ()) -> None:
    """Wait for recovery, let late duplicates arrive (``--settle-s`` after the last action), count."""
    row.jobs = len(ids)
    row.recovery_s = wait_recovered(dr, ids, t0, row.cap_s, actions)
    if row.recovery_s is not None:
        last = max([t0 + row.recovery_s, *(t for t, _ in actions)])
        time.sleep(max(0.0, last + opts.settle_s - time.monotonic()))
    tally(dr, row, ids)


def tally(dr: Darkroom, row: Row, ids: list[str]) -> None:
    states = dr.states(ids)
    unfinished = Counter(s or "no record" for s, _ in states.values() if s != "COMPLETED")
    failed = Counter(_error_type(e) for s, e in states.values() if s == "COMPLETED" and e)
    row.failed = sum(failed.values())
    row.lost = sum(unfinished.values()) + row.failed
    twice_events = {i for i in ids if dr.events.counts[i] > 1}
    twice_objects = {i for i in ids if dr.result_objects(i) > 1}
    row.duplicated = len(twice_events | twice_objects)
    hooks = dr.hook_counts()
    row.hooks_lost = sum(1 for i in ids if not hooks[i])
    row.hooks_twice = sum(1 for i in ids if hooks[i] > 1)
    unseen = sum(1 for i, (s, _) in states.items() if s == "COMPLETED" and not dr.events.counts[i])
    if unfinished:
        row.notes.append("not COMPLETED: " + ", ".join(f"{k}×{v}" for k, v in unfinished.items()))
    if failed:
        row.notes.append("COMPLETED with error: " + ", ".join(f"{k}×{v}" for k, v in failed.items()))
    if twice_events or twice_objects:
        row.notes.append(f"completed twice (pub/sub): {len(twice_events)}, >1 result object: "
                         f"{len(twice_objects)}")
    if unseen:
        row.notes.append(f"{unseen} completions not seen on pub/sub")
    if row.recovery_s is None:
        row.notes.insert(0, f"did not recover within {row.cap_s:.0f} s")
    log.info("[%s] %s: lost %d, duplicated %d, webhooks lost %d, twice %d; %s", dr.profile, row.scenario,
             row.lost, row.duplicated, row.hooks_lost, row.hooks_twice, "; ".join(row.notes))


def _error_type(error_json: str) -> str:
    try:
        return json.loads(error_json).get("error_type", "?")
    except ValueError:
        return "?"


def running_jobs_of(dr: Darkroom, victim: subprocess.Popen, ids: list[str]) -> int:
    """How many of ``ids`` are IN_PROGRESS under a lease ``victim`` holds."""
    try:
        running = [i for i, (s, _) in dr.states(ids).items() if s == "IN_PROGRESS"]
        holders = dr.r.mget([keys.job_lease(i) for i in running]) if running else []
    except redis.RedisError:
        return 0
    return sum(1 for h in holders if h is not None and h.decode() == worker_id(victim))


def wait_until_holding(dr: Darkroom, victim: subprocess.Popen, ids: list[str], row: Row) -> int:
    held = until(lambda: running_jobs_of(dr, victim, ids), 30)
    if not held:
        row.notes.append("victim held no running job when hit")
    return int(held or 0)


def worker_fate(dr: Darkroom, proc: subprocess.Popen, label: str) -> str:
    if proc.poll() is None:
        return f"{label} alive" + ("" if dr.heartbeat_alive(proc) else " (no heartbeat)")
    tail = proc.log_path.read_text(errors="replace").splitlines()[-8:]  # type: ignore[attr-defined]
    log.warning("[%s] %s (pid %d) exited rc=%s; last log lines:\n  %s", dr.profile, label, proc.pid,
                proc.returncode, "\n  ".join(tail))
    return f"{label} EXITED rc={proc.returncode}"


# --- scenarios -----------------------------------------------------------------------------------


def no_fault(dr: Darkroom, opts: argparse.Namespace) -> list[Row]:
    """The control: the same jobs and workers, nothing breaks; "recovered in" is the time to drain
    from the moment the other scenarios strike."""
    row = Row("no_fault (control)", dr.profile, opts.max_wait_s)
    first, _second = dr.start_workers("control", 2, opts.concurrency)
    ids = dr.submit(opts.jobs, row, mode="slow", sleep_ms=opts.sleep_ms)
    wait_until_holding(dr, first, ids, row)
    measure(dr, row, ids, time.monotonic(), opts)
    return [row]


def worker_sigkill(dr: Darkroom, opts: argparse.Namespace) -> list[Row]:
    row = Row("worker_sigkill", dr.profile, opts.max_wait_s)
    victim, other = dr.start_workers("sigkill", 2, opts.concurrency)
    ids = dr.submit(opts.jobs, row, mode="slow", sleep_ms=opts.sleep_ms)
    held = wait_until_holding(dr, victim, ids, row)
    t0 = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    log.info("[%s] SIGKILLed worker %d (it ran %d jobs)", dr.profile, victim.pid, held)
    row.notes.append(f"killed worker held {held} running")
    measure(dr, row, ids, t0, opts)
    row.notes.append(worker_fate(dr, other, "other worker"))
    return [row]


def worker_sigstop(dr: Darkroom, opts: argparse.Namespace) -> list[Row]:
    row = Row("worker_sigstop", dr.profile, opts.max_wait_s)
    victim, other = dr.start_workers("sigstop", 2, opts.concurrency)
    ids = dr.submit(opts.jobs, row, mode="slow", sleep_ms=opts.sleep_ms)
    held = wait_until_holding(dr, victim, ids, row)
    stop_s = opts.stop_s or dr.settings.heartbeat_ttl_s + 5
    t0 = time.monotonic()
    victim.send_signal(signal.SIGSTOP)
    log.info("[%s] SIGSTOPped worker %d (it ran %d jobs) for %.0f s", dr.profile, victim.pid, held, stop_s)

    def resume() -> None:
        victim.send_signal(signal.SIGCONT)
        log.info("[%s] SIGCONT worker %d", dr.profile, victim.pid)

    measure(dr, row, ids, t0, opts, actions=[(t0 + stop_s, resume)])
    row.notes[:0] = [f"stopped {stop_s:.0f} s holding {held} running; {row.failed} job failures recorded"]
    row.notes.append(worker_fate(dr, victim, "resumed worker"))
    row.notes.append(worker_fate(dr, other, "other worker"))
    return [row]


def redis_restart(dr: Darkroom, opts: argparse.Namespace) -> list[Row]:
    row = Row("redis_restart", dr.profile, opts.max_wait_s)
    workers = dr.start_workers("redis", 2, opts.concurrency)
    ids = dr.submit(opts.jobs, row, mode="slow", sleep_ms=opts.sleep_ms)
    until(lambda: any(s == "IN_PROGRESS" for s, _ in dr.states(ids).values()), 30)
    t0 = time.monotonic()
    dr.kill_redis()
    measure(dr, row, ids, t0, opts, actions=[(t0 + opts.redis_down_s, dr.restart_redis)])
    row.notes[:0] = [f"Redis down {opts.redis_down_s:.0f} s"]
    row.notes += [worker_fate(dr, w, f"worker {i + 1}") for i, w in enumerate(workers)]
    if not answers(dr.settings.api_base_url + "/health"):
        row.notes.append("API unhealthy afterwards")
    return [row]


def idempotency_outage(dr: Darkroom, opts: argparse.Namespace) -> list[Row]:
    return [idempotency_redis_down(dr, opts), idempotency_claim_then_crash(dr, opts)]


def idempotency_redis_down(dr: Darkroom, opts: argparse.Namespace) -> Row:
    """Submit with an Idempotency-Key while Redis is down, bring it back, retry the same request."""
    row = Row("idempotency_outage: Redis down at submit", dr.profile, opts.max_wait_s)
    dr.start_workers("idem-down", 1, opts.concurrency)
    key, body = f"faults-{uuid.uuid4()}", {"image_url": SMALL_IMAGE, "mode": "ok"}
    t_kill = time.monotonic()
    dr.kill_redis()
    resp = dr.post(body, key)
    row.notes.append(f"submit while down: {_code(resp)} after {time.monotonic() - t_kill:.1f} s")
    time.sleep(max(0.0, t_kill + opts.redis_down_s - time.monotonic()))
    dr.restart_redis()
    retry_and_count(dr, row, body, key, time.monotonic(), opts, interval_s=0.2)
    return row


def idempotency_claim_then_crash(dr: Darkroom, opts: argparse.Namespace) -> Row:
    """Redis dies between the API's claim of the key and the job's creation: a large inline image
    keeps the API busy (decode, screen, store) in that window; a watcher kills redis-server the moment
    the claim appears, then it comes back and the client retries the same request."""
    row = Row("idempotency_outage: Redis killed after the key is claimed", dr.profile, opts.max_wait_s)
    dr.start_workers("idem-claim", 1, opts.concurrency)
    key, body = f"faults-{uuid.uuid4()}", {"image_url": large_image(), "mode": "ok"}
    pattern = keys.idempotency("*", hashlib.sha256(key.encode()).hexdigest())
    killed: list[float] = []
    watcher = threading.Thread(target=kill_on_claim, args=(dr, pattern, killed), daemon=True)
    watcher.start()
    resp = dr.post(body, key)
    watcher.join(timeout=5)
    if not killed:
        row.notes.append(f"claim window missed (first submit: {_code(resp)}); Redis not killed")
        t_up = time.monotonic()
    else:
        row.notes.append(f"claim seen, Redis killed; that submit: {_code(resp)}")
        time.sleep(max(0.0, killed[0] + opts.redis_down_s - time.monotonic()))
        dr.restart_redis()
        t_up = time.monotonic()
    claim = next(iter(dr.r.scan_iter(match=pattern)), None)
    if claim is not None:
        row.notes.append(f"claim after restart: TTL {dr.r.ttl(claim)} s")
    retry_and_count(dr, row, body, key, t_up, opts, interval_s=1.0)
    return row


def kill_on_claim(dr: Darkroom, pattern: str, killed: list[float]) -> None:
    watch = redis.Redis(port=dr.redis_port, socket_timeout=1)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if next(iter(watch.scan_iter(match=pattern, count=1000)), None) is not None:
                dr.redis_proc.kill()
                killed.append(time.monotonic())
                log.info("[%s] Idempotency-Key claimed: redis-server SIGKILLed", dr.profile)
                dr.redis_proc.wait(timeout=10)
                return
            time.sleep(0.001)
    except redis.RedisError as exc:
        log.warning("claim watcher stopped: %r", exc)


def large_image() -> str:
    """A noise PNG of about 10 MB as a data URI: the API spends tens of ms storing it."""
    return png_data_uri(np.random.default_rng(0).integers(0, 256, (1800, 1800, 3), dtype=np.uint8))


def retry_and_count(dr: Darkroom, row: Row, body: dict, key: str, t_up: float,
                    opts: argparse.Namespace, interval_s: float) -> None:
    """Retry the same submit until it is accepted (recovery = from Redis back until then), replay it
    twice more, then count the jobs the key created and wait for them as in the other scenarios."""
    codes: Counter[str] = Counter()
    accepted: list[str] = []
    while not accepted and time.monotonic() < t_up + row.cap_s:
        resp = dr.post(body, key)
        codes[_code(resp)] += 1
        if resp is not None and resp.status_code == 200:
            accepted.append(resp.json()["request_id"])
            row.recovery_s = time.monotonic() - t_up
        else:
            time.sleep(interval_s)
    for _ in range(2 if accepted else 0):
        resp = dr.post(body, key)
        if resp is not None and resp.status_code == 200:
            accepted.append(resp.json()["request_id"])
    row.notes.append("retries: " + ", ".join(f"{k}×{v}" for k, v in codes.items()))
    created = dr.job_ids()
    row.notes.append(f"{len(set(accepted))} request id(s) answered, {len(created)} job(s) created")
    log.info("[%s] %s: %s", dr.profile, row.scenario, "; ".join(row.notes))
    accepted_after_s = row.recovery_s
    ids = sorted(set(accepted) | set(created))
    if ids:  # the created jobs must still complete, once each, with their webhook
        measure(dr, row, ids, time.monotonic(), opts)
    row.jobs = 1  # one request, however many jobs it made
    row.duplicated += max(0, len(created) - 1)
    if not accepted:
        row.lost = max(row.lost, 1)  # the client's request: no retry gets it in
        row.notes.insert(0, f"not accepted within {row.cap_s:.0f} s of Redis coming back")
        row.recovery_s = None
    elif row.recovery_s is not None:
        row.recovery_s = accepted_after_s  # recovery here: from Redis back until a retry is accepted


def _code(resp: httpx.Response | None) -> str:
    if resp is None:
        return "no answer"
    if resp.status_code == 200:
        return "200"
    try:
        return f"{resp.status_code} {resp.json().get('error_type') or ''}".strip()
    except ValueError:
        return str(resp.status_code)


RUNNERS: dict[str, Callable[[Darkroom, argparse.Namespace], list[Row]]] = {
    "no_fault": no_fault,
    "worker_sigkill": worker_sigkill,
    "worker_sigstop": worker_sigstop,
    "redis_restart": redis_restart,
    "idempotency_outage": idempotency_outage,
}


def run_scenario(dr: Darkroom, name: str, opts: argparse.Namespace) -> list[Row]:
    log.info("[%s] === %s ===", dr.profile, name)
    try:
        return RUNNERS[name](dr, opts)
    except Exception as exc:  # one broken scenario still leaves a table
        log.exception("[%s] %s failed", dr.profile, name)
        return [Row(name, dr.profile, opts.max_wait_s, notes=[f"scenario error: {exc!r}"])]
    finally:
        dr.stop_workers()


@contextmanager
def services(profile: str, log_dir: Path) -> Iterator[Darkroom]:
    with tempfile.TemporaryDirectory(prefix=f"darkroom-faults-{profile}-") as tmp:
        dr = Darkroom(profile, Path(tmp), log_dir)
        try:
            yield dr
        finally:
            dr.close()


# --- output --------------------------------------------------------------------------------------


def render(rows: list[Row], legends: dict[str, Settings]) -> str:
    lines = [
        "| scenario | settings | jobs | jobs lost | jobs duplicated | webhooks lost | webhooks twice "
        "| recovered in | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        recovered = f"{r.recovery_s:.1f} s" if r.recovery_s is not None else f"no (> {r.cap_s:.0f} s)"
        lines.append(f"| {r.scenario} | {r.profile} | {r.jobs} | {r.lost} | {r.duplicated} | {r.hooks_lost} "
                     f"| {r.hooks_twice} | {recovered} | {'; '.join(r.notes)} |")
    lines.append("")
    for profile, s in legends.items():
        values = ", ".join(f"{f}={getattr(s, f)}" for f in LEGEND_FIELDS if f in Settings.model_fields)
        lines.append(f"- {profile}: {values}")
    lines.append(f"- code: {code_version()}")
    return "\n".join(lines)


def code_version() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return f"{ROOT} (not a git checkout)"
    changed = len(git("status", "--porcelain").splitlines())
    return f"{ROOT} at {head}" + (f" + {changed} changed/untracked files" if changed else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--settings", choices=("short", "default", "both"), default="both",
                   help="the fault suite's short timeouts, production defaults, or both (default)")
    p.add_argument("--jobs", type=int, default=60, help="jobs per scenario (default 60)")
    p.add_argument("--max-wait-s", type=float, default=120.0,
                   help="per scenario: give up this long after the fault; what is missing counts as lost")
    p.add_argument("--sleep-ms", type=int, default=300, help="how long each job runs (default 300)")
    p.add_argument("--concurrency", type=int, default=4, help="job slots per worker (default 4)")
    p.add_argument("--stop-s", type=float, default=0.0,
                   help="worker_sigstop: how long the worker stays stopped (default heartbeat TTL + 5 s)")
    p.add_argument("--redis-down-s", type=float, default=1.0, help="how long Redis stays down (default 1)")
    p.add_argument("--settle-s", type=float, default=3.0,
                   help="after recovery, wait this long for late duplicates before counting (default 3)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="worker and API logs (default: a new temporary folder, kept)")
    opts = p.parse_args(argv)
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    unknown = set(opts.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="darkroom-faults-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log.info("code: %s; logs in %s", code_version(), log_dir)
    profiles = PROFILES if opts.settings == "both" else (opts.settings,)
    rows: list[Row] = []
    legends: dict[str, Settings] = {}
    for profile in profiles:
        with services(profile, log_dir) as dr:
            legends[profile] = dr.settings
            for name in opts.scenarios:
                rows += run_scenario(dr, name, opts)
    print(render(rows, legends))
    return 0


if __name__ == "__main__":
    sys.exit(main())

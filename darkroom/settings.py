"""One typed settings object for every part of Darkroom (env prefix ``DARKROOM_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DAY_S = 24 * 3600


class Settings(BaseSettings):
    """Built once at start-up and passed in; nothing else reads ``os.environ``."""

    model_config = SettingsConfigDict(env_prefix="DARKROOM_", env_file=None, extra="ignore")

    # --- Redis (broker, job store, pub/sub) ---
    redis_url: str = Field("", description="Redis URL. Empty: `darkroom up` starts a private redis-server.")
    redis_socket_timeout_s: float = Field(1.5, description="Socket connect/read timeout for the job store.")

    # --- object storage ---
    storage_backend: Literal["s3", "local"] = Field("local", description="Where inputs and results live.")
    local_storage_dir: Path = Field(Path("data/objects"), description="Root directory of the local backend.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto); None = AWS.")
    s3_public_endpoint_url: str | None = Field(
        None,
        description="Endpoint in the presigned URLs handed to clients, when they reach S3 at another address "
        "than the service does (compose: `http://localhost:9000`); None: `s3_endpoint_url`.",
    )
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_bucket: str = Field("darkroom", description="Bucket for inputs and results.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id (None: boto3's default chain).")
    s3_secret_access_key: str | None = Field(None, description="S3 secret access key.")
    s3_create_bucket: bool = Field(False, description="Create the bucket at start-up when it is missing.")
    s3_public_base_url: str | None = Field(
        None, description="If set, result URLs are `<base>/<key>` instead of presigned GETs."
    )
    s3_presign_ttl_s: int = Field(3600, ge=1, description="Lifetime of presigned result URLs.")
    s3_connect_timeout_s: float = Field(2.0, description="S3 connect timeout.")
    s3_read_timeout_s: float = Field(10.0, description="S3 read timeout.")
    s3_max_attempts: int = Field(2, ge=1, description="boto3's own attempts per S3 call.")

    # --- API ---
    host: str = Field("127.0.0.1", description="Bind address of the API.")
    port: int = Field(8000, description="Port of the API.")
    public_base_url: str = Field(
        "", description="Base URL clients use to reach the API (response_url etc.); empty: http(s)://host:port."
    )
    max_queue_length: int = Field(
        10000, ge=0, description="Most jobs waiting per app; beyond it submit answers 429 (0: no cap)."
    )
    retention_s: int = Field(
        7 * DAY_S, ge=60, description="Job records and result objects expire after this."
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate: `darkroom api` serves HTTPS when this and tls_keyfile are set."
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS, comma-separated (`*`: any); empty: CORS off.",
    )
    sse_keepalive_s: float = Field(
        15.0, gt=0, description="Status streams send a keep-alive comment line this often."
    )
    sync_run_timeout_s: float = Field(
        300.0, gt=0, description="`POST /run/...` waits this long for the result, then cancels (504)."
    )
    idempotency_ttl_s: int = Field(
        DAY_S, ge=1, description="How long an Idempotency-Key maps to the request it created."
    )
    idempotency_claim_ttl_s: int = Field(
        10, ge=1, description="How long an Idempotency-Key claimed by a submit that never created its "
        "job (Redis went away meanwhile) blocks retries of the same key."
    )

    # --- access ---
    auth_mode: Literal["auto", "required", "off"] = Field(
        "auto",
        description="API keys: `required`, `off`, or `auto` (required unless `host` is a loopback address).",
    )
    auth_off_public_ok: bool = Field(
        False,
        description="Let `auth_mode=off` start on a non-loopback `host` (anyone reaching it may use it).",
    )
    rate_limit_rps: float = Field(
        100.0, ge=0, description="Requests per second allowed per API key (token bucket; 0: no limit)."
    )
    rate_limit_burst: int = Field(
        200, ge=1, description="Requests an API key may send at once before `rate_limit_rps` applies."
    )

    # --- webhooks ---
    webhook_max_attempts: int = Field(
        10, ge=1, description="Delivery attempts per webhook, the first included."
    )
    webhook_backoff_base_s: float = Field(
        30.0, ge=0, description="Delay before the second webhook attempt; doubles each attempt."
    )
    webhook_backoff_max_s: float = Field(1800.0, ge=0, description="Cap on one webhook retry delay.")
    webhook_timeout_s: float = Field(15.0, gt=0, description="Timeout of one webhook delivery attempt.")
    webhook_signing_key_file: Path | None = Field(
        None,
        description="Ed25519 private key (PEM) signing webhooks; unset: one is generated and kept in Redis.",
    )

    # --- inputs ---
    max_input_bytes: int = Field(50 * 1024 * 1024, description="Largest accepted input file.")
    max_pixels: int = Field(50_000_000, description="Largest accepted width x height.")
    max_side_px: int = Field(16384, description="Largest accepted width or height.")
    max_output_pixels: int = Field(
        64_000_000, description="Largest width x height a pipeline step may make (inputs: max_pixels)."
    )
    fonts_dir: Path | None = Field(
        None, description="Extra .ttf/.otf fonts for the pipeline's overlay step, named by file name."
    )
    fetch_connect_timeout_s: float = Field(5.0, description="Connect timeout when fetching input URLs.")
    fetch_timeout_s: float = Field(30.0, description="Total timeout when fetching input URLs.")
    fetch_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names or CIDRs that input URLs and webhooks may reach despite the address "
        "rules (loopback, private, metadata…), comma-separated; for local development and tests.",
    )

    # --- worker ---
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device the worker runs effects on.")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads per worker process (0: torch's).")
    worker_concurrency: int = Field(
        8, ge=1, description="Job slots per worker process (each holds one late-acked message)."
    )
    worker_tune_malloc: bool = Field(
        True, description="Keep freed image-sized buffers in the heap (glibc mallopt): much faster effects."
    )
    worker_fuse_effects: bool = Field(
        True, description="On the CPU, compile the point-wise effects into fused C++ kernels "
        "(torch.compile; needs a C++ compiler), in the background: jobs run the plain torch code until "
        "a kernel is ready (docs/performance.md)."
    )
    worker_fuse_wait_s: float = Field(
        0.0, ge=0, description="Wait up to this long for fused kernels to compile: at start for a "
        "sample request's, before taking jobs, and in a job for one it is the first to need (0: never "
        "wait, jobs run the plain torch code until a kernel is ready; benchmarks wait for steady state)."
    )
    worker_switch_interval_ms: float = Field(
        0.0, ge=0, description="Python's thread switch interval in a worker (sys.setswitchinterval), "
        "in ms; 0 keeps Python's 5 ms. A thread that gave the GIL up for a torch call can wait a whole "
        "interval to get it back while a job slot runs Python code (docs/gpu.md)."
    )
    max_batch_size: int = Field(8, ge=1, description="Most jobs run as one batch on the device.")
    max_wait_ms: float = Field(
        5.0, ge=0, description="How long the batcher waits for batch-mates while other slots are busy."
    )
    cpu_chunk_mib: float = Field(
        3.0, ge=0, description="On the CPU, a batch's effects run in chunks of about this many MiB of "
        "float32 pixels, so each pass stays in cache (0: the whole batch at once)."
    )
    max_crashes: int = Field(
        3, ge=1, description="A job that killed its worker this many times fails as worker_crash."
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often a worker writes its heartbeat.")
    heartbeat_ttl_s: float = Field(
        15.0, gt=0, description="A worker whose heartbeat is older than this counts as dead; also the "
        "lifetime of a job's lease, which the heartbeat renews while the job runs."
    )
    recovery_interval_s: float = Field(
        5.0, gt=0, description="How often a worker runs the recovery sweep (one worker at a time): it "
        "re-sends jobs and webhooks whose worker died or stalled (lease lapsed) or whose message was lost, "
        "and sends webhook retries when due."
    )
    recovery_grace_s: float = Field(
        10.0, gt=0, description="A message sent this long ago whose record shows it was lost (a later "
        "message on the same list already started, or the list is empty) is sent again; also the least "
        "time between two re-sends of one record."
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM, running batches get this long before jobs are handed back."
    )
    plugins: str = Field(
        "", description="Comma-separated modules imported at start-up that register extra apps/effects."
    )
    visibility_timeout_s: float = Field(
        3600, gt=0, description="The broker's last resort: it redelivers a message unacknowledged this "
        "long (recovery normally comes sooner, from leases and the recovery sweep); must exceed the hard "
        "limit."
    )
    task_soft_time_limit_s: float = Field(
        600, gt=0, description="Effects pipeline: past this a job fails (request_timeout) at its next step."
    )
    task_hard_time_limit_s: float = Field(
        900, gt=0, description="Effects pipeline: past this the worker process exits; the job is redelivered."
    )
    broker_restore_interval_s: float = Field(
        30.0, description="How often workers look for unacked messages past the visibility timeout."
    )

    # --- diffusion models (worker) ---
    models_dir: Path = Field(
        Path("data/models"), description="Where `darkroom models pull` stores models; workers look there."
    )
    models_config: Path | None = Field(
        None,
        description="JSON file adding or overriding models: name -> {repo or path, pipeline, kind, "
        "takes_prompt}; a relative path is taken from the file's folder.",
    )
    model_cache_mb: int = Field(
        16000, ge=0,
        description="Memory a worker's loaded diffusion pipelines may hold; beyond it the least recently "
        "used are unloaded (the one in use always stays).",
    )
    upscale_tile_px: int = Field(
        128, ge=16, description="Side of the input tiles the upscalers work on (a multiple of 8); bounds "
        "device memory whatever the input size.",
    )
    upscale_tile_overlap_px: int = Field(
        16, ge=0, description="Overlap of neighbouring upscale tiles (input pixels), blended by feathering."
    )
    progress_interval_s: float = Field(
        0.5, ge=0, description="Diffusion jobs log `step k/N` at most this often (and at the last step)."
    )

    retry_max: int = Field(5, ge=0, description="Retries of a transient failure before the job fails.")
    retry_backoff_base_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry.")
    retry_backoff_max_s: float = Field(
        60.0, ge=0, description="Cap on one retry delay (must stay below visibility_timeout_s)."
    )

    # --- operations ---
    metrics_port: int = Field(
        9808, ge=0, le=65535,
        description="Each worker process serves Prometheus metrics at `/metrics` on this port (0: off); "
        "workers sharing a host need distinct ports.",
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Bind address of the workers' metrics server; under `darkroom up` it "
        "defaults to the API's `host` (loopback unless you open the API)."
    )
    worker_banner: bool = Field(
        True, description="A worker prints Celery's start-up banner (`darkroom up` turns it off; the "
        "worker logs one line instead)."
    )
    worker_root_warning: bool = Field(
        True, description="Let Celery warn when a worker runs as root (`darkroom up` turns it off: there "
        "root is the user's own choice, and workers accept only JSON messages)."
    )
    api_metrics: bool = Field(
        True, description="Serve Prometheus metrics at `/metrics` on the API (no key needed, like /health)."
    )
    api_create_batch: int = Field(
        64, ge=1, description="Most job creates the API sends to Redis in one pipelined round trip (the "
        "submits that arrive together share it; no waiting). 1: one round trip per submit."
    )

    log_level: str = Field("INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.task_soft_time_limit_s > self.task_hard_time_limit_s:
            raise ValueError("task_soft_time_limit_s must not exceed task_hard_time_limit_s")
        if self.visibility_timeout_s <= self.task_hard_time_limit_s:
            raise ValueError(
                "visibility_timeout_s must be longer than task_hard_time_limit_s, "
                "or the broker would hand a running job to a second worker"
            )
        if self.heartbeat_ttl_s >= self.visibility_timeout_s:
            raise ValueError("heartbeat_ttl_s must be below visibility_timeout_s")
        if self.retry_backoff_max_s >= self.visibility_timeout_s:
            raise ValueError(
                "retry_backoff_max_s must be below visibility_timeout_s: a delayed retry waiting past "
                "the visibility timeout would be delivered twice"
            )
        if self.upscale_tile_px % 8 or self.upscale_tile_overlap_px * 2 >= self.upscale_tile_px:
            raise ValueError(
                "upscale_tile_px must be a multiple of 8 and more than twice upscale_tile_overlap_px"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both tls_certfile and tls_keyfile, or neither")
        return self

    @field_validator("cors_origins", "fetch_allow_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    def to_env(self) -> dict[str, str]:
        """These settings as DARKROOM_* environment variables (to configure child processes)."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                if isinstance(value, list):
                    text = ",".join(map(str, value))
                env[f"DARKROOM_{name.upper()}"] = text
        return env

    @property
    def api_base_url(self) -> str:
        scheme = "https" if self.tls_certfile else "http"
        return (self.public_base_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once (entry points only; libraries take them as arguments)."""
    return Settings()

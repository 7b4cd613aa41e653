"""Settings, built once from the environment by `load_settings`, never at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATA_DIR = Path("~/.local/share/aiplatform")
REDIS_KEY_PREFIX = "aiplatform:v2:"


class SettingsError(ValueError):
    """A setting from the environment has a value the platform cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = field(default_factory=lambda: DEFAULT_DATA_DIR.expanduser())
    secret_key: str | None = None
    storage: str | None = None
    # Separates the Redis keys and queues of platforms (or test runs) that share one Redis.
    instance: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # Bounded lag (DESIGN.md guarantee 6): an idle-in-transaction session would hold back
    # pg_snapshot_xmin and with it every catch-up reader, so the server ends it.
    idle_in_transaction_timeout_ms: int = 30_000
    database_pool_size: int = 10
    max_request_body_bytes: int = 1_048_576
    # Dataset files and model artifacts stream to the blob store; this caps one upload.
    max_upload_bytes: int = 10 * 1024**3
    read_your_writes_timeout_s: float = 5.0
    projector_batch_size: int = 500
    # `accelerate launch` options for training jobs (e.g. "--multi_gpu --num_processes 8");
    # unset: one process per visible NVIDIA GPU, or one CPU process.
    accelerate_args: str | None = None
    # An inference worker keeps models loaded up to this many bytes of weights (LRU).
    inference_memory_bytes: int = 2 * 1024**3
    # How long the API waits for an inference worker's first answer before it says 503.
    inference_timeout_s: float = 30.0
    inference_torch_threads: int = 1

    def with_services(self, database_url: str, redis_url: str) -> Settings:
        return replace(self, database_url=database_url, redis_url=redis_url)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError(
                "AIPLATFORM_DATABASE_URL is not set (postgresql://user@host:5432/db); "
                "`aiplatform up` starts an embedded database when it is unset"
            )
        return self.database_url

    def require_secret_key(self) -> str:
        if not self.secret_key or len(self.secret_key) < 32:
            raise SettingsError(
                "AIPLATFORM_SECRET_KEY must be set to at least 32 random characters (it signs "
                "access tokens); `aiplatform up` generates one in the data directory"
            )
        return self.secret_key

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise SettingsError(
                "AIPLATFORM_REDIS_URL is not set (redis://host:6379/0); "
                "`aiplatform up` starts an embedded Redis when it is unset"
            )
        return self.redis_url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    database_url = env.get("AIPLATFORM_DATABASE_URL") or None
    if database_url and not database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError(
            "AIPLATFORM_DATABASE_URL must start with postgresql://, "
            f"got {database_url.split(':')[0]}:"
        )
    redis_url = env.get("AIPLATFORM_REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("AIPLATFORM_REDIS_URL must start with redis://, rediss:// or unix://")
    data_dir = Path(env.get("AIPLATFORM_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data_dir,
        secret_key=env.get("AIPLATFORM_SECRET_KEY") or None,
        storage=env.get("AIPLATFORM_STORAGE") or None,
        instance=env.get("AIPLATFORM_INSTANCE", ""),
        host=env.get("AIPLATFORM_HOST", "127.0.0.1"),
        port=_int(env, "AIPLATFORM_PORT", 8000),
        database_pool_size=_int(env, "AIPLATFORM_DATABASE_POOL_SIZE", 10),
        max_request_body_bytes=_int(env, "AIPLATFORM_MAX_REQUEST_BODY_BYTES", 1_048_576),
        max_upload_bytes=_int(env, "AIPLATFORM_MAX_UPLOAD_BYTES", 10 * 1024**3),
        accelerate_args=env.get("AIPLATFORM_ACCELERATE_ARGS") or None,
        inference_memory_bytes=_int(env, "AIPLATFORM_INFERENCE_MEMORY_BYTES", 2 * 1024**3),
        inference_timeout_s=_int(env, "AIPLATFORM_INFERENCE_TIMEOUT_S", 30),
        inference_torch_threads=_int(env, "AIPLATFORM_INFERENCE_TORCH_THREADS", 1),
    )

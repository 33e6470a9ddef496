"""Settings, read from the environment (CONTRACT §5).

The contract's names are kept as they are (some carry no `TASKSTATE_` prefix,
as the seed had them), so every field names its variable explicitly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Everything an operator can tune. Defaults suit the embedded single-user run."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite+aiosqlite:///./taskstate.db", validation_alias=_env("DATABASE_URL"))
    max_concurrent_tasks: int = Field(10, ge=1, le=10_000, validation_alias=_env("MAX_CONCURRENT_TASKS"))
    task_timeout_seconds: float = Field(3600, gt=0, validation_alias=_env("TASK_TIMEOUT_SECONDS"))
    task_history_retention_days: float = Field(30, ge=0, validation_alias=_env("TASK_HISTORY_RETENTION_DAYS"))
    task_polling_frequency: int = Field(3000, ge=100, validation_alias=_env("TASK_POLLING_FREQUENCY"))
    heartbeat_seconds: float = Field(5, gt=0, validation_alias=_env("TASKSTATE_HEARTBEAT_SECONDS"))
    orphan_after_seconds: float = Field(30, gt=0, validation_alias=_env("TASKSTATE_ORPHAN_AFTER_SECONDS"))
    cancel_grace_seconds: float = Field(5, ge=0, validation_alias=_env("TASKSTATE_CANCEL_GRACE_SECONDS"))
    stop_grace_seconds: float = Field(10, ge=0, validation_alias=_env("TASKSTATE_STOP_GRACE_SECONDS"))
    max_log_lines: int = Field(10_000, ge=10, validation_alias=_env("TASKSTATE_MAX_LOG_LINES"))
    shutdown_grace_seconds: float = Field(10, ge=0, validation_alias=_env("TASKSTATE_SHUTDOWN_GRACE_SECONDS"))
    poll_seconds: float = Field(1.0, gt=0, validation_alias=_env("TASKSTATE_POLL_SECONDS"))
    progress_flush_seconds: float = Field(
        0.25, gt=0, validation_alias=_env("TASKSTATE_PROGRESS_FLUSH_SECONDS")
    )
    retention_interval_seconds: float = Field(
        3600, gt=0, validation_alias=_env("TASKSTATE_RETENTION_INTERVAL_SECONDS")
    )
    demo_jobs: bool = Field(True, validation_alias=_env("TASKSTATE_DEMO_JOBS"))
    jobs_module: str | None = Field(None, validation_alias=_env("TASKSTATE_JOBS"))
    host: str = Field("127.0.0.1", validation_alias=_env("TASKSTATE_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("TASKSTATE_PORT"))
    max_body_bytes: int = Field(64 * 1024, ge=1024, validation_alias=_env("TASKSTATE_MAX_BODY_BYTES"))
    max_batch_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("TASKSTATE_MAX_BATCH_BODY_BYTES")
    )
    max_params_bytes: int = Field(64 * 1024, ge=2, validation_alias=_env("TASKSTATE_MAX_PARAMS_BYTES"))
    max_result_bytes: int = Field(1024 * 1024, ge=2, validation_alias=_env("TASKSTATE_MAX_RESULT_BYTES"))
    max_checkpoint_bytes: int = Field(
        1024 * 1024, ge=2, validation_alias=_env("TASKSTATE_MAX_CHECKPOINT_BYTES")
    )
    subscriber_queue_size: int = Field(1000, ge=1, validation_alias=_env("TASKSTATE_SUBSCRIBER_QUEUE_SIZE"))
    # Off by default: per-message deflate keeps a compressor per connection (about 36 KiB
    # of the 78 KiB an idle subscriber cost) and compresses every event once per subscriber.
    ws_compression: bool = Field(False, validation_alias=_env("TASKSTATE_WS_COMPRESSION"))
    worker_id: str | None = Field(None, validation_alias=_env("TASKSTATE_WORKER_ID"))
    auth: Literal["off", "tokens"] = Field("off", validation_alias=_env("TASKSTATE_AUTH"))
    auth_shared_tasks: bool = Field(False, validation_alias=_env("TASKSTATE_AUTH_SHARED_TASKS"))
    # How often the tokens of open WebSockets are checked again, as a safety net: a revocation
    # through the API closes them at once, on every instance.
    token_recheck_seconds: float = Field(30, gt=0, validation_alias=_env("TASKSTATE_TOKEN_RECHECK_SECONDS"))
    db_pool_size: int = Field(20, ge=1, le=500, validation_alias=_env("TASKSTATE_DB_POOL_SIZE"))
    max_pending_questions: int = Field(20, ge=1, validation_alias=_env("TASKSTATE_MAX_PENDING_QUESTIONS"))
    cors_origins: str = Field(
        "", validation_alias=_env("TASKSTATE_CORS_ORIGINS"), description="Comma-separated; empty: CORS off."
    )
    allowed_hosts: str = Field(
        "",
        validation_alias=_env("TASKSTATE_ALLOWED_HOSTS"),
        description="Comma-separated host names to answer, `*` for any; empty: localhost and the bind host "
        "(on 0.0.0.0 or ::, this machine's names). IP addresses are always answered.",
    )
    # OpenTelemetry spans of requests and job runs (the `tracing` extra); see taskstate/tracing.py.
    tracing: bool = Field(False, validation_alias=_env("TASKSTATE_TRACING"))
    run_supervisor: bool = Field(True, validation_alias=_env("TASKSTATE_RUN_SUPERVISOR"))
    # uvicorn has no limit of its own on the time a client takes to send a request's headers.
    header_timeout_seconds: float = Field(
        10, gt=0, le=3600, validation_alias=_env("TASKSTATE_HEADER_TIMEOUT_SECONDS")
    )

"""The one settings object: every environment variable the observatory reads is declared here."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KEY_RE = re.compile(r"obs_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")  # an API key (observatory.keys); use fullmatch


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    amqp_url: str | None = Field(default=None, validation_alias="AMQP_URL")
    postgres_dsn: str | None = Field(default=None, validation_alias="POSTGRES_DSN")
    mongo_url: str | None = Field(default=None, validation_alias="MONGO_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    namespace: str = Field(
        default="observatory",
        pattern=r"^[a-z][a-z0-9_]{0,30}$",
        validation_alias="OBSERVATORY_NAMESPACE",
        description="Prefix for the exchange, queues, PostgreSQL schema, Mongo database and Redis keys.",
    )
    data_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "observatory",
        validation_alias="OBSERVATORY_DATA_DIR",
    )
    api_url: str = Field(default="http://127.0.0.1:8000", validation_alias="OBSERVATORY_API_URL")
    log_level: str = Field(default="WARNING", validation_alias="OBSERVATORY_LOG_LEVEL")
    instance_id: str = Field(default="", validation_alias="OBSERVATORY_INSTANCE_ID")
    sweep_after_s: float = Field(
        default=10.0,
        gt=0,
        validation_alias="OBSERVATORY_SWEEP_AFTER_S",
        description="A PENDING job whose publish was never confirmed is re-published after this long.",
    )
    prometheus_url: str = Field(default="http://127.0.0.1:9090", validation_alias="OBSERVATORY_PROMETHEUS_URL")
    alertmanager_url: str = Field(default="http://127.0.0.1:9093", validation_alias="OBSERVATORY_ALERTMANAGER_URL")
    grafana_url: str = Field(default="http://127.0.0.1:3000", validation_alias="OBSERVATORY_GRAFANA_URL")
    ray_dashboard_url: str = Field(default="http://127.0.0.1:8265", validation_alias="OBSERVATORY_RAY_DASHBOARD_URL")
    rabbitmq_management_url: str = Field(
        default="http://127.0.0.1:15672", validation_alias="OBSERVATORY_RABBITMQ_MANAGEMENT_URL"
    )
    public_urls: dict[str, str] = Field(
        default_factory=dict,
        validation_alias="OBSERVATORY_PUBLIC_URLS",
        description="JSON {name: url}: where a browser opens an operator UI when that differs from the address "
        "the server checks (e.g. on Kubernetes); names: Ray dashboard, Prometheus, Alertmanager, Grafana, RabbitMQ.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        min_length=16,
        validation_alias="OBSERVATORY_WEBHOOK_SECRET",
        description="Bearer token Alertmanager sends to POST /read/alerts/webhook; unset: the webhook refuses all.",
    )
    auth: Literal["auto", "required", "disabled"] = Field(
        default="auto",
        validation_alias="OBSERVATORY_AUTH",
        description="auto: API keys are required once one exists, and always when Serve listens beyond loopback "
        "(start-up refuses without a key); required: always; disabled: never (logged as a warning).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias="OBSERVATORY_API_KEY",
        description="The key the CLI and the TUI send (Authorization: Bearer).",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        validation_alias="OBSERVATORY_ADMIN_KEY",
        description="A key with every scope that the apps store at start (the KubeRay Secret's admin key).",
    )
    rate_limit_per_s: float = Field(
        default=5000.0,
        ge=0,
        validation_alias="OBSERVATORY_RATE_LIMIT",
        description="Jobs per second each key (all keyless clients together, while open) may submit; 0: no limit.",
    )
    rate_burst: float = Field(
        default=20000.0, gt=0, validation_alias="OBSERVATORY_RATE_BURST", description="Jobs a key may submit at once."
    )
    max_unfinished: int = Field(
        default=100_000,
        ge=0,
        validation_alias="OBSERVATORY_MAX_UNFINISHED",
        description="Submissions get 503 with Retry-After while this many jobs are PENDING or RETRYING; 0: no bound.",
    )
    group_linger_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        validation_alias="OBSERVATORY_GROUP_LINGER_S",
        description="How long a forming group of single submits may wait for more requests, while another group "
        "is being committed or while they keep coming (fewer, larger commits under load; a caller alone goes at "
        "once, or after OBSERVATORY_GROUP_GAP_S when the group before held several); 0: never (see "
        "observatory/grouping.py).",
    )
    group_gap_s: float = Field(
        default=0.004,
        ge=0,
        le=1,
        validation_alias="OBSERVATORY_GROUP_GAP_S",
        description="Under concurrent single submits, a forming group goes on gathering while requests come less "
        "than this apart (up to OBSERVATORY_GROUP_LINGER_S); 0: only while another group commits.",
    )
    cors_origins: str = Field(
        default="",
        validation_alias="OBSERVATORY_CORS_ORIGINS",
        description="Comma-separated origins allowed to call the APIs from a browser; empty: CORS off.",
    )
    final_state_ttl_s: int = Field(
        default=3_600,
        ge=1,
        validation_alias="OBSERVATORY_FINAL_STATE_TTL_S",
        description="How long the stats cache remembers a COMPLETED, FAILED or CANCELLED job (see "
        "observatory/counting.py).",
    )
    retention_days: float = Field(
        default=30.0,
        ge=0,
        validation_alias="OBSERVATORY_RETENTION_DAYS",
        description="COMPLETED, FAILED and CANCELLED jobs, their attempts and events, are removed this many days "
        "after they finished (the stats keep counting them); 0: kept forever (see observatory/retention.py).",
    )
    retention_interval_s: float = Field(
        default=300.0,
        gt=0,
        validation_alias="OBSERVATORY_RETENTION_INTERVAL_S",
        description="How often the workers app looks for jobs past OBSERVATORY_RETENTION_DAYS.",
    )
    retry_base_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        validation_alias="OBSERVATORY_RETRY_BASE_S",
        description="Delay before the first retry; doubles per attempt (±20% jitter).",
    )
    retry_max_s: float = Field(
        default=60.0, gt=0, le=86400, validation_alias="OBSERVATORY_RETRY_MAX_S", description="Cap of the retry delay."
    )

    @field_validator("admin_key")
    @classmethod
    def _key_form(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not KEY_RE.fullmatch(key.get_secret_value()):
            raise ValueError("must have the form obs_<12 hex digits>_<43 characters of URL-safe base64>")
        return key

    @field_validator("retention_days")
    @classmethod
    def _retention_floor(cls, days: float) -> float:
        if 0 < days < MIN_RETENTION_S / 86400:
            raise ValueError(
                "must be 0 (off) or at least 1 hour (0.0417 days): an event the broker redelivers after its job "
                "was removed would be stored again and counted twice by the stats cache"
            )
        return days

    @property
    def cors_allow_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def embedded_dir(self) -> Path:
        """Where the embedded backends keep their files (one folder per namespace)."""
        return self.data_dir.expanduser() / self.namespace


MIN_RETENTION_S = 3600.0  # longer than any redelivery: the broker's consumer timeout is 30 minutes


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

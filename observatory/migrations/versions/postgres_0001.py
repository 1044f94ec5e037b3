"""PostgreSQL, migration 1: the jobs, attempts, dead letters and API keys as 0.1 made them."""

from observatory.schema import execute_script

revision = "postgres_0001"
down_revision = None
branch_labels = ("postgres",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS {ns}.jobs (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    status          text NOT NULL,
    payload         jsonb NOT NULL,
    result          jsonb,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    attempt_limit   integer NOT NULL,  -- dead-letter when attempts reach this; a requeue raises it
    timeout_s       double precision NOT NULL,
    version         integer NOT NULL DEFAULT 0,
    worker          text,
    correlation_id  text NOT NULL,
    idempotency_key text UNIQUE,
    published       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON {ns}.jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON {ns}.jobs (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON {ns}.jobs (created_at) WHERE NOT published;
CREATE INDEX IF NOT EXISTS jobs_correlation_idx ON {ns}.jobs (correlation_id);
CREATE TABLE IF NOT EXISTS {ns}.job_attempts (
    job_id      uuid NOT NULL REFERENCES {ns}.jobs (id) ON DELETE CASCADE,
    number      integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    error       text,
    PRIMARY KEY (job_id, number)
);
CREATE TABLE IF NOT EXISTS {ns}.dead_letters (
    id         uuid PRIMARY KEY,
    job_id     uuid UNIQUE REFERENCES {ns}.jobs (id) ON DELETE CASCADE,
    job_type   text,
    reason     text NOT NULL,
    message    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS dead_letters_created_idx ON {ns}.dead_letters (created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS {ns}.api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    scopes       text[] NOT NULL,
    digest       text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
"""


def upgrade() -> None:
    execute_script(SCHEMA)  # IF NOT EXISTS: a database made before migrations is adopted as it is


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS {ns}.api_keys;
DROP TABLE IF EXISTS {ns}.dead_letters;
DROP TABLE IF EXISTS {ns}.job_attempts;
DROP TABLE IF EXISTS {ns}.jobs;
""")

"""Embedded job store, migration 1: jobs, attempts and dead letters as 0.1 made them."""

from observatory.schema import execute_script

revision = "sqlite_jobs_0001"
down_revision = None
branch_labels = ("sqlite_jobs",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    attempt_limit   INTEGER NOT NULL,
    timeout_s       REAL NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0,
    worker          TEXT,
    correlation_id  TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    published       INTEGER NOT NULL DEFAULT 0,
    created_us      INTEGER NOT NULL,
    started_us      INTEGER,
    finished_us     INTEGER,
    updated_us      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON jobs (status, created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_unpublished_idx ON jobs (published, created_us);
CREATE INDEX IF NOT EXISTS jobs_correlation_idx ON jobs (correlation_id);
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id      TEXT NOT NULL,
    number      INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_us  INTEGER NOT NULL,
    finished_us INTEGER,
    error       TEXT,
    PRIMARY KEY (job_id, number)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id         TEXT PRIMARY KEY,
    job_id     TEXT UNIQUE,
    job_type   TEXT,
    reason     TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_created_idx ON dead_letters (created_us DESC, id DESC);
"""


def upgrade() -> None:
    execute_script(SCHEMA)  # IF NOT EXISTS: a database made before migrations is adopted as it is


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS job_attempts;
DROP TABLE IF EXISTS jobs;
""")

"""Embedded event store, migration 1: one row per event, as 0.1 made it."""

from observatory.schema import execute_script

revision = "sqlite_events_0001"
down_revision = None
branch_labels = ("sqlite_events",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    occurred_us INTEGER NOT NULL,
    envelope    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job_order ON events (job_id, version, occurred_us);
"""


def upgrade() -> None:
    execute_script(SCHEMA)  # IF NOT EXISTS: a database made before migrations is adopted as it is


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS events;
""")

"""Embedded counters, migration 1: job states, counts, alerts, buckets, as 0.1 made them."""

from alembic import op

from observatory.schema import execute_script

revision = "sqlite_counters_0001"
down_revision = None
branch_labels = ("sqlite_counters",)
depends_on = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_state (job_id TEXT PRIMARY KEY, version INTEGER NOT NULL, type TEXT NOT NULL,
                                      status TEXT NOT NULL, expires REAL);
CREATE INDEX IF NOT EXISTS job_state_expires ON job_state (expires);
CREATE TABLE IF NOT EXISTS counts (type TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
                                   PRIMARY KEY (type, status));
CREATE TABLE IF NOT EXISTS alerts (fingerprint TEXT PRIMARY KEY, alert TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS last_event (id INTEGER PRIMARY KEY CHECK (id = 1), occurred_us INTEGER NOT NULL);
"""


def upgrade() -> None:
    # IF NOT EXISTS: a database made before migrations is adopted as it is. A data dir of 0.1.0 (before job
    # states expired) has `job_state` without `expires`, which the index below needs, and still has `seen`.
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'job_state'").first():
        columns = {row[1] for row in bind.exec_driver_sql("PRAGMA table_info(job_state)")}
        if "expires" not in columns:
            op.execute("ALTER TABLE job_state ADD COLUMN expires REAL")
    op.execute("DROP TABLE IF EXISTS seen")
    execute_script(SCHEMA)


def downgrade() -> None:
    execute_script("""
DROP TABLE IF EXISTS last_event;
DROP TABLE IF EXISTS meta;
DROP TABLE IF EXISTS buckets;
DROP TABLE IF EXISTS alerts;
DROP TABLE IF EXISTS counts;
DROP TABLE IF EXISTS job_state;
""")

"""Embedded job store, migration 2: retention — the tally of removed jobs and the index its batches walk."""

from observatory.schema import execute_script

revision = "sqlite_jobs_0002"
down_revision = "sqlite_jobs_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
CREATE TABLE IF NOT EXISTS purged_counts (
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (type, status)
);
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON jobs (finished_us, id) WHERE finished_us IS NOT NULL;
""")


def downgrade() -> None:
    execute_script("""
DROP INDEX IF EXISTS jobs_finished_idx;
DROP TABLE IF EXISTS purged_counts;
""")

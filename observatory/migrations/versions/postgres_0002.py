"""PostgreSQL, migration 2: retention — the tally of removed jobs and the index its batches walk."""

from observatory.schema import execute_script

revision = "postgres_0002"
down_revision = "postgres_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The tally keeps the stats of removed jobs (bumped in the transaction that deletes them). The index is
    # built in the migration's transaction: on a large jobs table, writes wait for it.
    execute_script("""
CREATE TABLE IF NOT EXISTS {ns}.purged_counts (
    type   text NOT NULL,
    status text NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (type, status)
);
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON {ns}.jobs (finished_at, id) WHERE finished_at IS NOT NULL;
""")


def downgrade() -> None:
    execute_script("""
DROP INDEX IF EXISTS {ns}.jobs_finished_idx;
DROP TABLE IF EXISTS {ns}.purged_counts;
""")
